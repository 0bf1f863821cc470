"""load_vindr: every reader's box kept, reader fusion modes, bad rows."""

from __future__ import annotations

import numpy as np
import pytest
from dataformats import write_dicom

from cxr.data.datasets.common import AnnotationError
from cxr.data.datasets.vindr import VINDR_CLASSES, load_vindr

VINDR_HEADER = "image_id,class_name,class_id,rad_id,x_min,y_min,x_max,y_max\n"
# Image a: three readers box one nodule (R1, R2 agree; R3 elsewhere), R1 boxes an effusion.
# Image b: only "No finding" rows (a negative). Image c: one reader, one box.
VINDR_ROWS = [
    "a,Nodule/Mass,8,R1,10,10,30,30",
    "a,Nodule/Mass,8,R2,12,12,32,32",   # IoU with R1 = 324/476 = 0.68
    "a,Nodule/Mass,8,R3,60,40,70,50",   # alone
    "a,Pleural effusion,10,R1,0,40,40,64",
    "b,No finding,14,R1,,,,",
    "b,No finding,14,R2,,,,",
    "c,Aortic enlargement,0,R9,5,5,25,25",
    "c,No finding,14,R8,,,,",
]  # fmt: skip


@pytest.fixture
def vindr(tmp_path):
    root = tmp_path / "train"
    root.mkdir()
    for name in "abc":
        write_dicom(str(root / f"{name}.dicom"), np.zeros((64, 96), np.uint16))
    csv = tmp_path / "train.csv"
    csv.write_text(VINDR_HEADER + "".join(r + "\n" for r in VINDR_ROWS))
    return str(csv), str(root)


def _boxes(out, image_id):
    d = next(d for d in out if d["image_id"] == image_id)
    return sorted(
        (VINDR_CLASSES[a["category_id"]], [round(v, 3) for v in a["bbox"]])
        for a in d["annotations"]
    )


def test_vindr_none_keeps_every_reader(vindr):
    out = load_vindr(*vindr)
    assert [d["image_id"] for d in out] == ["a", "b", "c"]
    assert sum(len(d["annotations"]) for d in out) == 5  # every non-"No finding" row
    assert [d["annotations"] for d in out if d["image_id"] == "b"] == [[]]
    a = next(d for d in out if d["image_id"] == "a")
    assert (a["height"], a["width"]) == (64, 96)  # from the DICOM header
    assert sorted(x["rad_id"] for x in a["annotations"]) == ["R1", "R1", "R2", "R3"]


def test_vindr_fusion_modes(vindr):
    wbf = _boxes(load_vindr(*vindr, fusion="wbf"), "a")
    assert wbf == [("Nodule/Mass", [11, 11, 31, 31]), ("Nodule/Mass", [60, 40, 70, 50]),
                   ("Pleural effusion", [0, 40, 40, 64])]  # fmt: skip
    nms = _boxes(load_vindr(*vindr, fusion="nms"), "a")
    # R1 and R2 both have one agreeing reader; the tie goes to CSV order (R1).
    assert nms == [("Nodule/Mass", [10, 10, 30, 30]), ("Nodule/Mass", [60, 40, 70, 50]),
                   ("Pleural effusion", [0, 40, 40, 64])]  # fmt: skip
    maj = load_vindr(*vindr, fusion="majority")
    assert _boxes(maj, "a") == [("Nodule/Mass", [11, 11, 31, 31])]
    assert _boxes(maj, "c") == []  # single reader: not kept
    with pytest.raises(ValueError, match="fusion"):
        load_vindr(*vindr, fusion="mean")


def test_vindr_bad_rows(vindr, tmp_path):
    _, root = vindr
    bad = tmp_path / "bad.csv"
    bad.write_text(VINDR_HEADER + "a,Nodule/Mass,3,R1,1,1,5,5\n")
    with pytest.raises(AnnotationError, match=r"row 2, field 'class_name'"):
        load_vindr(str(bad), root)
    bad.write_text(VINDR_HEADER + "a,Nodule/Mass,8,R1,1,1,5,5\na,Nodule/Mass,8,R1,1,1,5,\n")
    with pytest.raises(AnnotationError, match=r"row 3, field 'y_max'"):
        load_vindr(str(bad), root)
    out = load_vindr(str(bad), root, strict=False)
    assert [len(d["annotations"]) for d in out] == [1]


def test_vindr_wbf_is_ensemble_boxes_wbf(tmp_path):
    """fusion="wbf" = ensemble-boxes' WBF (one list per reader, scores 1) on normalized boxes,
    also where greedy clustering in CSV order would differ (a chain of overlapping boxes)."""
    from ensemble_boxes import weighted_boxes_fusion

    rows = [("R1", 8, [10, 10, 40, 40]), ("R2", 8, [22, 10, 52, 40]), ("R3", 8, [34, 10, 64, 40]),
            ("R1", 0, [5, 50, 30, 60]), ("R2", 0, [6, 51, 31, 61]),
            ("R3", 8, [70, 5, 90, 25])]  # fmt: skip
    root = tmp_path / "img"
    root.mkdir()
    write_dicom(str(root / "x.dicom"), np.zeros((64, 96), np.uint16))
    csv = tmp_path / "train.csv"
    csv.write_text(VINDR_HEADER + "".join(
        f"x,{VINDR_CLASSES[c]},{c},{r},{','.join(map(str, b))}\n" for r, c, b in rows
    ))  # fmt: skip
    out = load_vindr(str(csv), str(root), fusion="wbf", iou_thr=0.4)[0]["annotations"]
    cat = {0: 0, 8: 8}
    size = np.array([96, 64, 96, 64], float)
    readers = ["R1", "R2", "R3"]
    boxes, scores, labels = weighted_boxes_fusion(
        [[np.array(b) / size for r, _, b in rows if r == rd] for rd in readers],
        [[1.0 for r, *_ in rows if r == rd] for rd in readers],
        [[cat[c] for r, c, _ in rows if r == rd] for rd in readers], iou_thr=0.4,
    )  # fmt: skip
    ref = sorted((int(lab), [round(float(v), 3) for v in (b * size)], round(s * 3))
                 for b, s, lab in zip(boxes, scores, labels))  # fmt: skip
    ours = sorted((a["category_id"], [round(v, 3) for v in a["bbox"]], a["num_readers"])
                  for a in out)  # fmt: skip
    assert ours == ref
    # the chain: WBF takes the last equal-score box first (R3, then R2 joins); CSV-order greedy
    # clustering would have merged R1 and R2
    assert (8, [28.0, 10.0, 58.0, 40.0], 2) in ours and len(ours) == 4

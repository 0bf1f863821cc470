"""load_nih on the shipped NIH files and on hand-built CSVs; row validation."""

from __future__ import annotations

import collections
import logging
import os

import pytest
from dataformats import NIH_BBOX_HEADER, NIH_DIR
from detectron2.structures import BoxMode

from cxr.data.datasets.common import AnnotationError
from cxr.data.datasets.nih import NIH_CLASSES, load_nih

SHIPPED_COUNTS = {
    "Atelectasis": 180,
    "Cardiomegaly": 146,
    "Effusion": 153,
    "Infiltrate": 123,
    "Mass": 85,
    "Nodule": 79,
    "Pneumonia": 120,
    "Pneumothorax": 98,
}  # boxes per class in the published BBox_List_2017.csv


@pytest.fixture(scope="module")
def shipped():
    return load_nih(
        os.path.join(NIH_DIR, "BBox_List_2017.csv.gz"),
        os.path.join(NIH_DIR, "images"),
        os.path.join(NIH_DIR, "Data_Entry_2017_v2020.csv.gz"),
        num_negatives=-1,
    )


def test_shipped_counts(shipped):
    pos = [d for d in shipped if d["annotations"]]
    assert len(pos) == 880
    assert sum(len(d["annotations"]) for d in pos) == 984
    assert sum(len(d["annotations"]) > 1 for d in pos) == 93
    per_class = collections.Counter(
        NIH_CLASSES[a["category_id"]] for d in pos for a in d["annotations"]
    )
    assert per_class == SHIPPED_COUNTS
    assert len({d["patient_id"] for d in pos}) == 726
    negs = [d for d in shipped if not d["annotations"]]
    assert len(negs) == 5066
    assert {d["patient_id"] for d in negs} <= {d["patient_id"] for d in pos}
    d = next(d for d in shipped if d["image_id"] == "00013118_008")
    assert (d["height"], d["width"], d["patient_id"]) == (1024, 1024, "00013118")
    a = d["annotations"][0]
    assert a["bbox_mode"] == BoxMode.XYXY_ABS and a["category_id"] == 0
    assert a["bbox"] == pytest.approx([225.084745762712, 547.019216763771,
                                       225.084745762712 + 86.7796610169491,
                                       547.019216763771 + 79.1864406779661])  # fmt: skip


def test_class_subset_and_alias(nih_files):
    bbox, root, entry = nih_files
    out = load_nih(bbox, root, classes=["Mass", "Infiltration"])
    by_id = {d["image_id"]: d for d in out}
    assert set(by_id) == {"00000001_000", "00000002_000"}
    assert [a["category_id"] for a in by_id["00000001_000"]["annotations"]] == [1]  # Infiltrate
    assert [a["category_id"] for a in by_id["00000002_000"]["annotations"]] == [0]  # Mass
    # Size read from the PNG header (64 x 80), not the 1024 default.
    assert (by_id["00000002_000"]["height"], by_id["00000002_000"]["width"]) == (64, 80)
    out = load_nih(bbox, root, classes=["Nodule"])
    assert [d["image_id"] for d in out] == ["00000001_000"]
    with pytest.raises(ValueError, match="Emphysema"):
        load_nih(bbox, root, classes=["Emphysema"])


def test_negatives_same_patients_seeded(nih_files):
    bbox, root, entry = nih_files
    all_negs = [d for d in load_nih(bbox, root, entry, num_negatives=-1) if not d["annotations"]]
    # Patient 3's No Finding image is not a box patient: excluded.
    assert [d["image_id"] for d in all_negs] == ["00000001_001", "00000002_001"]
    one = [d for d in load_nih(bbox, root, entry, num_negatives=1, seed=3) if not d["annotations"]]
    assert len(one) == 1 and one == [
        d for d in load_nih(bbox, root, entry, num_negatives=1, seed=3) if not d["annotations"]
    ]
    assert one[0]["annotations"] == [] and one[0]["height"] == 64


BAD_ROWS = [
    ("00000001_000.png,Emphysema,1,1,5,5", "Finding Label"),
    ("00000001_000.png,Mass,nan,1,5,5", "x"),
    ("00000001_000.png,Mass,1,1,0,5", "w"),
    ("00000001_000.png,Mass,1,1,5,-2", "h"),
    ("00000001_000.png,Mass,70,1,30,5", "w"),  # x + w = 100 > width 80
    ("../secret.png,Mass,1,1,5,5", "Image Index"),
    ("00000001_000.png,Nodule,10.5,20,8,6", "Image Index"),  # duplicate of line 2
]


@pytest.mark.parametrize("row,field", BAD_ROWS)
def test_bad_row_names_file_row_field(nih_files, tmp_path, row, field):
    bbox, root, _ = nih_files
    path = tmp_path / "bad.csv"
    path.write_text(NIH_BBOX_HEADER + "00000001_000.png,Nodule,10.5,20,8,6,,\n" + row + ",,\n")
    with pytest.raises(AnnotationError) as e:
        load_nih(str(path), root)
    err = e.value
    assert (err.file, err.row, err.field) == (str(path), 3, field)
    assert str(path) in str(err) and "row 3" in str(err) and repr(field) in str(err)


def test_not_strict_repairs_and_skips(nih_files, tmp_path, caplog):
    _, root, _ = nih_files
    path = tmp_path / "bad.csv"
    rows = [r for r, _ in BAD_ROWS] + ["00000002_000.png,Mass,-10,5,20,20"]
    path.write_text(NIH_BBOX_HEADER + "00000001_000.png,Nodule,10.5,20,8,6,,\n"
                    + "".join(r + ",,\n" for r in rows))  # fmt: skip
    with caplog.at_level(logging.WARNING):
        out = load_nih(str(path), root, strict=False)
    boxes = {d["image_id"]: [a["bbox"] for a in d["annotations"]] for d in out}
    # Kept: the good row, the 70+30 box clipped to x1=80, the -10 box clipped to x0=0.
    assert boxes == {
        "00000001_000": [[10.5, 20.0, 18.5, 26.0], [70.0, 1.0, 80.0, 6.0]],
        "00000002_000": [[0.0, 5.0, 10.0, 25.0]],
    }
    text = caplog.text
    assert "repaired 2 row(s)" in text and "skipped 6 row(s)" in text

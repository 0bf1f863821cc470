"""load_rsna: Target 0 images are negatives, several rows give several boxes, bad rows."""
from __future__ import annotations

import numpy as np
import pytest
from dataformats import write_dicom

from cxr.data.datasets.common import AnnotationError
from cxr.data.datasets.rsna import load_rsna


def test_rsna_negatives_and_boxes(tmp_path):
    root = tmp_path / "stage_2_train_images"
    root.mkdir()
    for pid in ("p1", "p2", "p3"):
        write_dicom(str(root / f"{pid}.dcm"), np.zeros((100, 90), np.uint8))
    csv = tmp_path / "stage_2_train_labels.csv"
    csv.write_text("patientId,x,y,width,height,Target\n"
                   "p1,,,,,0\np2,10,20,30,40,1\np2,50,5,20,20,1\np3,,,,,0\n")  # fmt: skip
    out = load_rsna(str(csv), str(root))
    assert [d["image_id"] for d in out] == ["p1", "p2", "p3"]
    assert [len(d["annotations"]) for d in out] == [0, 2, 0]
    assert out[1]["annotations"][0]["bbox"] == [10.0, 20.0, 40.0, 60.0]
    assert (out[1]["height"], out[1]["width"], out[1]["patient_id"]) == (100, 90, "p2")
    csv.write_text("patientId,x,y,width,height,Target\np2,10,20,30,40,2\n")
    with pytest.raises(AnnotationError, match=r"row 2, field 'Target'"):
        load_rsna(str(csv), str(root))
    csv.write_text("patientId,x,y,width,height,Target\nmissing,10,20,30,40,1\np1,,,,,0\n")
    with pytest.raises(OSError, match="missing.dcm"):
        load_rsna(str(csv), str(root))
    assert [d["image_id"] for d in load_rsna(str(csv), str(root), strict=False)] == ["p1"]

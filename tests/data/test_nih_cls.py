"""NIH image-label classification sets: parsing, bad rows, box-consistent patient split, leakage."""

from __future__ import annotations

import os
import shutil

import numpy as np
import pytest
from dataformats import NIH_ENTRY_HEADER
from detectron2.data import DatasetCatalog, MetadataCatalog

from cxr.data.datasets.common import AnnotationError
from cxr.data.datasets.nih_cls import (
    NIH_FINDINGS,
    cached_classification_split,
    classification_split,
    load_nih_cls,
    register_nih_cls,
)
from cxr.data.splits import load_split

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SHIPPED_ENTRY = os.path.join(REPO, "datasets", "nih", "Data_Entry_2017_v2020.csv.gz")


def _entry(tmp_path, rows: str) -> str:
    p = tmp_path / "Data_Entry_2017_v2020.csv"
    p.write_text(NIH_ENTRY_HEADER + rows)
    return str(p)


def test_labels_are_multi_hot_and_no_finding_is_all_zero(tmp_path):
    path = _entry(
        tmp_path,
        "00000001_000.png,Cardiomegaly|Emphysema,0,1,57,M,PA,2682,2749,0.143,0.143\n"
        "00000001_001.png,No Finding,1,1,58,M,PA,2894,2729,0.143,0.143\n"
        "00000002_000.png,Infiltration|Hernia|Pleural_Thickening,0,2,,F,AP,2500,2048,0.14,0.14\n",
    )
    d = load_nih_cls(path, str(tmp_path / "images"))
    assert [r["image_id"] for r in d] == ["00000001_000", "00000001_001", "00000002_000"]
    idx = {c: i for i, c in enumerate(NIH_FINDINGS)}
    assert [i for i, v in enumerate(d[0]["labels"]) if v] == [idx["Cardiomegaly"], idx["Emphysema"]]
    assert d[1]["labels"] == [0] * 14
    assert sum(d[2]["labels"]) == 3 and d[2]["labels"][idx["Hernia"]] == 1
    assert d[0]["patient_id"] == "00000001" and d[0]["view_position"] == "PA"
    assert d[0]["age"] == 57.0 and d[0]["sex"] == "M" and d[2]["age"] != d[2]["age"]  # NaN
    assert d[0]["file_name"] == os.path.join(str(tmp_path / "images"), "00000001_000.png")
    assert "height" not in d[0]  # nothing is stat'ed: the mapper reads the size from the image


@pytest.mark.parametrize(
    "row, field",
    [
        ("00000001_000.png,Cardiomegaly|Flu,0,1,57,M,PA,1,1,1,1\n", "Finding Labels"),
        ("00000001_000.png,No Finding|Mass,0,1,57,M,PA,1,1,1,1\n", "Finding Labels"),
        ("00000001_000.png,Mass,0,1,old,M,PA,1,1,1,1\n", "Patient Age"),
        ("../00000001_000.png,Mass,0,1,57,M,PA,1,1,1,1\n", "Image Index"),
    ],
)
def test_bad_rows_name_file_row_field_or_are_skipped(tmp_path, row, field):
    good = "00000002_000.png,Mass,0,2,60,F,PA,1,1,1,1\n"
    path = _entry(tmp_path, good + row)
    with pytest.raises(AnnotationError) as e:
        load_nih_cls(path, str(tmp_path))
    assert (e.value.file, e.value.row, e.value.field) == (path, 3, field)
    assert [r["image_id"] for r in load_nih_cls(path, str(tmp_path), strict=False)] == [
        "00000002_000"
    ]


def test_duplicate_image_row_is_refused(tmp_path):
    row = "00000002_000.png,Mass,0,2,60,F,PA,1,1,1,1\n"
    with pytest.raises(AnnotationError, match="duplicate"):
        load_nih_cls(_entry(tmp_path, row + row), str(tmp_path))


def _records(n_patients: int, per: int = 2) -> list[dict]:
    return [
        {"patient_id": f"{p:08d}", "labels": [int((p + i) % 3 == 0), int(p % 5 == 0)]}
        for p in range(n_patients)
        for i in range(per)
    ]


def test_box_patients_keep_their_box_split_and_every_patient_is_placed_once():
    dicts = _records(200)
    box = {"train": ["00000000", "00000001"], "val": ["00000002"], "test": ["00000003", "zz"]}
    split = classification_split(dicts, box, seed=0)
    where = {p: s for s, ids in split.items() for p in ids}
    assert sum(len(v) for v in split.values()) == len(where) == 200  # "zz" has no image: absent
    for s, ids in box.items():
        assert all(where[p] == s for p in ids if p != "zz")
    # the free patients follow the 70/15/15 fractions
    assert abs(len(split["train"]) / 200 - 0.7) < 0.05


def test_cached_split_is_recomputed_when_it_contradicts_the_box_split(tmp_path):
    dicts = _records(50)
    path = str(tmp_path / "cls_split_seed0.json")
    first = cached_classification_split(dicts, {"test": ["00000007"]}, path)
    assert "00000007" in first["test"] and load_split(path) == first
    moved = cached_classification_split(dicts, {"val": ["00000007"]}, path)
    assert "00000007" in moved["val"] and load_split(path) == moved


def test_no_detection_val_or_test_patient_in_classification_train_on_shipped_files(tmp_path):
    """The leakage rule on the real Data_Entry (112,120 rows) and the shipped box split."""
    folder = tmp_path / "nih"
    folder.mkdir()
    shutil.copy(SHIPPED_ENTRY, folder)
    names = register_nih_cls("leak_nih_cls", str(folder), "nih_bbox")
    try:
        assert MetadataCatalog.get("leak_nih_cls_train").evaluator_type == "cxr_cls"
        cls = {s: {d["patient_id"] for d in DatasetCatalog.get(f"leak_nih_cls_{s}")}
               for s in ("train", "val", "test")}  # fmt: skip
        box = {s: {d["patient_id"] for d in DatasetCatalog.get(f"nih_bbox_{s}")}
               for s in ("train", "val", "test")}  # fmt: skip
        assert len(box["val"]) > 50 and len(box["test"]) > 50
        assert not (box["val"] | box["test"]) & cls["train"]
        assert box["val"] <= cls["val"] and box["test"] <= cls["test"]
        assert not cls["train"] & cls["val"] and not cls["train"] & cls["test"]
        assert len(DatasetCatalog.get("leak_nih_cls_all")) == 112120
        assert sum(len(v) for v in cls.values()) == 30805  # every patient of Data_Entry
    finally:
        for n in names:
            DatasetCatalog.remove(n)
            MetadataCatalog.remove(n)


def test_nih_cls_all_loads_every_shipped_row_with_its_findings():
    """Full count: the registered nih_cls_all holds the 112,120 Data_Entry rows; per-finding
    positives equal an independent pandas count of the ``|``-separated labels."""
    import pandas as pd

    if "nih_cls_all" not in DatasetCatalog.list():  # run from elsewhere than the repo root
        register_nih_cls("nih_cls", os.path.dirname(SHIPPED_ENTRY), "nih_bbox")
    dicts = DatasetCatalog.get("nih_cls_all")
    assert len(dicts) == 112120 and len({d["image_id"] for d in dicts}) == 112120
    df = pd.read_csv(SHIPPED_ENTRY, usecols=[0, 1])
    counts = df.iloc[:, 1].str.split("|").explode().value_counts()
    positives = dict(zip(NIH_FINDINGS, map(int, np.sum([d["labels"] for d in dicts], 0))))
    assert positives == {c: int(counts[c]) for c in NIH_FINDINGS}
    assert sum(not any(d["labels"]) for d in dicts) == counts["No Finding"]
    assert dicts[0]["labels"] is not dicts[1]["labels"]  # parsed once, owned per record

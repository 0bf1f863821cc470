"""Patient-level stratified splits: deterministic, disjoint, every class in every split."""

from __future__ import annotations

import os

import pytest
from dataformats import NIH_DIR

from cxr.data.datasets.nih import load_nih
from cxr.data.splits import (
    apply_split,
    cached_split,
    load_split,
    save_split,
    split_by_patient,
    split_patients,
)


@pytest.fixture(scope="module")
def nih():
    return load_nih(os.path.join(NIH_DIR, "BBox_List_2017.csv.gz"), os.path.join(NIH_DIR, "images"))


def test_nih_splits_disjoint_stratified_deterministic(nih):
    splits = split_by_patient(nih, fractions=(0.7, 0.15, 0.15), seed=0)
    patients = {k: {d["patient_id"] for d in v} for k, v in splits.items()}
    assert not patients["train"] & patients["val"]
    assert not patients["train"] & patients["test"]
    assert not patients["val"] & patients["test"]
    assert sum(len(v) for v in splits.values()) == len(nih)
    for name, dicts in splits.items():
        assert {a["category_id"] for d in dicts for a in d["annotations"]} == set(range(8)), name
    n = {k: len(v) for k, v in patients.items()}
    assert abs(n["train"] / 726 - 0.7) < 0.05 and abs(n["val"] / 726 - 0.15) < 0.05
    assert split_patients(nih, seed=0) == split_patients(nih, seed=0)
    assert split_patients(nih, seed=0) != split_patients(nih, seed=1)


def test_small_case_every_class_everywhere():
    # 3 patients per class: one each per split, even though 0.15 * 3 < 1.
    dicts = [
        {"image_id": f"{c}{i}", "patient_id": f"{c}{i}", "annotations": [{"category_id": c}]}
        for c in range(2) for i in range(3)
    ]  # fmt: skip
    out = split_by_patient(dicts)
    for v in out.values():
        assert sorted(a["category_id"] for d in v for a in d["annotations"]) == [0, 1]


def test_save_load_and_cache(nih, tmp_path):
    split = split_patients(nih)
    path = str(tmp_path / "s" / "split.json")
    save_split(path, split, seed=0)
    assert load_split(path) == split
    assert cached_split(nih, path) == split
    # A stale file (other patients) is recomputed and rewritten.
    save_split(path, {"train": ["x"], "val": [], "test": []})
    assert cached_split(nih, path) == split and load_split(path) == split
    with pytest.raises(KeyError, match="no split"):
        apply_split(nih, {"train": ["x"]})

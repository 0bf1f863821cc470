"""register_all_cxr: registers only what exists, lazily, with metadata and cached splits."""

from __future__ import annotations

import os
import shutil

import pytest
from detectron2.data import DatasetCatalog, MetadataCatalog

from cxr.data.datasets.builtin import register_all_cxr
from cxr.data.splits import load_split

PREFIXES = ("nih_bbox", "phantom_nih", "vindr_cxr", "rsna_pneumonia")
NAMES = [f"{p}_{s}" for p in PREFIXES for s in ("train", "val", "test", "all")]


@pytest.fixture
def clean_catalog():
    """Unregister the builtin names for the test, then restore the import-time registration."""
    saved = {
        n: (DatasetCatalog[n], MetadataCatalog.get(n).as_dict())
        for n in NAMES
        if n in DatasetCatalog
    }
    for n in NAMES:
        if n in DatasetCatalog:
            DatasetCatalog.remove(n)
            MetadataCatalog.remove(n)
    yield
    for n in NAMES:
        if n in DatasetCatalog:
            DatasetCatalog.remove(n)
            MetadataCatalog.remove(n)
    for n, (fn, meta) in saved.items():
        DatasetCatalog.register(n, fn)
        meta.pop("name", None)
        MetadataCatalog.get(n).set(**meta)


def test_registers_what_exists_lazily(nih_files, tmp_path, clean_catalog):
    bbox, images, entry = nih_files
    root = tmp_path / "root"
    phantom = root / "phantom_nih"
    shutil.copytree(images, phantom / "images")
    shutil.copy(bbox, phantom / "BBox_List_2017.csv")
    shutil.copy(entry, phantom / "Data_Entry_2017_v2020.csv")
    (root / "nih").mkdir()
    (root / "nih" / "BBox_List_2017.csv.gz").write_bytes(b"not gzip")  # never read at register
    names = register_all_cxr(str(root))
    assert sorted(names) == sorted(n for n in NAMES if n.startswith(("phantom_nih", "nih_bbox")))
    assert register_all_cxr(str(root)) == []  # already registered: skipped
    meta = MetadataCatalog.get("phantom_nih_train")
    assert meta.thing_classes[3] == "Infiltrate" and meta.evaluator_type == "cxr"
    assert len(meta.thing_colors) == 8
    everything = DatasetCatalog.get("phantom_nih_all")
    assert [d["image_id"] for d in everything] == [
        "00000001_000",
        "00000001_001",
        "00000002_000",
        "00000002_001",
    ]  # negatives included
    parts = [DatasetCatalog.get(f"phantom_nih_{s}") for s in ("train", "val", "test")]
    assert sorted(d["image_id"] for p in parts for d in p) == [d["image_id"] for d in everything]
    split = load_split(str(phantom / "split_seed0.json"))
    assert sorted(p for v in split.values() for p in v) == ["00000001", "00000002"]
    with pytest.raises(Exception):
        DatasetCatalog.get("nih_bbox_all")
    assert os.path.isfile(phantom / "split_seed0.json")

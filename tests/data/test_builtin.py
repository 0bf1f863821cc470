"""register_all_cxr: registers only what exists, lazily, with metadata and cached splits."""

from __future__ import annotations

import os
import shutil

import pytest
from detectron2.data import DatasetCatalog, MetadataCatalog

from cxr.data.datasets import builtin
from cxr.data.datasets.builtin import LAYOUTS, DatasetNotFoundError, register_all_cxr
from cxr.data.splits import load_split

PREFIXES = tuple(layout.prefix for layout in LAYOUTS)
NAMES = [f"{p}_{s}" for p in PREFIXES for s in ("train", "val", "test", "all")]


def _unregister_builtin_names() -> None:
    for n in NAMES:
        if n in DatasetCatalog:
            DatasetCatalog.remove(n)
            MetadataCatalog.remove(n)


@pytest.fixture
def clean_catalog():
    """Unregister the builtin names for the test, then restore the import-time registration."""
    root = builtin._last_root[0]
    saved = {
        n: (DatasetCatalog[n], MetadataCatalog.get(n).as_dict())
        for n in NAMES
        if n in DatasetCatalog
    }
    _unregister_builtin_names()
    yield
    _unregister_builtin_names()
    for n, (fn, meta) in saved.items():
        DatasetCatalog.register(n, fn)
        meta.pop("name", None)
        MetadataCatalog.get(n).set(**meta)
    builtin._last_root[0] = root


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
    expected = [n for n in NAMES if n.rpartition("_")[0] in ("phantom_nih", "nih_bbox")]
    assert sorted(names) == sorted(expected)
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


def _not_registered(name: str) -> str:
    with pytest.raises(DatasetNotFoundError) as e:
        DatasetCatalog.get(name)
    assert isinstance(e.value, KeyError)
    return str(e.value)


def test_root_pointing_at_the_nih_folder_itself(nih_files, tmp_path, clean_catalog, monkeypatch):
    bbox, _, entry = nih_files
    nih = tmp_path / "data" / "nih"
    nih.mkdir(parents=True)
    shutil.copy(bbox, nih / "BBox_List_2017.csv")
    shutil.copy(entry, nih / "Data_Entry_2017_v2020.csv")
    monkeypatch.setenv("DETECTRON2_DATASETS", str(nih))
    assert register_all_cxr(str(nih)) == []
    msg = _not_registered("nih_bbox_train")
    assert f"DETECTRON2_DATASETS={str(nih)!r}" in msg
    assert f"data root looked in: {nih}." in msg
    assert f"Missing: {nih / 'nih' / 'BBox_List_2017.csv[.gz]'} (there is no folder" in msg
    assert "set DETECTRON2_DATASETS to its parent folder" in msg
    assert "Registered cxr data sets: none." in msg and "coco_2014_train" not in msg
    with pytest.raises(AttributeError, match="(?s)thing_classes.*DETECTRON2_DATASETS"):
        MetadataCatalog.get("nih_bbox_val").thing_classes


def test_nih_folder_without_csvs_names_the_file(nih_files, tmp_path, clean_catalog, monkeypatch):
    bbox, images, entry = nih_files
    root = tmp_path / "root"
    shutil.copytree(images, root / "nih" / "images")
    phantom = root / "phantom_nih"
    phantom.mkdir()
    shutil.copy(bbox, phantom / "BBox_List_2017.csv")
    monkeypatch.delenv("DETECTRON2_DATASETS", raising=False)
    register_all_cxr(str(root))
    msg = _not_registered("nih_bbox_test")
    assert f"Missing: {root / 'nih' / 'BBox_List_2017.csv[.gz]'} (the folder holds: images/)" in msg
    assert "DETECTRON2_DATASETS is not set" in msg and "parent folder" not in msg
    registered = "phantom_nih_all, phantom_nih_test, phantom_nih_train, phantom_nih_val"
    assert f"Registered cxr data sets: {registered}." in msg
    assert "cxr_cls" not in msg and "coco" not in msg
    msg = _not_registered("nih_cls_all")
    assert f"Missing: {root / 'nih' / 'Data_Entry_2017_v2020.csv[.gz]'}" in msg
    # names cxr does not own keep detectron2's own error
    with pytest.raises(KeyError, match="Available datasets are") as e:
        DatasetCatalog.get("not_a_cxr_set")
    assert not isinstance(e.value, DatasetNotFoundError)
    assert not hasattr(MetadataCatalog.get("phantom_nih_train"), "no_such_key")

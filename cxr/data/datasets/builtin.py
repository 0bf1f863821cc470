"""Register the chest X-ray datasets found under ``$DETECTRON2_DATASETS`` (default ``datasets``).

Expected layout (only what exists is registered; nothing is read until a dataset is used):

- ``nih/{BBox_List_2017.csv[.gz], Data_Entry_2017_v2020.csv[.gz], images/}`` ->
  ``nih_bbox_{train,val,test,all}``
- ``phantom_nih/`` (same layout as ``nih/``) -> ``phantom_nih_{train,val,test,all}``
- ``nih/Data_Entry_2017_v2020.csv[.gz]`` + ``nih/images/`` -> ``nih_cls_{train,val,test,all}``
  (image labels; split respects the box split, see :mod:`.nih_cls`)
- ``phantom_nih_cls/`` (Data_Entry + images) -> ``phantom_nih_cls_{train,val,test,all}``
- ``vindr_cxr/{train.csv, train/}`` -> ``vindr_cxr_{train,val,test,all}``
- ``rsna_pneumonia/{stage_2_train_labels.csv, stage_2_train_images/}`` ->
  ``rsna_pneumonia_{train,val,test,all}``

The train / val / test splits (70/15/15 by patient, seed 0, stratified by class) are cached as
``<dataset folder>/split_seed0.json`` on first use and reused while the patients match;
``all`` is every image. NIH and phantom include every ``No Finding`` image of the box patients
listed in Data_Entry as negatives.
"""

from __future__ import annotations

import functools
import os
from typing import Callable, Sequence

from detectron2.data import DatasetCatalog, MetadataCatalog

from ..splits import SPLIT_NAMES, apply_split, cached_split
from .common import PALETTE
from .nih import NIH_CLASSES, load_nih
from .nih_cls import PHANTOM_FINDINGS, register_nih_cls
from .rsna import RSNA_CLASSES, load_rsna
from .vindr import VINDR_CLASSES, load_vindr

__all__ = ["register_all_cxr", "register_split_dataset", "SPLIT_SEED", "SPLIT_FRACTIONS"]

SPLIT_SEED = 0
SPLIT_FRACTIONS = (0.7, 0.15, 0.15)


def _first_existing(folder: str, names: Sequence[str]) -> str | None:
    for n in names:
        p = os.path.join(folder, n)
        if os.path.isfile(p):
            return p
    return None


@functools.lru_cache(maxsize=4)
def _load_splits(loader: Callable[[], list], folder: str) -> dict[str, list]:
    """Every split of one dataset (loaded and split once per process)."""
    dicts = loader()
    path = os.path.join(folder, f"split_seed{SPLIT_SEED}.json")
    out = apply_split(dicts, cached_split(dicts, path, SPLIT_FRACTIONS, SPLIT_SEED))
    out["all"] = dicts
    return out


def _load_split(loader: Callable[[], list], folder: str, split: str) -> list:
    return list(_load_splits(loader, folder)[split])


def register_split_dataset(
    prefix: str, loader: Callable[[], list], folder: str, classes: Sequence[str]
) -> list[str]:
    """Register ``<prefix>_{train,val,test,all}`` lazily; names already registered are skipped.

    Args:
        loader: returns every dataset dict (called on first use only).
        folder: where the split file is cached.
    Returns:
        the names registered now.
    """
    done = []
    for split in SPLIT_NAMES + ("all",):
        name = f"{prefix}_{split}"
        if name in DatasetCatalog.list():
            continue
        DatasetCatalog.register(
            name,
            lambda loader=loader, folder=folder, split=split: _load_split(loader, folder, split),
        )
        MetadataCatalog.get(name).set(
            thing_classes=list(classes),
            thing_colors=[PALETTE[i % len(PALETTE)] for i in range(len(classes))],
            evaluator_type="cxr",
            dataset_root=folder,
            split=split,
        )
        done.append(name)
    return done


def _register_nih_layout(prefix: str, folder: str) -> list[str]:
    bbox = _first_existing(folder, ("BBox_List_2017.csv", "BBox_List_2017.csv.gz"))
    if bbox is None:
        return []
    entry = _first_existing(folder, ("Data_Entry_2017_v2020.csv", "Data_Entry_2017_v2020.csv.gz"))
    loader = functools.partial(
        load_nih, bbox, os.path.join(folder, "images"), entry, None, -1 if entry else 0
    )
    return register_split_dataset(prefix, loader, folder, NIH_CLASSES)


def register_all_cxr(root: str = "datasets") -> list[str]:
    """Register every cxr dataset present under ``root`` (see the module docstring).

    Returns:
        the dataset names registered by this call.
    """
    names = _register_nih_layout("nih_bbox", os.path.join(root, "nih"))
    names += _register_nih_layout("phantom_nih", os.path.join(root, "phantom_nih"))
    names += register_nih_cls("nih_cls", os.path.join(root, "nih"), "nih_bbox")
    names += register_nih_cls(
        "phantom_nih_cls", os.path.join(root, "phantom_nih_cls"), "phantom_nih", PHANTOM_FINDINGS
    )
    vindr = os.path.join(root, "vindr_cxr")
    if os.path.isfile(os.path.join(vindr, "train.csv")):
        loader = functools.partial(
            load_vindr, os.path.join(vindr, "train.csv"), os.path.join(vindr, "train")
        )
        names += register_split_dataset("vindr_cxr", loader, vindr, VINDR_CLASSES)
    rsna = os.path.join(root, "rsna_pneumonia")
    if os.path.isfile(os.path.join(rsna, "stage_2_train_labels.csv")):
        loader = functools.partial(
            load_rsna,
            os.path.join(rsna, "stage_2_train_labels.csv"),
            os.path.join(rsna, "stage_2_train_images"),
        )
        names += register_split_dataset("rsna_pneumonia", loader, rsna, RSNA_CLASSES)
    return names

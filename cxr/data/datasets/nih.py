"""NIH ChestX-ray14 bounding boxes (``BBox_List_2017.csv``) and its ``No Finding`` negatives.

The box list has columns (by position) Image Index, Finding Label, x, y, w, h in pixels of the
released 1024 x 1024 PNGs (its header spells them ``Bbox [x,y,w,h]`` plus empty fields).
``Data_Entry_2017_v2020.csv`` lists every image with ``|``-separated Finding Labels, where the
box list's ``Infiltrate`` is spelled ``Infiltration``. Patient id = the file-name prefix before
``_``.
"""

from __future__ import annotations

import logging
import os
from typing import Sequence

import numpy as np
from detectron2.structures import BoxMode

from ..io import read_xray_size
from .common import RowChecker, csv_line, log_summary, read_csv_rows

__all__ = ["NIH_CLASSES", "NIH_IMAGE_SIZE", "load_nih", "nih_class_names"]

logger = logging.getLogger(__name__)

# The eight box classes of BBox_List_2017.csv, in the order of their category ids.
NIH_CLASSES = (
    "Atelectasis", "Cardiomegaly", "Effusion", "Infiltrate",
    "Mass", "Nodule", "Pneumonia", "Pneumothorax",
)  # fmt: skip
# Spellings used elsewhere (Data_Entry, earlier work) mapped to the box-list name.
_ALIASES = {"infiltration": "Infiltrate", "infiltrate": "Infiltrate"}
NIH_IMAGE_SIZE = (1024, 1024)  # (height, width) of the released PNGs the boxes refer to
_BOX_FIELDS = ("x", "y", "w", "h")


def _canonical(name: str) -> str | None:
    key = str(name).strip().lower()
    if key in _ALIASES:
        return _ALIASES[key]
    for c in NIH_CLASSES:
        if c.lower() == key:
            return c
    return None


def nih_class_names(classes: Sequence[str] | None = None) -> list[str]:
    """Canonical names of ``classes`` (all eight when None); ``Infiltration`` -> ``Infiltrate``.

    Raises:
        ValueError: a name that is not an NIH box class.
    """
    if classes is None:
        return list(NIH_CLASSES)
    out = []
    for c in classes:
        canon = _canonical(c)
        if canon is None:
            raise ValueError(f"unknown NIH class {c!r}; known: {', '.join(NIH_CLASSES)}")
        out.append(canon)
    return out


def patient_of(image_index: str) -> str:
    """NIH patient id: the file-name prefix before ``_`` (``00013118_008.png`` -> ``00013118``)."""
    return str(image_index).rpartition("/")[2].split("_")[0]  # os.path.basename, 2x faster


def _image_size(path: str) -> tuple[int, int]:
    # Boxes refer to the 1024 px release; a file on disk (e.g. the 512 px phantom) wins.
    return read_xray_size(path) if os.path.isfile(path) else NIH_IMAGE_SIZE


def _record(path: str, name: str, size: tuple[int, int]) -> dict:
    return {
        "file_name": path,
        "image_id": os.path.splitext(name)[0],
        "height": int(size[0]),
        "width": int(size[1]),
        "patient_id": patient_of(name),
        "annotations": [],
    }


def load_nih(
    bbox_csv: str,
    image_root: str,
    data_entry_csv: str | None = None,
    classes: Sequence[str] | None = None,
    num_negatives: int = 0,
    seed: int = 0,
    strict: bool = True,
) -> list[dict]:
    """Load NIH ChestX-ray14 boxes as detectron2 dataset dicts.

    Args:
        bbox_csv: ``BBox_List_2017.csv`` or ``.csv.gz``.
        image_root: folder of the PNGs (need not exist; sizes then default to 1024 x 1024, else
            each file's header gives its size).
        data_entry_csv: ``Data_Entry_2017_v2020.csv[.gz]``; needed for negatives.
        classes: subset of classes (category ids follow this order); default all eight.
            ``Infiltration`` is accepted for ``Infiltrate``. Images whose boxes are all of other
            classes are dropped.
        num_negatives: ``No Finding`` images of the same patients to add (``annotations: []``):
            0 none, n > 0 a seeded sample of n, < 0 all of them.
        seed: seed of the negative sample.
        strict: raise :class:`AnnotationError` on a bad row (True), or clip / skip it and log the
            count (False).

    Returns:
        list of dicts with ``file_name, image_id, height, width, patient_id, annotations``; each
        annotation has ``bbox`` (XYXY_ABS float pixels), ``bbox_mode`` and 0-based
        ``category_id``. Sorted by file name, positives and negatives mixed.
    """
    names = nih_class_names(classes)
    check = RowChecker(bbox_csv, strict=strict)
    records, dropped_images = _box_records(bbox_csv, image_root, names, check)
    if num_negatives and data_entry_csv:
        negs = _negatives(data_entry_csv, image_root, records, dropped_images, strict)
        if num_negatives > 0 and num_negatives < len(negs):
            pick = np.random.default_rng(seed).choice(len(negs), num_negatives, replace=False)
            negs = [negs[j] for j in sorted(pick)]
        for rec in negs:
            rec_size = _image_size(rec["file_name"])
            rec["height"], rec["width"] = int(rec_size[0]), int(rec_size[1])
            records[os.path.basename(rec["file_name"])] = rec
    elif num_negatives:
        logger.warning(
            "load_nih: num_negatives=%d but no data_entry_csv: none added", num_negatives
        )
    check.report()
    out = [records[k] for k in sorted(records)]
    log_summary(f"NIH {os.path.basename(bbox_csv)}", out, names)
    return out


def _box_records(
    bbox_csv: str, image_root: str, names: Sequence[str], check: RowChecker
) -> tuple[dict[str, dict], set]:
    """(image name -> record with its checked XYXY_ABS boxes of the classes ``names``, names of
    the images whose boxes are all of other classes)."""
    cat_of = {c: i for i, c in enumerate(names)}
    fields = ("Image Index", "Finding Label") + _BOX_FIELDS
    df = read_csv_rows(bbox_csv, fields, header=0, usecols=range(6))
    records: dict[str, dict] = {}
    dropped_images: set = set()
    for i, row in enumerate(df.itertuples(index=False, name=None)):
        line = csv_line(i)
        path = check.image_path(line, fields[0], image_root, row[0])
        if path is None:
            continue
        label = _canonical(row[1])
        if label is None:
            check.fail(line, fields[1], f"unknown class {row[1]!r}")
            continue
        vals = [check.number(line, f, v) for f, v in zip(_BOX_FIELDS, row[2:6])]
        if any(v is None for v in vals):
            continue
        if check.duplicate(line, fields[0], (row[0].strip(), label, *[round(v, 3) for v in vals])):
            continue
        name = row[0].strip()
        if label not in cat_of:
            dropped_images.add(name)
            continue
        rec = records.get(name)
        if rec is None:
            rec = records[name] = _record(path, name, _image_size(path))
        x, y, w, h = vals
        box = check.box_xyxy(line, _BOX_FIELDS, [x, y, x + w, y + h], rec["height"], rec["width"])
        if box is None:
            continue
        rec["annotations"].append(
            {"bbox": box, "bbox_mode": BoxMode.XYXY_ABS, "category_id": cat_of[label]}
        )
    return {k: v for k, v in records.items() if v["annotations"]}, dropped_images


def _negatives(
    data_entry_csv: str, image_root: str, positives: dict, exclude: set, strict: bool
) -> list[dict]:
    """``No Finding`` images of the patients in ``positives`` (sizes filled in by the caller)."""
    check = RowChecker(data_entry_csv, strict=strict)
    df = read_csv_rows(data_entry_csv, ("Image Index", "Finding Labels"), header=0, usecols=[0, 1])
    patients = {r["patient_id"] for r in positives.values()}
    out = []
    for i, (name, labels) in enumerate(df.itertuples(index=False, name=None)):
        name = name.strip()
        if labels.strip() != "No Finding" or name in positives or name in exclude:
            continue
        if patient_of(name) not in patients:
            continue
        path = check.image_path(csv_line(i), "Image Index", image_root, name)
        if path is None or check.duplicate(csv_line(i), "Image Index", name):
            continue
        out.append(_record(path, name, (0, 0)))
    check.report()
    return out

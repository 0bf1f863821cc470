"""VinDr-CXR / VinBigData ``train.csv``: several radiologists box the same findings.

Columns: ``image_id,class_name,class_id,rad_id,x_min,y_min,x_max,y_max``; class ids 0-13 are
findings, 14 is ``No finding`` with empty box columns. Images are ``<image_root>/<image_id>.dicom``
and their sizes come from the DICOM headers.

Reader fusion (``fusion=``), per image and class, boxes matched at IoU >= ``iou_thr`` (0.4):

- ``none``: every reader's box kept, the reader on the annotation (``rad_id``);
- ``wbf``: weighted boxes fusion through ``ensemble-boxes`` (:func:`cxr.ensemble.fuse_boxes`,
  the same code as model ensembles and TTA): each reader one list, every box scored 1, boxes of
  a class merged at IoU > ``iou_thr``; one box per cluster, the mean of its members;
- ``nms``: each box scored by the number of other readers agreeing with it; greedy NMS by that
  score (ties: CSV order) keeps the original boxes;
- ``majority``: the ``wbf`` clusters kept only where >= 2 readers agree.

Fused annotations carry ``num_readers``: for ``wbf`` / ``majority`` the boxes in the cluster (from
WBF's score, boxes / readers of the image; a reader boxing one finding twice counts twice), for
``nms`` the distinct readers agreeing.
"""

from __future__ import annotations

import logging
import os
from typing import Sequence

import numpy as np
from detectron2.structures import BoxMode

from ...boxes import pairwise_iou
from ...ensemble import fuse_boxes
from ...registry import NamedRegistry
from .common import RowChecker, log_summary, rows_with_images

__all__ = ["VINDR_CLASSES", "BOX_FUSIONS", "load_vindr"]

logger = logging.getLogger(__name__)

VINDR_CLASSES = (
    "Aortic enlargement", "Atelectasis", "Calcification", "Cardiomegaly", "Consolidation",
    "ILD", "Infiltration", "Lung Opacity", "Nodule/Mass", "Other lesion", "Pleural effusion",
    "Pleural thickening", "Pneumothorax", "Pulmonary fibrosis",
)  # fmt: skip
NO_FINDING_ID = 14
_BOX_FIELDS = ("x_min", "y_min", "x_max", "y_max")

BOX_FUSIONS = NamedRegistry("CXR_VINDR_BOX_FUSION")
BOX_FUSIONS.__doc__ = "fusion= name -> fn(annotations of one image, iou_thr) -> annotations."


def _by_class(annos: list[dict]) -> dict[int, list[dict]]:
    out: dict[int, list[dict]] = {}
    for a in annos:
        out.setdefault(a["category_id"], []).append(a)
    return out


def _wbf(annos: list[dict], iou_thr: float) -> list[dict]:
    """WBF of one image's boxes (XYXY_ABS), one list per reader, all scores 1."""
    readers = sorted({str(a.get("rad_id")) for a in annos})
    lists = [[a for a in annos if str(a.get("rad_id")) == r] for r in readers]
    boxes, scores, labels = fuse_boxes(
        [np.array([a["bbox"] for a in group], np.float64) for group in lists],
        [np.ones(len(group)) for group in lists],
        [np.array([a["category_id"] for a in group]) for group in lists],
        method="wbf",
        iou_thr=iou_thr,
    )
    return [
        {
            "bbox": [float(v) for v in box],
            "bbox_mode": BoxMode.XYXY_ABS,
            "category_id": int(label),
            "num_readers": int(round(score * len(readers))),
        }
        for box, score, label in zip(boxes, scores, labels)
    ]


@BOX_FUSIONS.register_as("none")
def _fuse_none(annos: list[dict], iou_thr: float) -> list[dict]:
    return list(annos)


@BOX_FUSIONS.register_as("wbf")
def _fuse_wbf(annos: list[dict], iou_thr: float) -> list[dict]:
    return _wbf(annos, iou_thr)


@BOX_FUSIONS.register_as("majority")
def _fuse_majority(annos: list[dict], iou_thr: float) -> list[dict]:
    return [a for a in _wbf(annos, iou_thr) if a["num_readers"] >= 2]


@BOX_FUSIONS.register_as("nms")
def _fuse_nms(annos: list[dict], iou_thr: float) -> list[dict]:
    out = []
    for group in _by_class(annos).values():
        boxes = np.array([a["bbox"] for a in group], np.float64)
        iou = pairwise_iou(boxes, boxes)
        readers = [a.get("rad_id") for a in group]
        scores = [
            len(
                {readers[j] for j in range(len(group)) if j != i and iou[i, j] >= iou_thr}
                - {readers[i]}
            )
            for i in range(len(group))
        ]
        order = sorted(range(len(group)), key=lambda i: (-scores[i], i))
        kept: list[int] = []
        for i in order:
            if all(iou[i, k] < iou_thr for k in kept):
                kept.append(i)
        for i in sorted(kept):
            out.append(dict(group[i], num_readers=scores[i] + 1))
    return out


def load_vindr(
    csv_file: str,
    image_root: str,
    fusion: str = "none",
    iou_thr: float = 0.4,
    classes: Sequence[str] | None = None,
    strict: bool = True,
) -> list[dict]:
    """Load VinDr-CXR boxes as detectron2 dataset dicts.

    Args:
        csv_file: ``train.csv`` in the VinBigData format.
        image_root: folder of ``<image_id>.dicom`` files (sizes read from their headers).
        fusion: one of :data:`BOX_FUSIONS` (``none``, ``wbf``, ``nms``, ``majority``).
        iou_thr: IoU at which two readers' boxes count as the same finding.
        classes: subset of :data:`VINDR_CLASSES` (category ids follow this order); default all.
        strict: raise on a bad row or unreadable image (True) or skip / clip and log (False).

    Returns:
        dicts with ``file_name, image_id, height, width, patient_id, annotations`` (``bbox``
        XYXY_ABS float pixels, ``category_id`` 0-based, ``rad_id`` with ``fusion="none"``).
        Images whose rows are all ``No finding`` are negatives (``annotations: []``). VinDr has
        no patient id: ``patient_id`` = ``image_id``.
    """
    if fusion not in BOX_FUSIONS:
        raise ValueError(f"unknown fusion {fusion!r}; choose one of {BOX_FUSIONS.names()}")
    names = list(VINDR_CLASSES) if classes is None else list(classes)
    for c in names:
        if c not in VINDR_CLASSES:
            raise ValueError(f"unknown VinDr class {c!r}; known: {', '.join(VINDR_CLASSES)}")
    cat_of = {VINDR_CLASSES.index(c): i for i, c in enumerate(names)}
    check = RowChecker(csv_file, strict=strict)
    records: dict[str, dict] = {}
    raw: dict[str, list[dict]] = {}
    columns = ("image_id", "class_name", "class_id", "rad_id") + _BOX_FIELDS
    for line, r, image_id, path in rows_with_images(
        check, csv_file, columns, "image_id", image_root, ".dicom"
    ):
        cid = check.number(line, "class_id", r["class_id"])
        if cid is None:
            continue
        cid = int(cid)
        if not 0 <= cid <= NO_FINDING_ID:
            check.fail(line, "class_id", f"unknown class id {cid}")
            continue
        expected = VINDR_CLASSES[cid] if cid < NO_FINDING_ID else "No finding"
        if r["class_name"].strip().lower() != expected.lower():
            check.fail(line, "class_name", f"{r['class_name']!r} does not match class_id {cid}")
            continue
        if image_id not in records:
            records[image_id] = check.image_record(path, image_id, image_id)  # type: ignore
            raw[image_id] = []
        rec = records[image_id]
        if rec is None or cid == NO_FINDING_ID:
            continue
        vals = [check.number(line, f, r[f]) for f in _BOX_FIELDS]
        if any(v is None for v in vals):
            continue
        rad = r["rad_id"].strip()
        if check.duplicate(line, "rad_id", (image_id, cid, rad, *[round(v, 3) for v in vals])):
            continue
        box = check.box_xyxy(line, _BOX_FIELDS, vals, rec["height"], rec["width"])
        if box is None or cid not in cat_of:
            continue
        raw[image_id].append(
            {"bbox": box, "bbox_mode": BoxMode.XYXY_ABS, "category_id": cat_of[cid], "rad_id": rad}
        )
    check.report()
    out = []
    for image_id in sorted(k for k, v in records.items() if v is not None):
        rec = records[image_id]
        rec["annotations"] = BOX_FUSIONS.get(fusion)(raw[image_id], iou_thr)
        out.append(rec)
    log_summary(f"VinDr-CXR {os.path.basename(csv_file)} (fusion={fusion})", out, names)
    return out

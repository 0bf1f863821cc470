"""RSNA Pneumonia Detection ``stage_2_train_labels.csv``: one class, ``Lung Opacity``.

Columns ``patientId,x,y,width,height,Target``; ``Target=0`` rows have empty boxes (negatives);
an image with several boxes has several rows. Images are ``<image_root>/<patientId>.dcm``.
"""

from __future__ import annotations

import logging
import os

from detectron2.structures import BoxMode

from .common import RowChecker, log_summary, rows_with_images

__all__ = ["RSNA_CLASSES", "load_rsna"]

logger = logging.getLogger(__name__)

RSNA_CLASSES = ("Lung Opacity",)
_BOX_FIELDS = ("x", "y", "width", "height")


def load_rsna(csv_file: str, image_root: str, strict: bool = True) -> list[dict]:
    """Load RSNA Pneumonia boxes as detectron2 dataset dicts.

    Args:
        csv_file: ``stage_2_train_labels.csv``.
        image_root: folder of ``<patientId>.dcm`` (sizes read from the DICOM headers).
        strict: raise on a bad row / unreadable image (True) or skip / clip and log (False).

    Returns:
        dicts with ``file_name, image_id, height, width, patient_id (= patientId),
        annotations`` (``bbox`` XYXY_ABS float pixels, ``category_id`` 0); ``Target=0`` images
        have ``annotations: []``.
    """
    check = RowChecker(csv_file, strict=strict)
    records: dict[str, dict | None] = {}
    columns = ("patientId", "Target") + _BOX_FIELDS
    for line, r, pid, path in rows_with_images(
        check, csv_file, columns, "patientId", image_root, ".dcm"
    ):
        target = r["Target"].strip()
        if target not in ("0", "1"):
            check.fail(line, "Target", f"must be 0 or 1, got {target!r}")
            continue
        if pid not in records:
            records[pid] = check.image_record(path, pid, pid)
        rec = records[pid]
        if rec is None:
            continue
        if target == "0":
            if any(r[f].strip() for f in _BOX_FIELDS):
                check.fail(line, "Target", "Target=0 row has a box")
            elif rec["annotations"]:
                check.fail(line, "Target", "Target=0 row for an image with boxes")
            continue
        vals = [check.number(line, f, r[f]) for f in _BOX_FIELDS]
        if any(v is None for v in vals):
            continue
        if check.duplicate(line, "patientId", (pid, *[round(v, 3) for v in vals])):
            continue
        x, y, w, h = vals
        box = check.box_xyxy(line, _BOX_FIELDS, [x, y, x + w, y + h], rec["height"], rec["width"])
        if box is not None:
            rec["annotations"].append(
                {"bbox": box, "bbox_mode": BoxMode.XYXY_ABS, "category_id": 0}
            )
    check.report()
    out = [records[k] for k in sorted(records) if records[k] is not None]
    log_summary(f"RSNA {os.path.basename(csv_file)}", out, RSNA_CLASSES)
    return out

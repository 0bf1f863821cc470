"""Boxes of prepared films mapped back to the original films' pixels.

A prepared copy (``tools/prepare_data.py``) stores each film resized by ``scale`` (prepared /
original pixels, the same in x and y) and records it as ``scale``, ``orig_height`` and
``orig_width``. The model sees the prepared film, so its detections are in prepared pixels;
:func:`to_original_frame` divides ground-truth and detected boxes by ``scale`` so that every
metric (COCO AP and its area ranges, mAP@0.4, FROC, IoBB) and ``predictions.json`` are in the
original films' pixels, comparable with an evaluation on the originals.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from detectron2.structures import BoxMode

__all__ = ["to_original_frame"]


def _record(d: dict) -> dict:
    s = float(d["scale"])
    out = dict(d, scale=1.0)
    out["height"], out["width"] = d.get("orig_height", d["height"]), d.get("orig_width", d["width"])
    annos = []
    for a in d.get("annotations", []):
        box = BoxMode.convert(list(map(float, a["bbox"])), a.get("bbox_mode", BoxMode.XYXY_ABS),
                              BoxMode.XYXY_ABS)  # fmt: skip
        b = dict(a, bbox=[v / s for v in box], bbox_mode=BoxMode.XYXY_ABS)
        if "area" in a:
            b["area"] = float(a["area"]) / (s * s)
        annos.append(b)
    out["annotations"] = annos
    return out


def to_original_frame(
    dataset_dicts: Sequence[dict], predictions: Sequence[dict]
) -> tuple[list[dict], list[dict]]:
    """Records and predictions of films with a ``scale`` field, in the original films' pixels.

    Args:
        dataset_dicts: detectron2 records; those with ``scale`` (prepared films) have their
            boxes (any ``bbox_mode``, returned XYXY_ABS), ``area``, ``height`` and ``width``
            mapped back; records without ``scale`` are returned as they are.
        predictions: ``{"image_id", "boxes" (n, 4) XYXY_ABS (or XYWH_ABS with ``bbox_mode``)
            in the pixels of the film the record describes, "scores", "classes"}``.

    Returns:
        ``(records, predictions)``; the inputs are not modified.
    """
    scale = {d["image_id"]: float(d["scale"]) for d in dataset_dicts if "scale" in d}
    if not scale or all(s == 1.0 for s in scale.values()):
        return list(dataset_dicts), list(predictions)
    records = [_record(d) if "scale" in d else d for d in dataset_dicts]
    preds = []
    for p in predictions:
        s = scale.get(p["image_id"], 1.0)
        boxes = np.asarray(p["boxes"], np.float64).reshape(-1, 4) / s  # XYXY and XYWH alike
        preds.append({**p, "boxes": boxes})
    return records, preds

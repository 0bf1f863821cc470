"""IoBB localization accuracy (ChestX-ray8, Table 4), in pure numpy."""

from __future__ import annotations

import dataclasses
from typing import Sequence

import numpy as np

from ...boxes import box_area, box_intersection
from ..operating_points import positive_findings
from ..records import DetectionSet
from .matching import box_slots, group_detections, pad_rows

__all__ = ["IOBB_THRESHOLDS", "iobb_accuracy"]

IOBB_THRESHOLDS = (0.1, 0.25, 0.5, 0.75, 0.9)


def iobb_accuracy(
    ds: DetectionSet,
    score_thresholds: np.ndarray | float,
    thresholds: Sequence[float] = IOBB_THRESHOLDS,
) -> np.ndarray:
    """Localization accuracy by intersection over predicted-box area (ChestX-ray8, Table 4).

    Rule: a box is localized at T when some detection of its class in its image with score >=
    the class's score threshold has intersection / detection area > T (strict; XYXY_ABS,
    continuous, zero-area detections never localize). Accuracy = localized boxes / boxes, per
    class.

    Args:
        score_thresholds: scalar or (C,) per-class minimum score of the detections used (the
            image-level operating points; otherwise every low-score box would localize).
        thresholds: the T values.

    Returns:
        (len(thresholds), C) accuracy; NaN for a class without boxes.
    """
    thr = np.broadcast_to(np.asarray(score_thresholds, np.float64), (ds.num_classes,))
    keep = positive_findings(ds.dt_scores, thr[ds.dt_class])
    sub = dataclasses.replace(
        ds,
        dt_image=ds.dt_image[keep],
        dt_class=ds.dt_class[keep],
        dt_boxes=ds.dt_boxes[keep],
        dt_scores=ds.dt_scores[keep],
        dt_boxes_xywh=None,
    )
    g = group_detections(sub)
    slot_ok, sidx = box_slots(g)
    best = np.zeros(len(ds.gt_image) + 1)
    if len(g.dt_order):
        dt = sub.dt_boxes[g.dt_order][:, None, :]
        inter = box_intersection(dt, pad_rows(ds.gt_boxes)[sidx[g.dt_group]])
        da = box_area(dt)
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = np.where(da > 0, inter / da, 0.0)
        ok = slot_ok[g.dt_group]
        np.maximum.at(best, sidx[g.dt_group][ok], ratio[ok])
    T = np.asarray(thresholds, np.float64)
    loc = best[None, :-1] > T[:, None]  # (T, G)
    out = np.full((len(T), ds.num_classes), np.nan)
    n = np.bincount(ds.gt_class, minlength=ds.num_classes)
    for i in range(len(T)):
        hit = np.bincount(ds.gt_class, weights=loc[i].astype(float), minlength=ds.num_classes)
        out[i] = np.where(n > 0, hit / np.maximum(n, 1), np.nan)
    return out

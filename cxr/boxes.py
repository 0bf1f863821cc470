"""Box geometry in numpy, float64: the one IoU of cxr.

Used by the data loaders (reader fusion of VinDr-CXR) and by the evaluation (matching, COCO AP,
IoBB, the report's gallery), so every caller measures overlap with the same arithmetic. Boxes
are XYXY_ABS pixels (``x1, y1, x2, y2``, continuous coordinates, no +1) unless a function says
otherwise. Functions broadcast over leading axes: ``box_iou(a[:, None], b[None])`` is the
(N, M) matrix that :func:`pairwise_iou` returns.
"""

from __future__ import annotations

import numpy as np

__all__ = ["box_area", "box_intersection", "box_iou", "coco_box_iou", "pairwise_iou"]


def box_area(b: np.ndarray) -> np.ndarray:
    """``(x2 - x1) * (y2 - y1)`` of XYXY_ABS boxes ``b`` (..., 4), pixels^2 (not clipped)."""
    return (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])


def box_intersection(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Intersection area of XYXY_ABS boxes ``a`` (..., 4) and ``b`` (..., 4), broadcast;
    pixels^2, 0 for disjoint boxes."""
    w = np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0])
    h = np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1])
    return np.clip(w, 0, None) * np.clip(h, 0, None)


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Intersection over union of XYXY_ABS boxes ``a`` (..., 4) and ``b`` (..., 4), broadcast.

    Union = area(a) + area(b) - intersection; 0 where the union is not positive.
    """
    inter = box_intersection(a, b)
    union = box_area(a) + box_area(b) - inter
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(union > 0, inter / union, 0.0)


def pairwise_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(N, M) IoU matrix of XYXY_ABS boxes ``a`` (N, 4) and ``b`` (M, 4) (:func:`box_iou`)."""
    a = np.asarray(a, np.float64).reshape(-1, 4)
    b = np.asarray(b, np.float64).reshape(-1, 4)
    return box_iou(a[:, None, :], b[None, :, :])


def coco_box_iou(dt: np.ndarray, gt: np.ndarray, crowd: np.ndarray) -> np.ndarray:
    """IoU of COCO XYWH_ABS boxes as pycocotools' ``bbIou`` computes it, broadcast.

    ``w = min(x + w) - max(x)`` formed from the XYWH numbers themselves (no +1), so that the
    result is bit-identical to pycocotools; for a ``crowd`` box the union is the detection's
    area.

    Args:
        dt: (n, 4) detections; gt: (n, S, 4) boxes per detection row; crowd: (n, S) bool.

    Returns:
        (n, S) IoU.
    """
    dx, dy, dw, dh = (dt[:, i : i + 1] for i in range(4))
    gx, gy, gw, gh = (gt[..., i] for i in range(4))
    w = np.minimum(dw + dx, gw + gx) - np.maximum(dx, gx)
    h = np.minimum(dh + dy, gh + gy) - np.maximum(dy, gy)
    inter = np.where((w > 0) & (h > 0), w * h, 0.0)
    da = dw * dh
    union = np.where(crowd, da, da + gw * gh - inter)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(inter > 0, inter / union, 0.0)

"""Box fusion of several detection lists of one image, through ``ensemble-boxes``.

``ensemble-boxes`` works on coordinates normalized to [0, 1]; :func:`fuse_boxes` takes
XYXY_ABS pixels and a per-image scale (the image size, or any bound of the boxes: IoU and
weighted means do not change under per-axis scaling, so the result is the same), and returns
pixels again.

Methods (``BOX_FUSION_REGISTRY``, by name):

- ``wbf``: weighted boxes fusion (Solovyev et al. 2021): boxes of a class clustered by IoU with
  the cluster's fused box, coordinates averaged weighted by score x list weight; fused score =
  mean score x min(lists in cluster, lists) / lists (``conf_type="avg"``);
- ``nms``: greedy NMS over all lists (scores times list weights), boxes kept unchanged;
- ``soft-nms``: Gaussian soft-NMS (sigma 0.5), scores decayed by overlap, dropped below 0.001;
- ``nmw``: non-maximum weighted: the top box of each cluster with coordinates averaged by
  score x IoU.
"""
from __future__ import annotations

import logging
from typing import Sequence

import numpy as np

from ..registry import NamedRegistry

__all__ = ["BOX_FUSION_REGISTRY", "fuse_boxes"]

logger = logging.getLogger(__name__)

BOX_FUSION_REGISTRY = NamedRegistry("BOX_FUSION")
BOX_FUSION_REGISTRY.__doc__ = """
Box fusion by name: ``fn(boxes_list, scores_list, labels_list, weights, iou_thr, skip_box_thr)``
on normalized XYXY coordinates -> (boxes, scores, labels), as ``ensemble-boxes`` returns them.
"""


def _skip(boxes_list, scores_list, labels_list, thr):
    """Drop boxes scored below ``thr`` (nms / soft-nms in ensemble-boxes have no such option)."""
    keep = [np.asarray(s) >= thr for s in scores_list]
    return (
        [np.asarray(b)[k] for b, k in zip(boxes_list, keep)],
        [np.asarray(s)[k] for s, k in zip(scores_list, keep)],
        [np.asarray(lab)[k] for lab, k in zip(labels_list, keep)],
    )


def _library_method(name: str, skip_option: bool, **options):
    """Registry entry calling ``ensemble_boxes.<name>`` (imported on first use)."""

    def fuse(boxes_list, scores_list, labels_list, weights, iou_thr, skip_box_thr):
        import ensemble_boxes

        if skip_option:
            options["skip_box_thr"] = skip_box_thr
        else:
            boxes_list, scores_list, labels_list = _skip(
                boxes_list, scores_list, labels_list, skip_box_thr
            )
        return getattr(ensemble_boxes, name)(
            boxes_list, scores_list, labels_list, weights=weights, iou_thr=iou_thr, **options
        )

    return fuse


# name -> (ensemble_boxes function, whether it takes skip_box_thr, fixed options)
for _name, (_fn, _skip_option, _options) in {
    "wbf": ("weighted_boxes_fusion", True, {}),
    "nms": ("nms", False, {}),
    "soft-nms": ("soft_nms", False, {"sigma": 0.5, "thresh": 0.001}),
    "nmw": ("non_maximum_weighted", True, {}),
}.items():
    BOX_FUSION_REGISTRY.register_as(_name)(_library_method(_fn, _skip_option, **_options))


def fuse_boxes(
    boxes_list: Sequence[np.ndarray],
    scores_list: Sequence[np.ndarray],
    labels_list: Sequence[np.ndarray],
    *,
    scale: tuple[float, float] | None = None,
    method: str = "wbf",
    weights: Sequence[float] | None = None,
    iou_thr: float = 0.55,
    skip_box_thr: float = 0.0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Fuse the detection lists of one image (one list per model / view / reader).

    Args:
        boxes_list: per list (R_i, 4) XYXY_ABS pixels.
        scores_list: per list (R_i,) scores in [0, 1].
        labels_list: per list (R_i,) integer class labels.
        scale: (width, height) the boxes are normalized by (the image size); None: the largest
            x2 / y2 over all lists (the result is the same, see the module docstring).
        method: a :data:`BOX_FUSION_REGISTRY` name: "wbf", "nms", "soft-nms" or "nmw".
        weights: one weight per list (None: all 1).
        iou_thr: IoU at which boxes of one class are merged / suppressed.
        skip_box_thr: boxes scored below this are ignored (and boxes scored 0 always).

    Returns:
        boxes (R, 4) float64 XYXY_ABS pixels, scores (R,) float64 by descending score, labels
        (R,) int64.
    """
    if method not in BOX_FUSION_REGISTRY:
        choices = sorted(k for k, _ in BOX_FUSION_REGISTRY)
        raise ValueError(f"unknown fusion method {method!r}; choose from {choices}")
    if weights is not None and len(weights) != len(boxes_list):
        raise ValueError(f"{len(weights)} weights for {len(boxes_list)} detection lists")
    # Zero-score boxes carry no weight (and would divide WBF's weighted mean by zero).
    boxes_list, scores_list, labels_list = _skip(
        [np.asarray(b, np.float64).reshape(-1, 4) for b in boxes_list],
        [np.asarray(s, np.float64).reshape(-1) for s in scores_list],
        [np.asarray(lab).reshape(-1) for lab in labels_list],
        np.nextafter(0.0, 1.0),
    )
    if not sum(len(b) for b in boxes_list):
        return np.zeros((0, 4)), np.zeros(0), np.zeros(0, np.int64)
    if scale is None:
        allb = np.concatenate(boxes_list)
        scale = (max(float(allb[:, 2].max()), 1e-6), max(float(allb[:, 3].max()), 1e-6))
    norm = np.array([scale[0], scale[1], scale[0], scale[1]], np.float64)
    boxes, scores, labels = BOX_FUSION_REGISTRY.get(method)(
        [np.clip(b / norm, 0.0, 1.0) for b in boxes_list],
        scores_list,
        labels_list,
        weights,
        iou_thr,
        skip_box_thr,
    )
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4) * norm
    scores = np.asarray(scores, np.float64).reshape(-1)
    order = np.argsort(-scores, kind="stable")
    return boxes[order], scores[order], np.asarray(labels).reshape(-1).astype(np.int64)[order]

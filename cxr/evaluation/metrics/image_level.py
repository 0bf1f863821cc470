"""Image-level metrics of one binary task per class, in pure numpy: image scores, confusion
counts, sensitivity, specificity, PPV, NPV, F1, AUROC and the ROC curve.

Rules (docs/evaluation.md, "Metric definitions"): image score of a class = max score of its
detections (:func:`image_scores`); positive by
:func:`~cxr.evaluation.operating_points.positive_findings`; undefined ratios (0 / 0) are NaN.
Detection and classification evaluation both use these functions.
"""

from __future__ import annotations

import numpy as np

from ..operating_points import positive_findings
from ..records import DetectionSet

__all__ = ["IMAGE_LEVEL_KEYS", "auroc", "image_level_metrics", "image_scores", "roc_curve"]


def image_scores(ds: DetectionSet) -> tuple[np.ndarray, np.ndarray]:
    """Image-level scores and labels per class.

    Rule: image score of a class = max score of that class's detections in the image (0 if
    none); the image is positive for the class when it has >= 1 box of that class (images
    without boxes are negatives for every class).

    Returns:
        ``(scores, labels)``: (N, C) float64 and (N, C) bool.
    """
    s = np.zeros((ds.num_images, ds.num_classes))
    if len(ds.dt_scores):
        np.maximum.at(s, (ds.dt_image, ds.dt_class), np.maximum(ds.dt_scores, 0.0))
    return s, ds.gt_counts > 0


def auroc(scores: np.ndarray, labels: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
    """Area under the ROC curve of image scores (Mann-Whitney, ties count 1/2).

    AUROC = P(score of a positive > score of a negative) + 1/2 P(equal), over all
    positive-negative pairs (each weighted by the product of image weights).

    Args:
        scores: (N,) float; labels: (N,) bool; weights: (B, N) image weights (default ones).

    Returns:
        (B,) AUROC; NaN when there is no positive or no negative.
    """
    W = np.ones((1, len(scores))) if weights is None else np.asarray(weights, np.float64)
    y = np.asarray(labels, bool)
    order = np.argsort(scores, kind="stable")
    s = np.asarray(scores)[order]
    yo = y[order]
    _, inv = np.unique(s, return_inverse=True)
    n_u = inv.max() + 1 if len(inv) else 0
    out = np.empty(W.shape[0])
    for b0 in range(0, W.shape[0], 256):
        w = W[b0 : b0 + 256][:, order]
        wn = w * ~yo
        wp = w * yo
        # negative weight per distinct score, then strictly-below cumulative
        neg_u = np.zeros((w.shape[0], n_u))
        pos_u = np.zeros((w.shape[0], n_u))
        if n_u:
            starts = np.flatnonzero(np.r_[True, inv[1:] != inv[:-1]])
            neg_u = np.add.reduceat(wn, starts, axis=1)
            pos_u = np.add.reduceat(wp, starts, axis=1)
        below = np.cumsum(neg_u, axis=1) - neg_u
        num = (pos_u * (below + 0.5 * neg_u)).sum(1)
        den = wp.sum(1) * wn.sum(1)
        with np.errstate(divide="ignore", invalid="ignore"):
            out[b0 : b0 + 256] = np.where(den > 0, num / den, np.nan)
    return out


IMAGE_LEVEL_KEYS = (
    "tp",
    "fp",
    "tn",
    "fn",
    "sensitivity",
    "specificity",
    "ppv",
    "npv",
    "f1",
    "auroc",
)


def image_level_metrics(
    scores: np.ndarray, labels: np.ndarray, threshold: float, weights: np.ndarray | None = None
) -> dict[str, np.ndarray]:
    """Confusion counts and rates of one binary image-level task.

    Rules: predicted positive by
    :func:`~cxr.evaluation.operating_points.positive_findings` (score >= threshold and
    score > 0: an image without a detection is never positive). sensitivity = TP/(TP+FN), specificity = TN/(TN+FP), PPV = TP/(TP+FP),
    NPV = TN/(TN+FN), F1 = 2TP/(2TP+FP+FN); each NaN when its denominator is 0. AUROC by
    :func:`auroc` (threshold-free).

    Args:
        scores: (N,) image scores; labels: (N,) bool ground truth.
        threshold: operating point.
        weights: (B, N) bootstrap image weights (default one row of ones).

    Returns:
        dict key -> (B,) array for the keys in ``IMAGE_LEVEL_KEYS`` (counts are weighted sums).
    """
    W = np.ones((1, len(scores))) if weights is None else np.asarray(weights, np.float64)
    y = np.asarray(labels, bool)
    p = positive_findings(scores, threshold)
    M = np.stack([y & p, ~y & p, ~y & ~p, y & ~p], 1).astype(np.float64)  # (N, 4)
    tp, fp, tn, fn = (W @ M).T
    with np.errstate(divide="ignore", invalid="ignore"):

        def ratio(a, b):
            return np.where(b > 0, a / np.where(b > 0, b, 1), np.nan)

        return {
            "tp": tp,
            "fp": fp,
            "tn": tn,
            "fn": fn,
            "sensitivity": ratio(tp, tp + fn),
            "specificity": ratio(tn, tn + fp),
            "ppv": ratio(tp, tp + fp),
            "npv": ratio(tn, tn + fn),
            "f1": ratio(2 * tp, 2 * tp + fp + fn),
            "auroc": auroc(scores, y, W),
        }


def roc_curve(scores: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The ROC curve of image scores: ``(fpr, tpr)`` at every distinct score, for plots.

    Rule: at threshold t an image is positive when its score >= t; thresholds are +inf (the
    point (0, 0)) then every distinct score, descending; tpr = positives at or above t / all
    positives, fpr = negatives at or above t / all negatives (NaN without positives /
    negatives). The same points as scikit-learn's ``roc_curve(..., drop_intermediate=False)``.

    Args:
        scores: (N,) image scores; labels: (N,) bool ground truth.

    Returns:
        ``(fpr, tpr)``, each (distinct scores + 1,) float64, non-decreasing.
    """
    s = np.asarray(scores, np.float64).reshape(-1)
    y = np.asarray(labels, bool).reshape(-1)
    order = np.argsort(-s, kind="stable")
    s, y = s[order], y[order]
    cut = np.flatnonzero(np.r_[s[1:] != s[:-1], True]) if len(s) else np.zeros(0, int)
    tp = np.r_[0, np.cumsum(y)[cut]].astype(np.float64)
    fp = np.r_[0, np.cumsum(~y)[cut]].astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        return fp / fp[-1], tp / tp[-1]

"""FROC (free-response ROC) and CPM of lesion detection, in pure numpy.

Rule (docs/evaluation.md, "Metric definitions"): matching by
:func:`~.matching.froc_matches`; sensitivity at fixed false positives per image, as a step (no
interpolation); CPM = mean over the rates. :func:`froc` takes bootstrap image weights
(:mod:`.bootstrap`); :func:`froc_curve` gives the full curve for plots.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from ..records import DetectionSet
from .matching import FrocMatches, froc_matches

__all__ = ["FROC_FPS_PER_IMAGE", "froc", "froc_curve"]

FROC_FPS_PER_IMAGE = (0.125, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0)


def _froc_curve_weighted(
    tp: np.ndarray,
    scores: np.ndarray,
    image: np.ndarray,
    n_gt: np.ndarray,
    W: np.ndarray,
    fps_points: np.ndarray,
    chunk: int = 64,
) -> np.ndarray:
    """Sensitivity at each FP/image point, for each weight row (B, len(fps_points))."""
    B = W.shape[0]
    npos = W @ n_gt.astype(np.float64)
    nimg = W.sum(1)
    out = np.zeros((B, len(fps_points)))
    n = len(tp)
    if n:
        # Operating points exist only between different scores (a tie cannot be split).
        cut = np.flatnonzero(np.r_[scores[1:] != scores[:-1], True])
        tpf = tp.astype(np.float64)
        for b0 in range(0, B, chunk):
            w = W[b0 : b0 + chunk][:, image]
            tpc = np.cumsum(w * tpf, axis=1)[:, cut]
            fpc = np.cumsum(w * (1.0 - tpf), axis=1)[:, cut]
            rate = fpc / nimg[b0 : b0 + chunk, None]
            for j, r in enumerate(fps_points):
                # monotone: last cut with rate <= r (sensitivity 0 when none)
                k = (rate <= r).sum(1) - 1
                val = np.take_along_axis(tpc, np.maximum(k, 0)[:, None], 1)[:, 0]
                out[b0 : b0 + chunk, j] = np.where(k >= 0, val, 0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(npos[:, None] > 0, out / npos[:, None], np.nan)


def froc(
    ds: DetectionSet,
    iou_threshold: float = 0.4,
    fps_per_image: Sequence[float] = FROC_FPS_PER_IMAGE,
    weights: np.ndarray | None = None,
    matches: FrocMatches | None = None,
    per_class: bool = False,
) -> dict:
    """FROC sensitivities at fixed false-positive rates, and CPM.

    Rule: matching by :func:`froc_matches`. Over score thresholds (a detection is kept when its
    score >= threshold; thresholds between distinct scores only), sensitivity = matched boxes /
    all boxes and FP rate = false positives / number of images (images without boxes
    included). Sensitivity at rate r = the highest sensitivity over thresholds with FP rate <= r
    (a step, no interpolation; 0 when no threshold qualifies). CPM = mean over the rates.
    Per-class curves use the same rule on one class's detections and boxes.

    Args:
        weights: (B, N) bootstrap image weights; default one row of ones.
        matches: precomputed :func:`froc_matches`.
        per_class: also return per-class sensitivities.

    Returns:
        dict with ``fps_per_image`` (R,), ``sensitivity`` (B, R), ``cpm`` (B,) (NaN without
        boxes) and, if ``per_class``, ``per_class_sensitivity`` (B, C, R), ``per_class_cpm``
        (B, C).
    """
    W = np.ones((1, ds.num_images)) if weights is None else np.asarray(weights, np.float64)
    m = froc_matches(ds, iou_threshold) if matches is None else matches
    pts = np.asarray(fps_per_image, np.float64)
    sens = _froc_curve_weighted(m.tp, m.scores, m.image, m.gt_counts.sum(1), W, pts)
    out = {"fps_per_image": pts, "sensitivity": sens, "cpm": sens.mean(1)}
    if per_class:
        curves = []
        for c in range(ds.num_classes):
            k = m.cls == c
            curves.append(
                _froc_curve_weighted(m.tp[k], m.scores[k], m.image[k], m.gt_counts[:, c], W, pts)
            )
        pcs = np.stack(curves, 1) if curves else np.zeros((len(W), 0, len(pts)))
        out["per_class_sensitivity"] = pcs
        out["per_class_cpm"] = pcs.mean(2)
    return out


def froc_curve(
    m: FrocMatches, num_images: int, cls: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """The full FROC curve (for plots): FP/image and sensitivity at every score threshold.

    Args:
        cls: restrict to one class (default: all classes pooled).

    Returns:
        ``(fp_rate, sensitivity)`` arrays, starting at (0, 0).
    """
    sel = np.ones(len(m.tp), bool) if cls is None else m.cls == cls
    tp, sc = m.tp[sel], m.scores[sel]
    npos = m.gt_counts.sum() if cls is None else m.gt_counts[:, cls].sum()
    cut = np.flatnonzero(np.r_[sc[1:] != sc[:-1], True]) if len(sc) else np.zeros(0, int)
    tpc = np.cumsum(tp)[cut]
    fpc = np.cumsum(~tp)[cut]
    with np.errstate(divide="ignore", invalid="ignore"):
        sens = tpc / npos if npos else np.full(len(cut), np.nan)
    return np.r_[0.0, fpc / max(num_images, 1)], np.r_[0.0, sens]

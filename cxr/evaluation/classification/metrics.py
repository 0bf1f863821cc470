"""Multi-label image classification metrics (``evaluator_type="cxr_cls"``), in numpy.

Rules (fractions 0-1; undefined values NaN, written as null):

- Per class: AUROC and TP/FP/TN/FN, sensitivity, specificity, PPV, NPV, F1 at the class's
  operating point, by the detection evaluator's image-level code
  (:func:`cxr.evaluation.metrics.image_level.image_level_metrics`: score >= threshold is
  positive; AUROC by Mann-Whitney with ties 1/2). Average precision (AP) = sum over distinct
  score thresholds, descending, of (recall step) x precision, no interpolation (scikit-learn's
  definition).
- Macro = mean over classes with both positives and negatives; micro = the metric of all
  (image, class) pairs pooled.
- Operating points: ``thresholds`` (class -> score, e.g. chosen on validation) when given, else
  ``cm_threshold`` for every class; the thresholds chosen on this set (Youden's J or a target
  sensitivity, :func:`~cxr.evaluation.operating_points.select_thresholds`) go to
  ``thresholds.json``, as for the detector.
- 95% CIs: percentile bootstrap resampling patients (images without a patient id), seeded
  (:func:`~cxr.evaluation.metrics.bootstrap.bootstrap_weights`).
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

import numpy as np

from ..medical import nanmean_rows
from ..metrics.bootstrap import bootstrap_weights, percentile_ci
from ..metrics.image_level import auroc, image_level_metrics
from ..operating_points import select_thresholds

__all__ = [
    "CI_KEYS",
    "ClassificationResult",
    "average_precision",
    "compute_classification_metrics",
    "flat_classification_results",
]

CI_KEYS = ("auroc", "ap", "sensitivity", "specificity", "ppv", "npv", "f1")
SUMMARY_KEYS = ("auroc", "ap", "sensitivity", "specificity", "f1")


def average_precision(
    scores: np.ndarray, labels: np.ndarray, weights: np.ndarray | None = None
) -> np.ndarray:
    """Average precision of one binary task: ``sum_k (R_k - R_{k-1}) P_k`` over the distinct
    scores in descending order (tied scores form one step; no interpolation).

    Args:
        scores: (N,); labels: (N,) bool; weights: (B, N) image weights (default ones).

    Returns:
        (B,) AP; NaN when a row has no positive weight.
    """
    W = np.ones((1, len(scores))) if weights is None else np.asarray(weights, np.float64)
    order = np.argsort(-np.asarray(scores, np.float64), kind="stable")
    s = np.asarray(scores, np.float64)[order]
    y = np.asarray(labels, bool)[order]
    if len(s) == 0:
        return np.full(W.shape[0], np.nan)
    last = np.r_[s[1:] != s[:-1], True]  # the last index of each run of tied scores
    w = W[:, order]
    tp = np.cumsum(w * y, 1)[:, last]
    fp = np.cumsum(w * ~y, 1)[:, last]
    npos = tp[:, -1:]
    with np.errstate(divide="ignore", invalid="ignore"):
        prec = np.where(tp + fp > 0, tp / (tp + fp), 0.0)
        rec = tp / npos
    step = np.diff(np.concatenate([np.zeros((len(rec), 1)), rec], 1), axis=1)
    out = (step * prec).sum(1)
    return np.where(npos[:, 0] > 0, out, np.nan)


@dataclasses.dataclass
class ClassificationResult:
    """Output of :func:`compute_classification_metrics`: the ``metrics.json`` dict, the
    thresholds chosen on this set (+ how), and the (N, C) scores / labels / (C,) thresholds."""

    metrics: dict
    selected_thresholds: dict
    selected_meta: dict
    scores: np.ndarray
    labels: np.ndarray
    thresholds: np.ndarray


def _per_class(scores, labels, thr, W) -> dict[str, np.ndarray]:
    """(B, C) arrays per key: image-level counts/rates + AUROC + AP of every class."""
    cols = []
    for c in range(scores.shape[1]):
        d = image_level_metrics(scores[:, c], labels[:, c], thr[c], W)
        d["ap"] = average_precision(scores[:, c], labels[:, c], W)
        cols.append(d)
    return {k: np.stack([d[k] for d in cols], 1) for k in cols[0]}


def _micro(scores, labels, W) -> dict[str, np.ndarray]:
    Wc = np.repeat(W, scores.shape[1], axis=1)  # (image, class) pairs, image-major like ravel()
    return {
        "auroc": auroc(scores.ravel(), labels.ravel(), Wc),
        "ap": average_precision(scores.ravel(), labels.ravel(), Wc),
    }


def _macro(per: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    valid = (per["tp"] + per["fn"] > 0) & (per["tn"] + per["fp"] > 0)
    return {k: nanmean_rows(per[k], valid) for k in SUMMARY_KEYS}


def _bootstrap_ci(
    scores: np.ndarray,
    labels: np.ndarray,
    thr: np.ndarray,
    class_names: Sequence[str],
    bootstrap: int,
    seed: int,
    patient_ids: Sequence | None,
) -> dict[str, list[float]]:
    """Percentile 95% CIs of the per-class, macro and micro metrics over ``bootstrap`` seeded
    resamples of patients (images when ``patient_ids`` is None)."""
    units = patient_ids if patient_ids is not None else np.arange(len(scores))
    W = bootstrap_weights(units, bootstrap, seed)
    bper = _per_class(scores, labels, thr, W)
    ci = {}
    for c, n in enumerate(class_names):
        for k in CI_KEYS:
            ci[f"per_class.{n}.{k}"] = percentile_ci(bper[k][:, c]).tolist()
    for g, d in (("macro", _macro(bper)), ("micro", _micro(scores, labels, W))):
        for k, v in d.items():
            ci[f"{g}.{k}"] = percentile_ci(v).tolist()
    return ci


def compute_classification_metrics(
    scores: np.ndarray,
    labels: np.ndarray,
    class_names: Sequence[str],
    *,
    cm_threshold: float = 0.5,
    thresholds: dict[str, float] | None = None,
    bootstrap: int = 0,
    seed: int = 0,
    patient_ids: Sequence | None = None,
    operating_point: str = "youden",
    target_sensitivity: float = 0.9,
) -> ClassificationResult:
    """Every metric of the module docstring on one set.

    Args:
        scores: (N, C) probabilities; labels: (N, C) 0/1.
        class_names: C names.
        cm_threshold: threshold of classes without an entry in ``thresholds``.
        thresholds: class name -> operating point (e.g. from a validation thresholds.json).
        bootstrap: resamples for 95% CIs (0 = none); seed: their seed.
        patient_ids: (N,) resampling unit; None = images.
        operating_point, target_sensitivity: rule of the thresholds chosen on this set.

    Returns:
        :class:`ClassificationResult`.
    """
    scores = np.asarray(scores, np.float64).reshape(len(scores), -1)
    labels = np.asarray(labels).astype(bool).reshape(scores.shape)
    C, N = len(class_names), len(scores)
    if scores.shape[1] != C:
        raise ValueError(f"{C} class names for scores with {scores.shape[1]} columns")
    thresholds = dict(thresholds or {})
    unknown = sorted(set(thresholds) - set(class_names))
    if unknown:
        raise ValueError(f"thresholds given for unknown classes {unknown}; classes: {class_names}")
    thr = np.array([thresholds.get(n, cm_threshold) for n in class_names], np.float64)
    ones = np.ones((1, N))
    per, micro = _per_class(scores, labels, thr, ones), _micro(scores, labels, ones)
    macro = _macro(per)
    counts = ("tp", "fp", "tn", "fn")
    out = {
        "per_class": {
            n: {**{k: (int(v[0, c]) if k in counts else float(v[0, c])) for k, v in per.items()},
                "threshold": float(thr[c]), "positives": int(labels[:, c].sum())}
            for c, n in enumerate(class_names)
        },
        "macro": {k: float(v[0]) for k, v in macro.items()},
        "micro": {k: float(v[0]) for k, v in micro.items()},
        "num_images": int(N),
        "ci95": {},
    }  # fmt: skip
    unit = "patient" if bootstrap > 0 and patient_ids is not None else "image"
    if bootstrap > 0:
        out["ci95"] = _bootstrap_ci(scores, labels, thr, class_names, bootstrap, seed, patient_ids)
    selected, meta = select_thresholds(scores, labels, class_names, operating_point,
                                       target_sensitivity, cm_threshold)  # fmt: skip
    out["settings"] = {
        "positive": "score >= threshold",
        "thresholds_source": "per-class thresholds" if thresholds else "cm_threshold",
        "cm_threshold": float(cm_threshold),
        "ap": "sum of recall steps x precision over distinct scores (no interpolation)",
        "macro": "mean over classes with positives and negatives",
        "micro": "all (image, class) pairs pooled",
        "bootstrap": int(bootstrap),
        "bootstrap_seed": int(seed),
        "bootstrap_unit": unit,
        "operating_point": operating_point,
        "target_sensitivity": float(target_sensitivity),
    }
    return ClassificationResult(out, selected, meta, scores, labels, thr)


def flat_classification_results(metrics: dict, class_names: Sequence[str]) -> dict[str, float]:
    """Float-only dict returned under ``"cls"``: ``auroc_macro``, ``auroc_micro``,
    ``ap_macro``, ``ap_micro``, ``<key>_macro`` and ``<key>-<class>`` (NaN when undefined)."""
    r = {f"{k}_macro": float(v) for k, v in metrics["macro"].items()}
    r.update({f"{k}_micro": float(v) for k, v in metrics["micro"].items()})
    for n in class_names:
        for k in SUMMARY_KEYS:
            r[f"{k}-{n}"] = float(metrics["per_class"][n][k])
    return r

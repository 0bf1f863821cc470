"""Per-class operating points (score thresholds): selection on a validation set, JSON I/O.

``thresholds.json`` format (written by :func:`save_thresholds`, read by :func:`load_thresholds`)::

    {
      "format": "cxr-thresholds/1",
      "thresholds": {"Atelectasis": 0.41, "Mass": 0.27, ...},   # class name -> score threshold
      "meta": {"rule": "youden", "dataset": "nih_bbox_val", ...} # free-form provenance
    }

A detection / image score >= its class threshold counts as positive.
"""

from __future__ import annotations

import json
import math
from typing import Sequence

import numpy as np

from ..fileio import write_json_atomic

__all__ = ["THRESHOLDS_FORMAT", "load_thresholds", "save_thresholds", "select_thresholds"]

THRESHOLDS_FORMAT = "cxr-thresholds/1"


def _select_one(scores: np.ndarray, labels: np.ndarray, rule: str, target: float) -> float | None:
    pos = int(labels.sum())
    neg = len(labels) - pos
    if pos == 0 or (rule == "youden" and neg == 0):
        return None
    cand = np.unique(scores)[::-1]  # descending candidate thresholds
    # positives / negatives with score >= each candidate
    s_pos = np.sort(scores[labels])
    s_neg = np.sort(scores[~labels])
    tp = pos - np.searchsorted(s_pos, cand, side="left")
    fp = neg - np.searchsorted(s_neg, cand, side="left")
    sens = tp / pos
    if rule == "youden":
        j = sens + (1 - fp / neg) - 1
        return float(cand[int(np.argmax(j))])  # argmax: first = highest threshold on ties
    ok = np.flatnonzero(sens >= target)
    return float(cand[ok[0]]) if len(ok) else float(cand[-1])


def select_thresholds(
    scores: np.ndarray,
    labels: np.ndarray,
    class_names: Sequence[str],
    rule: str = "youden",
    target_sensitivity: float = 0.9,
    default: float = 0.3,
) -> tuple[dict[str, float], dict]:
    """Choose one image-level score threshold per class.

    Rules (image score = max detection score of the class, positive = image has a box of it;
    candidates are the observed image scores, positive when score >= threshold):

    - ``"youden"``: maximise Youden's J = sensitivity + specificity - 1; ties go to the highest
      threshold (fewest positive calls).
    - ``"sensitivity"``: the highest threshold whose sensitivity >= ``target_sensitivity``.
    - A class without positive images (or, for Youden, without negative images) keeps
      ``default`` and is listed in ``meta["defaulted"]``.

    Args:
        scores: (N, C) image scores; labels: (N, C) bool.
        class_names: C names.
        rule: "youden" or "sensitivity".

    Returns:
        ``(thresholds, meta)``: class name -> threshold, and a dict describing the choice.
    """
    if rule not in ("youden", "sensitivity"):
        raise ValueError(f"operating point rule must be 'youden' or 'sensitivity', got {rule!r}")
    scores = np.asarray(scores, np.float64)
    labels = np.asarray(labels, bool)
    out, defaulted = {}, []
    for c, name in enumerate(class_names):
        t = _select_one(scores[:, c], labels[:, c], rule, target_sensitivity)
        if t is None:
            defaulted.append(name)
            t = float(default)
        out[name] = t
    meta = {
        "rule": rule,
        "default": float(default),
        "defaulted": defaulted,
        "num_images": int(scores.shape[0]),
    }
    if rule == "sensitivity":
        meta["target_sensitivity"] = float(target_sensitivity)
    return out, meta


def save_thresholds(path: str, thresholds: dict[str, float], meta: dict | None = None) -> None:
    """Write ``thresholds`` (class name -> score threshold) as ``thresholds.json`` atomically."""
    for k, v in thresholds.items():
        if not math.isfinite(float(v)):
            raise ValueError(f"{path}: threshold of class {k!r} is not finite: {v}")
    write_json_atomic(
        path,
        {
            "format": THRESHOLDS_FORMAT,
            "thresholds": {str(k): float(v) for k, v in thresholds.items()},
            "meta": meta or {},
        },
    )


def load_thresholds(path: str) -> dict[str, float]:
    """Read a ``thresholds.json`` (format above).

    Returns:
        class name -> threshold.

    Raises:
        ValueError naming the file and field when the content is not in that format.
    """
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not valid JSON: {e}") from None
    if not isinstance(data, dict) or not isinstance(data.get("thresholds"), dict):
        raise ValueError(f"{path}: field 'thresholds' (class name -> number) is missing")
    if data.get("format", THRESHOLDS_FORMAT) != THRESHOLDS_FORMAT:
        raise ValueError(
            f"{path}: field 'format' is {data.get('format')!r}, expected " f"{THRESHOLDS_FORMAT!r}"
        )
    out = {}
    for k, v in data["thresholds"].items():
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise ValueError(f"{path}: field thresholds.{k} must be a finite number, got {v!r}")
        out[str(k)] = float(v)
    return out

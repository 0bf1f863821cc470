"""Per-class operating points (score thresholds): the decision rule and ``thresholds.json``.

``thresholds.json`` format (written by :func:`save_thresholds`, read by :func:`load_thresholds`)::

    {
      "format": "cxr-thresholds/1",
      "thresholds": {"Atelectasis": 0.41, "Mass": 0.27, ...},   # class name -> score threshold
      "meta": {"rule": "youden", "dataset": "nih_bbox_val", ...} # free-form provenance
    }

A detection / image score >= its class threshold counts as positive. Choosing the thresholds on
a validation set is the evaluation's job (:mod:`cxr.evaluation.operating_points`).
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from .fileio import read_json, write_json_atomic

__all__ = [
    "THRESHOLDS_FORMAT",
    "class_thresholds",
    "load_thresholds",
    "positive_findings",
    "save_thresholds",
]

THRESHOLDS_FORMAT = "cxr-thresholds/1"


def positive_findings(scores, thresholds) -> np.ndarray:
    """The one image-level decision rule: positive when ``score >= threshold`` and ``score > 0``.

    An image without a detection of a class (score 0) is never positive for it, whatever the
    threshold; a score equal to the threshold is positive. Used by the evaluator's image-level
    metrics, ``tools/eval.py`` and ``tools/predict.py``.

    Args:
        scores: image (or box) scores, any shape.
        thresholds: thresholds broadcastable to ``scores``.

    Returns:
        bool array of ``scores``' shape.
    """
    s = np.asarray(scores, np.float64)
    return (s >= np.asarray(thresholds, np.float64)) & (s > 0)


def class_thresholds(
    class_names: Sequence[str], thresholds: dict[str, float] | None, default: float
) -> np.ndarray:
    """(C,) threshold per class: ``thresholds[name]`` when given, else ``default``."""
    return np.array([(thresholds or {}).get(n, default) for n in class_names], np.float64)


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
    data = read_json(path, "thresholds")
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

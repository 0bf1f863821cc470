"""Per-class operating points (score thresholds): their selection on a validation set.

The decision rule (:func:`positive_findings`) and the ``thresholds.json`` reader / writer live in
:mod:`cxr_runtime.operating_points` (the torch-free runtime applies them) and are re-exported
here. A detection / image score >= its class threshold counts as positive.
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
from cxr_runtime.operating_points import (
    THRESHOLDS_FORMAT,
    class_thresholds,
    load_thresholds,
    positive_findings,
    save_thresholds,
)

from ..registry import NamedRegistry

__all__ = [
    "OPERATING_POINT_REGISTRY",
    "THRESHOLDS_FORMAT",
    "class_thresholds",
    "load_thresholds",
    "positive_findings",
    "save_thresholds",
    "select_thresholds",
]

OPERATING_POINT_REGISTRY = NamedRegistry("CXR_OPERATING_POINT")
OPERATING_POINT_REGISTRY.__doc__ = """Operating-point rules by name (``CXR.EVAL.OPERATING_POINT``).

An entry is ``rule(sens, spec, target_sensitivity) -> index`` over candidate thresholds in
descending order (``sens``/``spec`` arrays of the same length); it returns the chosen index.
"""


@OPERATING_POINT_REGISTRY.register_as("youden")
def _youden(sens: np.ndarray, spec: np.ndarray, target: float) -> int:
    """Maximise Youden's J = sensitivity + specificity - 1; ties go to the highest threshold."""
    return int(np.argmax(sens + spec - 1))


@OPERATING_POINT_REGISTRY.register_as("sensitivity")
def _target_sensitivity(sens: np.ndarray, spec: np.ndarray, target: float) -> int:
    """The highest threshold whose sensitivity >= target (else the lowest candidate)."""
    ok = np.flatnonzero(sens >= target)
    return int(ok[0]) if len(ok) else len(sens) - 1


def _undefined_reason(scores: np.ndarray, labels: np.ndarray) -> str | None:
    """Why this class's scores cannot define an operating point (None when they can)."""
    if not labels.any():
        return "no positive images"
    if labels.all():
        return "no negative images"
    if not (scores[labels] > 0).any():
        return "no detections on positive images"
    return None


def _select_one(scores: np.ndarray, labels: np.ndarray, rule: Callable, target: float) -> float:
    # Candidates: the observed scores > 0, descending (0 = "no detection" is never a threshold).
    cand = np.unique(scores[scores > 0])[::-1]
    s_pos, s_neg = np.sort(scores[labels]), np.sort(scores[~labels])
    sens = (len(s_pos) - np.searchsorted(s_pos, cand, side="left")) / len(s_pos)
    spec = np.searchsorted(s_neg, cand, side="left") / len(s_neg)
    return float(cand[rule(sens, spec, target)])


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
    candidates are the observed image scores above 0, decided by :func:`positive_findings`),
    looked up by name in :data:`OPERATING_POINT_REGISTRY`:

    - ``"youden"``: maximise Youden's J = sensitivity + specificity - 1; ties go to the highest
      threshold (fewest positive calls).
    - ``"sensitivity"``: the highest threshold whose sensitivity >= ``target_sensitivity``.

    A class whose scores cannot define a point (no positive images, no negative images, or no
    detection on any positive image) keeps ``default`` (``CXR.EVAL.CM_THRESHOLD``); it is listed
    in ``meta["defaulted"]`` and ``meta["defaulted_reasons"]`` says why. A threshold is
    therefore never 0.

    Args:
        scores: (N, C) image scores; labels: (N, C) bool.
        class_names: C names.
        rule: a registered rule name.

    Returns:
        ``(thresholds, meta)``: class name -> threshold, and a dict describing the choice.
    """
    if rule not in OPERATING_POINT_REGISTRY:
        raise ValueError(
            f"operating point rule must be one of {OPERATING_POINT_REGISTRY.names()}, got {rule!r}"
        )
    choose = OPERATING_POINT_REGISTRY.get(rule)
    scores = np.asarray(scores, np.float64)
    labels = np.asarray(labels, bool)
    out, reasons = {}, {}
    for c, name in enumerate(class_names):
        reason = _undefined_reason(scores[:, c], labels[:, c])
        if reason is None:
            out[name] = _select_one(scores[:, c], labels[:, c], choose, target_sensitivity)
        else:
            reasons[name] = reason
            out[name] = float(default)
    meta = {
        "rule": rule,
        "default": float(default),
        "defaulted": list(reasons),
        "defaulted_reasons": reasons,
        "num_images": int(scores.shape[0]),
    }
    if rule == "sensitivity":
        meta["target_sensitivity"] = float(target_sensitivity)
    return out, meta

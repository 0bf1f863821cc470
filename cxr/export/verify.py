"""Check an exported model against the PyTorch model it came from, image by image.

Detections are matched per class, not by rank: two detections whose scores differ by less
than float rounding may swap places between backends, which is not a difference. The report
gives the worst box and score gaps over every matched pair and the detections left unmatched
(the acceptance rule: none unmatched, boxes within 0.5 px, scores within 1e-4).
"""
from __future__ import annotations

import dataclasses
import logging
from typing import Callable, Iterable

import numpy as np

from .runtime import Detections

__all__ = ["EquivalenceReport", "compare_detections", "compare_backends"]

logger = logging.getLogger(__name__)


@dataclasses.dataclass
class EquivalenceReport:
    """Worst case over the compared images.

    Attributes:
        images: images compared.
        detections: detections of the reference backend.
        unmatched: detections of either backend without a counterpart.
        max_box_diff: largest coordinate difference of a matched pair, pixels.
        max_score_diff: largest score difference of a matched pair.
        worst_image: the image with the largest box difference.
    """

    images: int = 0
    detections: int = 0
    unmatched: int = 0
    max_box_diff: float = 0.0
    max_score_diff: float = 0.0
    worst_image: str = ""

    def passes(self, box_tol: float = 0.5, score_tol: float = 1e-4) -> bool:
        """True when nothing is unmatched and both gaps are within the tolerances."""
        return (
            self.unmatched == 0
            and self.max_box_diff <= box_tol
            and self.max_score_diff <= score_tol
        )

    def update(self, name: str, ref: Detections, other: Detections, **tol) -> None:
        """Add one image's comparison (see :func:`compare_detections`)."""
        unmatched, box, score = compare_detections(ref, other, **tol)
        self.images += 1
        self.detections += len(ref)
        self.unmatched += unmatched
        if box > self.max_box_diff:
            self.max_box_diff, self.worst_image = box, name
        self.max_score_diff = max(self.max_score_diff, score)


def compare_detections(
    ref: Detections, other: Detections, *, box_tol: float = 0.5, score_tol: float = 1e-4
) -> tuple[int, float, float]:
    """Match ``other`` to ``ref`` greedily per class (highest reference score first, closest
    box among the unmatched ones whose score is within ``score_tol``).

    Args:
        ref, other: detections of one image (boxes XYXY_ABS pixels).
        box_tol: a pair matches only if every coordinate differs by at most this (pixels).
        score_tol: and its scores by at most this.

    Returns:
        (unmatched detections of both sides, max box difference, max score difference) over
        the matched pairs.
    """
    used = np.zeros(len(other), bool)
    worst_box = worst_score = 0.0
    matched = 0
    for i in np.argsort(-ref.scores, kind="stable"):
        cand = np.flatnonzero(
            ~used
            & (other.classes == ref.classes[i])
            & (np.abs(other.scores - ref.scores[i]) <= score_tol)
        )
        if not len(cand):
            continue
        gaps = np.abs(other.boxes[cand] - ref.boxes[i]).max(axis=1)
        j = int(np.argmin(gaps))
        if gaps[j] > box_tol:
            continue
        used[cand[j]] = True
        matched += 1
        worst_box = max(worst_box, float(gaps[j]))
        worst_score = max(worst_score, float(abs(other.scores[cand[j]] - ref.scores[i])))
    return len(ref) + len(other) - 2 * matched, worst_box, worst_score


def compare_backends(
    images: Iterable[tuple[str, np.ndarray]],
    reference: Callable[[np.ndarray], Detections],
    candidate: Callable[[np.ndarray], Detections],
    **tol,
) -> EquivalenceReport:
    """Run two detectors over ``(name, uint8 image)`` pairs and compare every image.

    Returns:
        the :class:`EquivalenceReport` over all images.
    """
    report = EquivalenceReport()
    for name, image in images:
        report.update(name, reference(image), candidate(image), **tol)
    return report

"""Matching two backends' detections: hand-made cases."""
import numpy as np

from cxr.export.runtime import Detections
from cxr.export.verify import EquivalenceReport, compare_detections


def _d(boxes, scores, classes):
    return Detections(np.array(boxes, np.float32).reshape(-1, 4), np.array(scores, np.float32),
                      np.array(classes, np.int64))  # fmt: skip


def test_near_tie_swapped_order_still_matches():
    a = _d([[0, 0, 10, 10], [50, 50, 60, 60]], [0.5, 0.5 - 1e-7], [1, 1])
    b = _d([[50, 50, 60.2, 60], [0, 0, 10, 10]], [0.5, 0.5 - 1e-7], [1, 1])
    unmatched, box, score = compare_detections(a, b)
    assert unmatched == 0 and abs(box - 0.2) < 1e-5 and score < 1e-6


def test_shift_class_score_and_missing_are_unmatched():
    a = _d([[0, 0, 10, 10], [20, 20, 30, 30], [40, 40, 50, 50]], [0.9, 0.8, 0.7], [0, 0, 0])
    b = _d([[0.6, 0, 10, 10], [20, 20, 30, 30]], [0.9, 0.8], [0, 1])
    unmatched, _, _ = compare_detections(a, b)
    assert unmatched == 5  # shifted 0.6 px, wrong class, missing: all three + two of b
    assert compare_detections(a, _d([[0, 0, 10, 10]], [0.9002], [0]))[0] == 4


def test_report_accumulates_and_judges():
    r = EquivalenceReport()
    a = _d([[0, 0, 10, 10]], [0.9], [0])
    r.update("x.png", a, _d([[0, 0, 10.3, 10]], [0.90005], [0]))
    assert r.passes() and r.images == 1 and r.worst_image == "x.png"
    r.update("y.png", a, _d([], [], []))
    assert not r.passes() and r.unmatched == 1

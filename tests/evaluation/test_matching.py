"""FROC matching: the flags of detections and of ground-truth boxes against a plain loop."""

import numpy as np
import pytest

from cxr.evaluation.metrics.matching import froc_matches
from cxr.evaluation.records import DetectionSet


def _random_set(rng, n_img=30, n_cls=3):
    gi, gc = rng.integers(0, n_img, 50), rng.integers(0, n_cls, 50)
    xy = rng.uniform(0, 200, (50, 2))
    gb = np.c_[xy, xy + rng.uniform(10, 60, (50, 2))]
    k = rng.choice(50, 70)  # jittered copies (some twice) plus random boxes
    db = np.r_[gb[k] + rng.normal(0, 6, (70, 4)), np.c_[xy[:25], xy[:25] + 30]]
    di = np.r_[gi[k], rng.integers(0, n_img, 25)]
    dc = np.r_[gc[k], rng.integers(0, n_cls, 25)]
    scores = np.round(rng.uniform(0, 1, 95), 2)  # ties in score
    return DetectionSet(n_img, n_cls, gi, gc, gb, di, dc, db, scores)


def _iou(a, b):
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    inter = max(w, 0) * max(h, 0)
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def _loop_reference(ds, thr):
    """The FROC rule written out: every detection by descending score (ties: input order)
    takes the unmatched same-class box of its image with the highest IoU (first on ties)."""
    dt_tp = np.zeros(len(ds.dt_scores), bool)
    gt_hit = np.zeros(len(ds.gt_image), bool)
    for d in sorted(range(len(ds.dt_scores)), key=lambda i: (-ds.dt_scores[i], i)):
        best, where = -1.0, -1
        for g in range(len(ds.gt_image)):
            same = ds.gt_image[g] == ds.dt_image[d] and ds.gt_class[g] == ds.dt_class[d]
            if same and not gt_hit[g]:
                v = _iou(ds.dt_boxes[d], ds.gt_boxes[g])
                if v > best:
                    best, where = v, g
        if where >= 0 and best >= thr:
            dt_tp[d], gt_hit[where] = True, True
    return dt_tp, gt_hit


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_detection_and_box_flags_equal_the_plain_loop(seed):
    ds = _random_set(np.random.default_rng(seed))
    m = froc_matches(ds, 0.4)
    dt_tp, gt_hit = _loop_reference(ds, 0.4)
    assert 10 < dt_tp.sum() < len(dt_tp) and 0 < gt_hit.sum() < len(gt_hit)
    assert np.array_equal(m.tp, dt_tp[m.dt_index])
    assert np.array_equal(m.gt_matched, gt_hit)
    assert sorted(m.dt_index.tolist()) == list(range(len(ds.dt_scores)))
    assert np.all(np.diff(m.scores) <= 0)


def test_hand_case_second_box_on_a_found_lesion_leaves_the_other_missed():
    # image 0: two lesions of class 0; three detections, two on the first lesion
    ds = DetectionSet(
        1, 1, [0, 0], [0, 0], [[0, 0, 10, 10], [50, 50, 60, 60]],
        [0, 0, 0], [0, 0, 0], [[0, 0, 10, 10], [1, 1, 10, 10], [30, 30, 35, 35]], [0.9, 0.8, 0.7],
    )  # fmt: skip
    m = froc_matches(ds, 0.4)
    assert m.tp.tolist() == [True, False, False] and m.dt_index.tolist() == [0, 1, 2]
    assert m.gt_matched.tolist() == [True, False]

"""COCO AP of cxr.evaluation.metrics against pycocotools itself (the reference)."""

import numpy as np
import pytest

from cxr.evaluation.metrics.ap import coco_ap

from .cocoref import pycoco_eval, random_coco, to_detection_set

STATS = ("AP", "AP50", "AP75", "APs", "APm", "APl")


@pytest.mark.parametrize("seed", range(24))
def test_coco_equals_pycocotools_random(seed):
    gt, dets = random_coco(seed, crowd=seed % 2 == 0, ties=seed % 3 != 0)
    ev = pycoco_eval(gt, dets)
    ours = coco_ap(to_detection_set(gt, dets))
    np.testing.assert_allclose(ours["precision"], ev.eval["precision"][..., -1], rtol=0, atol=1e-9)
    for i, k in enumerate(STATS):
        ref = ev.stats[i]
        if ref == -1:
            assert np.isnan(ours[k]), k
        else:
            assert abs(ours[k] - ref) <= 1e-9, (k, ours[k], ref)
    # per class as detectron2's COCOEvaluator derives it
    p = ev.eval["precision"]
    for k in range(len(gt["categories"])):
        v = p[:, :, k, 0, -1]
        v = v[v > -1]
        ref = np.mean(v) if v.size else np.nan
        np.testing.assert_allclose(ours["per_class_AP"][k], ref, atol=1e-9, equal_nan=True)


def test_coco_max_dets_truncation_and_zero_annotation_id():
    """More than 100 detections per image and class; a box with id 0 (never 'matched' in
    pycocotools) — both handled as pycocotools does."""
    for seed in range(3):
        gt, dets = random_coco(seed, n_images=3, n_classes=1, max_gt=6, max_dt=250)
        gt["annotations"][0]["id"] = 0
        ev = pycoco_eval(gt, dets)
        ours = coco_ap(to_detection_set(gt, dets))
        np.testing.assert_allclose(ours["precision"], ev.eval["precision"][..., -1], atol=1e-9)


def test_coco_no_detections_equals_pycocotools():
    gt, _ = random_coco(5)
    ev = pycoco_eval(gt, [])
    ours = coco_ap(to_detection_set(gt, []))
    assert ours["AP"] == ev.stats[0] == 0.0
    np.testing.assert_array_equal(ours["precision"], ev.eval["precision"][..., -1])

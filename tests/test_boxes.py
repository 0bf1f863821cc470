"""cxr.boxes, the one IoU: against torchvision's box_iou and pycocotools' bbIou."""

import numpy as np
import pytest
import torch
from pycocotools import mask as mask_utils
from torchvision.ops import box_iou as tv_box_iou

from cxr.boxes import box_intersection, coco_box_iou, pairwise_iou


def _boxes(rng, n):
    xy = rng.uniform(0, 100, (n, 2))
    return np.c_[xy, xy + rng.uniform(0.5, 60, (n, 2))]


@pytest.mark.parametrize("seed", [0, 1])
def test_pairwise_iou_equals_torchvision(seed):
    rng = np.random.default_rng(seed)
    a, b = _boxes(rng, 40), _boxes(rng, 30)
    b[:5] = a[:5]  # identical boxes: IoU 1
    ref = tv_box_iou(torch.from_numpy(a), torch.from_numpy(b)).numpy()
    got = pairwise_iou(a, b)
    assert got.shape == (40, 30) and (got > 0).sum() > 20 and (got == 0).sum() > 20
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-12)
    assert np.all(np.diag(got[:5, :5]) == 1.0)


def test_hand_case_and_degenerate_boxes():
    a = np.array([[0, 0, 10, 10]], float)
    b = np.array([[5, 5, 15, 15], [10, 0, 20, 10], [3, 3, 3, 3]], float)
    assert pairwise_iou(a, b).tolist() == [[25 / 175, 0.0, 0.0]]  # touching / empty: no overlap
    assert box_intersection(a, b).tolist() == [25.0, 0.0, 0.0]
    assert pairwise_iou(np.zeros((0, 4)), b).shape == (0, 3)


def test_coco_box_iou_equals_pycocotools_including_crowd():
    rng = np.random.default_rng(3)
    dt = _boxes(rng, 12)
    gt = _boxes(rng, 7)
    dt, gt = np.c_[dt[:, :2], dt[:, 2:] - dt[:, :2]], np.c_[gt[:, :2], gt[:, 2:] - gt[:, :2]]
    crowd = np.array([0, 1, 0, 0, 1, 0, 0], bool)
    ref = mask_utils.iou(dt.tolist(), gt.tolist(), crowd.astype(np.uint8).tolist())
    got = coco_box_iou(dt, np.broadcast_to(gt, (12, 7, 4)), np.broadcast_to(crowd, (12, 7)))
    assert np.array_equal(got, ref)

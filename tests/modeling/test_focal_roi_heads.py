"""FocalROIHeads' box predictor: hand-computed focal loss, sigmoid scores at inference."""
from __future__ import annotations

import math

import pytest
import torch

from cxr.modeling import FocalFastRCNNOutputLayers
from detectron2.layers import ShapeSpec
from detectron2.modeling.box_regression import Box2BoxTransform
from detectron2.structures import Boxes, Instances
from detectron2.utils.events import EventStorage


def _predictor(alpha):
    return FocalFastRCNNOutputLayers(
        ShapeSpec(channels=4), box2box_transform=Box2BoxTransform((10.0, 10.0, 5.0, 5.0)),
        num_classes=2, focal_alpha=alpha, focal_gamma=2.0, test_score_thresh=0.0,
    )  # fmt: skip


def _proposals():
    p = Instances((100, 100))
    p.proposal_boxes = Boxes(torch.tensor([[10.0, 10.0, 50.0, 50.0], [60.0, 60.0, 90.0, 90.0]]))
    p.gt_boxes = Boxes(p.proposal_boxes.tensor.clone())
    p.gt_classes = torch.tensor([0, 2])  # class 0, background (== num_classes)
    return [p]


def test_focal_roi_loss_hand_computed():
    # ROI 1 (class 0): logits [0, ln 3] -> p = [0.5, 0.75], targets [1, 0]
    # ROI 2 (background): logits [-ln 3, 0] -> p = [0.25, 0.5], targets [0, 0]
    # FL = a_t (1 - p_t)^2 (-ln p_t), a_t = alpha_c (target 1) or 1 - alpha_c (target 0)
    l3 = math.log(3.0)
    scores = torch.tensor([[0.0, l3], [-l3, 0.0]])
    deltas = torch.zeros(2, 8)  # proposals equal their GT: zero box loss
    alpha = [0.25, 0.75]
    expect = (
        0.25 * 0.5**2 * math.log(2)  # ROI1 c0: p_t 0.5
        + (1 - 0.75) * 0.75**2 * math.log(4)  # ROI1 c1: p_t 0.25
        + (1 - 0.25) * 0.25**2 * math.log(4 / 3)  # ROI2 c0: p_t 0.75
        + (1 - 0.75) * 0.5**2 * math.log(2)  # ROI2 c1: p_t 0.5
    ) / 2  # mean over the 2 sampled ROIs
    with EventStorage():  # detectron2 logs classification accuracy during training
        losses = _predictor(alpha).losses((scores, deltas), _proposals())
        scalar = _predictor(0.25).losses((scores, deltas), _proposals())["loss_cls"]
    assert losses["loss_cls"].item() == pytest.approx(expect, rel=1e-6)
    assert losses["loss_box_reg"].item() == pytest.approx(0.0, abs=1e-7)
    assert scalar.item() != pytest.approx(expect)


def test_inference_scores_are_sigmoids():
    pred = _predictor(0.25)
    assert pred.cls_score.out_features == 2  # no background column
    l3 = math.log(3.0)
    scores = torch.tensor([[0.0, l3], [-l3, 0.0]])
    deltas = torch.zeros(2, 8)
    props = _proposals()
    probs = pred.predict_probs((scores, deltas), props)[0]
    assert torch.allclose(probs[:, :2], torch.sigmoid(scores)) and not probs[:, 2].any()
    inst, _ = pred.inference((scores, deltas), props)
    got = sorted(inst[0].scores.tolist())
    assert got == pytest.approx(sorted([0.5, 0.75, 0.25, 0.5]))

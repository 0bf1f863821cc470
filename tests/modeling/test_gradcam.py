"""Grad-CAM: hand-set weights whose right answer is known (a classifier, and a RetinaNet whose
class logits answer brightness on one anchor level and darkness on the other); per-box maps of a
real RetinaNet."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from detectron2.layers import ShapeSpec
from detectron2.modeling import Backbone, build_model
from detectron2.modeling.anchor_generator import DefaultAnchorGenerator
from detectron2.modeling.box_regression import Box2BoxTransform
from detectron2.modeling.matcher import Matcher
from detectron2.modeling.meta_arch.retinanet import RetinaNetHead
from torch import nn
from torch.nn import functional as F

from cxr.config import load_config
from cxr.modeling.gradcam import classifier_cam, detection_box_cams, overlay
from cxr.modeling.meta_arch.classifier import CXRClassifier
from cxr.modeling.meta_arch.retinanet import CXRRetinaNet

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SQUARE = (slice(40, 52), slice(8, 20))  # rows, cols of the bright square


class _BrightnessTrunk(nn.Module):
    """Channel 0 = local mean brightness, channel 1 = its negative; stride 4."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 2, 3, padding=1, bias=False)
        with torch.no_grad():
            self.conv.weight[0] = 1 / 27
            self.conv.weight[1] = -1 / 27

    def forward(self, x):
        return {"res5": F.avg_pool2d(self.conv(x), 4)}


def _image():
    img = torch.zeros(3, 64, 64, dtype=torch.uint8)
    img[:, SQUARE[0], SQUARE[1]] = 255
    return {"image": img}


def _peaks_inside_the_square(cam: np.ndarray) -> None:
    assert cam.shape == (64, 64) and cam.max() == 1.0
    r, c = np.unravel_index(cam.argmax(), cam.shape)
    assert 40 <= r < 52 and 8 <= c < 20
    inside = np.zeros(cam.shape, bool)
    inside[SQUARE] = True
    assert cam[inside].mean() > 10 * cam[~inside].mean()


def test_classifier_cam_peaks_inside_the_bright_square():
    head = nn.Linear(2, 2)
    with torch.no_grad():
        head.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0]]))  # class 0: brightness
        head.bias.zero_()  # class 1: darkness
    model = CXRClassifier(trunk=_BrightnessTrunk(), head=head, num_classes=2,
                          pixel_mean=[0.0] * 3, pixel_std=[1.0] * 3)  # fmt: skip
    _peaks_inside_the_square(classifier_cam(model, _image(), 0))
    assert (classifier_cam(model, _image(), 1) == 0).all()  # only negative evidence: empty map
    # average pooling: the gradient is the same everywhere, so HiResCAM is the same map
    np.testing.assert_allclose(classifier_cam(model, _image(), 0, "hirescam"),
                               classifier_cam(model, _image(), 0), atol=1e-6)  # fmt: skip


def test_detector_box_cams_have_the_input_size_and_lie_in_0_1():
    cfg = load_config(
        os.path.join(REPO, "configs/phantom/retinanet_demo.yaml"),
        ["MODEL.DEVICE", "cpu", "MODEL.RETINANET.SCORE_THRESH_TEST", 0.0],
    )
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    inputs = {"image": torch.randint(0, 255, (3, 96, 128), dtype=torch.uint8), "height": 96,
              "width": 128}  # fmt: skip
    with torch.no_grad():
        inst = model([inputs])[0]["instances"][:3]
    cams = detection_box_cams(model, inputs, inst.pred_boxes.tensor.numpy(),
                              inst.pred_classes.numpy())  # fmt: skip
    assert len(cams) == 3
    for cam in cams:
        assert cam.shape == (96, 128) and 0 <= cam.min() and cam.max() <= 1
    assert overlay(inputs["image"][0].numpy(), cams[0]).shape == (96, 128, 3)


class _TwoLevelBrightness(Backbone):
    """p2 (stride 4) = [brightness, -brightness]; p3 (stride 8) = [-brightness, brightness]."""

    def __init__(self):
        super().__init__()
        self.trunk = _BrightnessTrunk()

    def forward(self, x):
        mean = self.trunk.conv(x)
        return {"p2": F.avg_pool2d(mean, 4), "p3": F.avg_pool2d(mean, 8).flip(1)}

    def output_shape(self):
        return {"p2": ShapeSpec(channels=2, stride=4), "p3": ShapeSpec(channels=2, stride=8)}


def _hand_set_retinanet() -> CXRRetinaNet:
    """A RetinaNet whose class k logit is 10 * (channel k of the level) / 255 - 5: on p2 class 0
    answers brightness and class 1 darkness, on p3 the other way round. The one tower conv is an
    identity shifted by 256 (ReLU stays open). Size-8 anchors on p2, size-32 anchors on p3; the
    box deltas are zero (each box is its anchor)."""
    head = RetinaNetHead(input_shape=[ShapeSpec(channels=2)] * 2, num_classes=2, num_anchors=1,
                         conv_dims=[2])  # fmt: skip
    with torch.no_grad():
        for p in head.parameters():
            p.zero_()
        tower = head.cls_subnet[0]
        tower.weight[0, 0, 1, 1] = tower.weight[1, 1, 1, 1] = 1.0
        tower.bias.fill_(256.0)
        head.cls_score.weight[0, 0, 1, 1] = head.cls_score.weight[1, 1, 1, 1] = 10 / 255
        head.cls_score.bias.fill_(-5.0 - 10 / 255 * 256)
    return CXRRetinaNet(
        backbone=_TwoLevelBrightness(), head=head, head_in_features=["p2", "p3"],
        anchor_generator=DefaultAnchorGenerator(sizes=[[8], [32]], aspect_ratios=[[1.0]],
                                                strides=[4, 8], offset=0.5),
        box2box_transform=Box2BoxTransform((1.0, 1.0, 1.0, 1.0)),
        anchor_matcher=Matcher([0.4, 0.5], [0, -1, 1]), num_classes=2, test_score_thresh=0.5,
        pixel_mean=[0.0] * 3, pixel_std=[1.0] * 3,
    ).eval()  # fmt: skip


@pytest.mark.parametrize("method", ["gradcam", "hirescam"])
def test_detector_box_cam_explains_the_anchor_level_and_class_of_each_box(method):
    model = _hand_set_retinanet()
    with torch.no_grad():
        inst = model([_image()])[0]["instances"]
    boxes, classes = inst.pred_boxes.tensor.numpy(), inst.pred_classes.numpy()
    top = {c: int(np.flatnonzero(classes == c)[inst.scores[classes == c].argmax()]) for c in (0, 1)}
    small, large = boxes[top[0]], boxes[top[1]]  # class 0 wins on p2, class 1 on p3
    assert small[2] - small[0] == 8 and small[3] - small[1] == 8
    assert large[3] - large[1] == 32
    for b in (small, large):  # both detections lie on the bright square
        assert 8 <= (b[0] + b[2]) / 2 < 20 and 40 <= (b[1] + b[3]) / 2 < 52
    cams = detection_box_cams(model, _image(), np.stack([small, small, large, large]),
                              np.array([0, 1, 1, 0]), method)  # fmt: skip
    _peaks_inside_the_square(cams[0])  # p2, class 0: brightness
    assert (cams[1] == 0).all()  # p2, class 1: only negative evidence, empty map
    _peaks_inside_the_square(cams[2])  # p3, class 1: brightness
    assert (cams[3] == 0).all()  # p3, class 0: only negative evidence (the level decides)


def test_hirescam_keeps_a_box_map_on_its_box_where_gradcam_lights_every_square():
    """A second bright square far from the box: Grad-CAM's channel weights light both squares
    (same features), HiResCAM's element-wise weights only the box's square."""
    model = _hand_set_retinanet()
    inputs = _image()
    inputs["image"][:, 8:20, 44:56] = 255  # the other square
    box = np.array([[10.0, 42.0, 18.0, 50.0]])  # a size-8 p2 anchor on the first square
    other = np.zeros((64, 64), bool)
    other[8:20, 44:56] = True
    grad, hires = (detection_box_cams(model, inputs, box, np.array([0]), m)[0]
                   for m in ("gradcam", "hirescam"))  # fmt: skip
    assert grad[other].mean() > 0.5  # as bright as the box's square
    assert hires[other].max() == 0 and hires[SQUARE].max() == 1.0

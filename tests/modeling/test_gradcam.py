"""Grad-CAM: hand-set weights whose right answer is known; per-box maps of a real RetinaNet."""

from __future__ import annotations

import os

import numpy as np
import torch
from detectron2.modeling import build_model
from torch import nn
from torch.nn import functional as F

from cxr.config import load_config
from cxr.modeling.gradcam import classifier_cam, detection_box_cams, overlay
from cxr.modeling.meta_arch.classifier import CXRClassifier

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


def test_classifier_cam_peaks_inside_the_bright_square():
    head = nn.Linear(2, 2)
    with torch.no_grad():
        head.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0]]))  # class 0: brightness
        head.bias.zero_()  # class 1: darkness
    model = CXRClassifier(trunk=_BrightnessTrunk(), head=head, num_classes=2,
                          pixel_mean=[0.0] * 3, pixel_std=[1.0] * 3)  # fmt: skip
    cam = classifier_cam(model, _image(), 0)
    assert cam.shape == (64, 64) and cam.max() == 1.0
    r, c = np.unravel_index(cam.argmax(), cam.shape)
    assert 40 <= r < 52 and 8 <= c < 20
    inside = np.zeros(cam.shape, bool)
    inside[SQUARE] = True
    assert cam[inside].mean() > 10 * cam[~inside].mean()
    assert (classifier_cam(model, _image(), 1) == 0).all()  # only negative evidence: empty map


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

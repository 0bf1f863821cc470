"""What the Grad-CAM images explain: a detector's top boxes at their operating points (its top
box when none reaches one), a classifier's top finding; hand-set models whose answers are known."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from cxr.engine.gradcam_hook import GradCAMRenderer, explained_model
from cxr.modeling.meta_arch.classifier import CXRClassifier

from ..modeling.test_gradcam import _BrightnessTrunk, _hand_set_retinanet, _image


def _renderer(thresholds, max_boxes=3, method="gradcam") -> GradCAMRenderer:
    return GradCAMRenderer(mapper=lambda r: {"image": r["image"]}, records=[_image()],
                           class_names=["bright", "dark"], thresholds=thresholds,
                           max_boxes=max_boxes, input_format="RGB", method=method)  # fmt: skip


def test_detector_images_explain_the_top_boxes_at_their_operating_points():
    model = _hand_set_retinanet()  # class 0 ("bright") scores 0.993 on the square (p2 anchors)
    (pic,) = _renderer([0.5, 1.01], max_boxes=2)(model)
    assert pic.index == 0 and pic.image.shape == (64, 64, 3) and pic.image.dtype == np.uint8
    assert [c.split()[0] for c in pic.caption.split("; ")] == ["bright", "bright"]  # not 1.01
    assert pic.caption.startswith("bright 0.99; ")
    (pic,) = _renderer([0.5, 1.01], max_boxes=1)(model)
    assert pic.caption == "bright 0.99"
    (pic,) = _renderer([1.01, 1.01])(model)
    assert pic.caption.endswith("0.99 (below its operating point)")  # none positive: the top box


def test_map_share_in_the_explained_box():
    """The 8-px box on the 12-px square: Grad-CAM's map covers the whole square (the box holds
    64 of its 144 pixels), HiResCAM's stays on the box's anchor cell."""
    model = _hand_set_retinanet()
    (grad,) = _renderer([0.5, 1.01], max_boxes=1)(model)
    (hires,) = _renderer([0.5, 1.01], max_boxes=1, method="hirescam")(model)
    assert 0.3 < grad.in_boxes < 0.6 and hires.in_boxes > 0.9


def test_classifier_image_explains_the_top_finding_and_other_models_are_refused():
    head = nn.Linear(2, 2)
    with torch.no_grad():
        head.weight.copy_(torch.eye(2))
        head.bias.copy_(torch.tensor([-50.0, 50.0]))  # "dark" on top whatever the image
    model = CXRClassifier(trunk=_BrightnessTrunk(), head=head, num_classes=2,
                          pixel_mean=[0.0] * 3, pixel_std=[1.0] * 3)  # fmt: skip
    (pic,) = _renderer([0.5, 0.5])(model)
    assert pic.caption.startswith("dark ") and pic.image.shape == (64, 64, 3)
    assert np.isnan(pic.in_boxes)
    assert explained_model(nn.Linear(2, 2)) is None

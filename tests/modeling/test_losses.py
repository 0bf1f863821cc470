"""Focal loss with per-class alpha, class-balanced "auto" alpha, CXRRetinaNet losses."""
from __future__ import annotations

import math
import os

import pytest
import torch
from torchvision.ops import sigmoid_focal_loss as tv_focal

from cxr.config import load_config
from cxr.modeling import class_balanced_alpha, resolve_focal_alpha, sigmoid_focal_loss
from detectron2.data import DatasetCatalog
from detectron2.modeling import build_model
from detectron2.utils.events import EventStorage

from .synthetic import SMALL_OPTS, synthetic_batch


def test_scalar_alpha_matches_torchvision():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(7, 3, generator=g)
    targets = (torch.rand(7, 3, generator=g) > 0.6).float()
    ours = sigmoid_focal_loss(logits, targets, 0.25, 2.0, "sum")
    assert torch.allclose(ours, tv_focal(logits, targets, 0.25, 2.0, "sum"))
    per_class = sigmoid_focal_loss(logits, targets, torch.tensor([0.25] * 3), 2.0, "none")
    assert torch.allclose(per_class, tv_focal(logits, targets, 0.25, 2.0, "none"))
    # per-class alpha: column c equals torchvision with the scalar alpha_c
    alphas = [0.1, 0.5, 0.9]
    per_class = sigmoid_focal_loss(logits, targets, torch.tensor(alphas), 2.0, "none")
    for c, a in enumerate(alphas):
        ref = tv_focal(logits[:, c], targets[:, c], a, 2.0, "none")
        assert torch.allclose(per_class[:, c], ref)
    # a negative alpha disables weighting, as in torchvision
    ours = sigmoid_focal_loss(logits, targets, -1, 1.5, "mean")
    assert torch.allclose(ours, tv_focal(logits, targets, -1, 1.5, "mean"))


def test_class_balanced_alpha_from_histogram():
    # w = [1/300, 1/100]; alpha = 0.25 * 2 * w / sum(w) = [0.125, 0.375] (mean 0.25)
    assert class_balanced_alpha([300, 100]) == pytest.approx([0.125, 0.375])
    # power 0.5: w = [1/sqrt(400), 1/sqrt(100)] = [0.05, 0.1] -> 0.5 * w / 0.15
    assert class_balanced_alpha([400, 100], power=0.5) == pytest.approx([1 / 6, 1 / 3])
    # an empty class counts as one box: w = [0.1, 1]; alpha = 0.5 * w / 1.1
    assert class_balanced_alpha([10, 0]) == pytest.approx([0.05 / 1.1, 0.5 / 1.1])
    # clipped to [0.01, 0.99]: raw values 0.25 * 10 * [1, 1e-3 ...] / 1.009 = [2.48, 0.0025, ...]
    assert class_balanced_alpha([1] + [1000] * 9) == pytest.approx([0.99] + [0.01] * 9)


def _register_histogram_dataset(name, counts):
    if name not in DatasetCatalog.list():
        annos = [{"bbox": [0, 0, 1, 1], "bbox_mode": 0, "category_id": c}
                 for c, n in enumerate(counts) for _ in range(n)]  # fmt: skip
        recs = [
            {"file_name": "x.png", "image_id": 0, "height": 8, "width": 8, "annotations": annos},
            {"file_name": "y.png", "image_id": 1, "height": 8, "width": 8, "annotations": []},
        ]
        DatasetCatalog.register(name, lambda: recs)


def test_auto_alpha_from_registered_training_set():
    _register_histogram_dataset("cxr_test_alpha_hist", [3, 1])
    assert resolve_focal_alpha("auto", 2, 0.25, ["cxr_test_alpha_hist"]) == pytest.approx(
        [0.125, 0.375]
    )
    assert resolve_focal_alpha(None, 2, 0.3) == 0.3
    assert resolve_focal_alpha([0.1, 0.2], 2, 0.3) == [0.1, 0.2]
    with pytest.raises(ValueError, match="2 values for 3 classes"):
        resolve_focal_alpha([0.1, 0.2], 3, 0.3)
    opts = ["MODEL.RETINANET.NUM_CLASSES", "2", "MODEL.RETINANET.FOCAL_ALPHA", "auto",
            "DATASETS.TRAIN", "('cxr_test_alpha_hist',)"]  # fmt: skip
    model = build_model(_retina_cfg("CXRRetinaNet", opts))
    assert model.focal_alpha.tolist() == pytest.approx([0.125, 0.375])


R18 = os.path.join(os.path.dirname(__file__), "../../configs/nih/retinanet_R_18_FPN.yaml")


def _retina_cfg(meta, extra=()):
    # a narrow FPN keeps these loss tests cheap
    opts = ["MODEL.META_ARCHITECTURE", meta, "MODEL.RETINANET.NUM_CLASSES", "3",
            "MODEL.FPN.OUT_CHANNELS", "32", *extra]  # fmt: skip
    return load_config(R18, SMALL_OPTS + opts)


def test_cxr_retinanet_equals_detectron2_with_uniform_alpha():
    """Uniform alpha: CXRRetinaNet's losses equal detectron2's RetinaNet on the same weights."""
    torch.manual_seed(0)
    ref = build_model(_retina_cfg("RetinaNet"))
    ours = build_model(_retina_cfg("CXRRetinaNet"))
    ours.load_state_dict(ref.state_dict())
    batch = synthetic_batch(3)
    with EventStorage():
        a, b = ref(batch), ours(batch)
    for k in a:
        assert torch.allclose(a[k], b[k], rtol=1e-5, atol=1e-7), k

    # Per-class alpha: the box loss is untouched, the classification loss changes.
    opts = ["MODEL.RETINANET.FOCAL_ALPHA", "[0.25, 0.25, 0.9]"]
    ours2 = build_model(_retina_cfg("CXRRetinaNet", opts))
    ours2.load_state_dict(ref.state_dict())
    with EventStorage():
        c = ours2(batch)
    assert torch.allclose(c["loss_box_reg"], a["loss_box_reg"])
    assert not torch.allclose(c["loss_cls"], a["loss_cls"])


def test_box_loss_types():
    for loss_type in ("giou", "diou", "ciou"):
        cfg = _retina_cfg("CXRRetinaNet", ["MODEL.RETINANET.BBOX_REG_LOSS_TYPE", loss_type])
        model = build_model(cfg)
        with EventStorage():
            losses = model(synthetic_batch(3))
        assert model.box_reg_loss_type == loss_type
        assert torch.isfinite(losses["loss_box_reg"]) and losses["loss_box_reg"] > 0
        losses["loss_box_reg"].backward()


def test_hand_computed_focal_value():
    # p = sigmoid(0) = 0.5, target 1, alpha 0.4, gamma 2: 0.4 * 0.5^2 * ln 2
    v = sigmoid_focal_loss(torch.zeros(1, 1), torch.ones(1, 1), 0.4, 2.0, "sum")
    assert v.item() == pytest.approx(0.4 * 0.25 * math.log(2))

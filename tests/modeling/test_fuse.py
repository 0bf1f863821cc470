"""fuse_for_inference() (BN folded into convs) and channels-last keep the detector's outputs."""
from __future__ import annotations

import copy
import os

import pytest
import torch
from torch import nn

from detectron2.modeling import build_model

from cxr.config import load_config

from .synthetic import synthetic_batch

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SMALL = ["MODEL.RETINANET.SCORE_THRESH_TEST", "0.0", "MODEL.BIFPN.NUM_LAYERS", "2",
         "MODEL.DEVICE", "cpu", "INPUT.MIN_SIZE_TEST", "96", "INPUT.MAX_SIZE_TEST", "96"]  # fmt: skip


def synthetic_inputs(n: int, size: int, num_classes: int) -> list[dict]:
    """``n`` random CHW images of ``size`` px (detectron2 inputs; boxes unused in eval)."""
    return synthetic_batch(num_classes, size)[:n]


def _model(config: str, opts=()) -> nn.Module:
    torch.manual_seed(0)
    cfg = load_config(os.path.join(REPO, "configs", config), [*SMALL, *opts])
    model = build_model(cfg).eval()
    g = torch.Generator().manual_seed(1)
    for m in model.modules():  # non-trivial BN statistics, so that folding has work to do
        if isinstance(m, nn.BatchNorm2d):
            c = m.num_features
            m.running_mean.copy_(torch.rand(c, generator=g) - 0.5)
            m.running_var.copy_(torch.rand(c, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(c, generator=g) + 0.5)
            m.bias.data.copy_(torch.rand(c, generator=g) * 0.2 - 0.1)
    return model


def _outputs(model, inputs):
    with torch.no_grad():
        images = model.preprocess_image(inputs)
        feats = model.backbone(images.tensor)
        logits, deltas = model.head([feats[f] for f in model.head_in_features])
        scores = model(inputs)[0]["instances"].scores
    return [feats[f] for f in model.head_in_features] + logits + deltas, scores


@pytest.mark.parametrize("config", ["nih/efficientdet_d0.yaml", "nih/efficientdet_lite0.yaml"])
def test_fused_model_gives_the_same_outputs(config):
    model = _model(config)
    inputs = synthetic_inputs(1, 96, 8)
    ref, ref_scores = _outputs(model, inputs)
    fused = copy.deepcopy(model).fuse_for_inference()
    assert not any(isinstance(m, nn.BatchNorm2d) for m in fused.modules())
    out, scores = _outputs(fused, inputs)
    for a, b in zip(ref, out):
        assert a.shape == b.shape
        torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-4 * float(a.abs().max()))
    torch.testing.assert_close(scores, ref_scores, rtol=1e-4, atol=1e-5)
    with pytest.raises(RuntimeError, match="fused for inference"):
        fused.train()
    fused.eval()  # eval stays allowed


def test_fuse_needs_eval_mode_and_channels_last_is_only_a_layout():
    model = _model("nih/efficientdet_d0.yaml").train()
    with pytest.raises(RuntimeError, match="eval"):
        model.fuse_for_inference()
    model.eval()
    plain = _model("nih/efficientdet_d0.yaml", ["MODEL.BIFPN.CHANNELS_LAST", "False"])
    inputs = synthetic_inputs(1, 96, 8)
    (a, _), (b, _) = _outputs(model, inputs), _outputs(plain, inputs)
    assert a[0].is_contiguous(memory_format=torch.channels_last) and b[0].is_contiguous()
    for x, y in zip(a, b):
        torch.testing.assert_close(x, y, rtol=1e-4, atol=1e-4 * float(y.abs().max()))

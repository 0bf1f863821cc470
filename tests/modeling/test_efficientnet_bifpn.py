"""EfficientNet + BiFPN backbone: shapes, presets, EfficientDet-D0 size, local trunk weights."""
from __future__ import annotations

import math

import pytest
import torch

from cxr.config import load_config
from cxr.modeling import BIFPN_PRESETS, EfficientNetBiFPN, bifpn_settings
from cxr.modeling.backbone.efficientnet_bifpn import _FusionNode
from detectron2.layers import ShapeSpec
from detectron2.modeling import build_backbone, build_model

EFFDET = ["MODEL.META_ARCHITECTURE", "CXRRetinaNet",
          "MODEL.BACKBONE.NAME", "build_efficientnet_bifpn_backbone",
          "MODEL.RETINANET.HEAD_NAME", "EfficientDetHead", "MODEL.DEVICE", "cpu"]  # fmt: skip


@pytest.mark.parametrize("preset", sorted(BIFPN_PRESETS))
def test_output_shape_matches_forward(preset):
    cfg = load_config(None, EFFDET + ["MODEL.BIFPN.PRESET", preset])
    backbone = build_backbone(cfg).eval()
    p = BIFPN_PRESETS[preset]
    assert len(backbone.bifpn) == p.layers
    assert backbone.size_divisibility == 128
    h, w = 72, 40  # not multiples of the strides: sizes are ceil(H / stride)
    with torch.no_grad():
        feats = backbone(torch.randn(1, 3, h, w))
    shapes = backbone.output_shape()
    assert list(feats) == list(shapes) == ["p3", "p4", "p5", "p6", "p7"]
    for name, t in feats.items():
        s = shapes[name]
        assert s.channels == p.channels and s.stride == 2 ** int(name[1:])
        assert tuple(t.shape) == (1, s.channels, math.ceil(h / s.stride), math.ceil(w / s.stride))


def test_lite_preset_uses_relu6_and_sum_fusion():
    cfg = load_config(None, EFFDET + ["MODEL.BIFPN.PRESET", "Lite0"])
    s = bifpn_settings(cfg)
    assert (s["trunk"], s["activation"], s["fusion"]) == ("efficientnet_lite0", "relu6", "sum")
    backbone = build_backbone(cfg)
    assert any(isinstance(m, torch.nn.ReLU6) for m in backbone.bifpn.modules())
    nodes = [m for m in backbone.bifpn.modules() if isinstance(m, _FusionNode)]
    assert len(nodes) == 8 * BIFPN_PRESETS["lite0"].layers  # 4 top-down + 4 bottom-up per layer
    assert all(node.weight is None for node in nodes)  # plain sum: no fusion weights
    # overrides win over the preset
    overrides = ["MODEL.BIFPN.OUT_CHANNELS", "32", "MODEL.BIFPN.NUM_LAYERS", "1"]
    cfg = load_config(None, EFFDET + overrides)
    assert build_backbone(cfg).output_shape()["p5"].channels == 32


def test_d0_parameter_count_matches_efficientdet_d0():
    """EfficientDet-D0 for 90 COCO classes has 3.9M parameters (Tan et al. 2020, Table 2)."""
    cfg = load_config(
        None, EFFDET + ["MODEL.RETINANET.NUM_CLASSES", "90", "MODEL.RETINANET.NUM_CONVS", "3"]
    )
    n = sum(p.numel() for p in build_model(cfg).parameters())
    assert abs(n - 3.9e6) / 3.9e6 < 0.10, n


def test_local_trunk_weights(tmp_path):
    src = EfficientNetBiFPN(trunk_name="efficientnet_lite0", channels=16, num_layers=1)
    path = str(tmp_path / "trunk.pth")
    torch.save({"state_dict": {f"module.{k}": v for k, v in src.trunk.state_dict().items()}}, path)
    dst = EfficientNetBiFPN(
        trunk_name="efficientnet_lite0", channels=16, num_layers=1, trunk_weights=path
    )
    for (k, a), b in zip(src.trunk.state_dict().items(), dst.trunk.state_dict().values()):
        assert torch.equal(a, b), k


def test_bad_preset_named():
    cfg = load_config(None, EFFDET + ["MODEL.BIFPN.PRESET", "D9"])
    with pytest.raises(ValueError, match="MODEL.BIFPN.PRESET='D9'"):
        build_backbone(cfg, ShapeSpec(channels=3))

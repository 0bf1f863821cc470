"""torchvision ResNet -> detectron2 ResNet: res2..res5 equal torchvision's layer1..layer4."""
from __future__ import annotations

import pytest
import torch
import torchvision

from cxr.checkpoint import TORCHVISION_MEAN, TORCHVISION_STD, convert_torchvision_resnet
from cxr.config import load_config
from detectron2.layers import ShapeSpec
from detectron2.modeling.backbone.resnet import build_resnet_backbone


def perturb_bn(model: torch.nn.Module, seed: int = 1) -> torch.nn.Module:
    """Random BN statistics and affine terms, so that every BN tensor's place matters."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.weight.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.bias.copy_(torch.randn(m.num_features, generator=g) * 0.1)
    return model.eval()


def d2_resnet(depth: int, in_channels: int, norm: str = "FrozenBN"):
    """detectron2's ResNet trunk (res2..res5) as torchvision lays it out (stride in the 3x3)."""
    cfg = load_config(None, [
        "MODEL.RESNETS.DEPTH", str(depth), "MODEL.RESNETS.NORM", norm,
        "MODEL.RESNETS.STRIDE_IN_1X1", "False", "MODEL.BACKBONE.FREEZE_AT", "0",
        "MODEL.RESNETS.RES2_OUT_CHANNELS", "256" if depth >= 50 else "64",
        "MODEL.RESNETS.OUT_FEATURES", "['res2', 'res3', 'res4', 'res5']"])  # fmt: skip
    return build_resnet_backbone(cfg, ShapeSpec(channels=in_channels)).eval()


def tv_features(model, x: torch.Tensor) -> list[torch.Tensor]:
    x = model.maxpool(model.relu(model.bn1(model.conv1(x))))
    out = []
    for layer in (model.layer1, model.layer2, model.layer3, model.layer4):
        x = layer(x)
        out.append(x)
    return out


def assert_features_equal(d2, tv, x_d2, x_tv) -> None:
    with torch.no_grad():
        ours, ref = d2(x_d2), tv_features(tv, x_tv)
    for k, (name, a) in enumerate(zip(["res2", "res3", "res4", "res5"], ref)):
        scale = max(1.0, float(a.abs().max()))
        assert float((ours[name] - a).abs().max()) <= 1e-4 * scale, name


@pytest.mark.parametrize("depth", [18, 50])
def test_res2_to_res5_equal_torchvision_layers(depth):
    torch.manual_seed(0)
    tv = perturb_bn(getattr(torchvision.models, f"resnet{depth}")(weights=None))
    state, report = convert_torchvision_resnet(tv.state_dict(), prefix="")
    assert [k for k in report.dropped if "num_batches" not in k] == ["fc.bias", "fc.weight"]
    d2 = d2_resnet(depth, 3)
    d2.load_state_dict(state)  # strict: every tensor placed
    image = torch.randint(0, 256, (1, 3, 96, 128), generator=torch.Generator().manual_seed(2))
    image = image.float()  # RGB 0-255, as the data loader gives with INPUT.FORMAT RGB
    mean, std = (torch.tensor(v).view(1, 3, 1, 1) for v in (TORCHVISION_MEAN, TORCHVISION_STD))
    x_tv = (image / 255 - torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)) / torch.tensor(
        [0.229, 0.224, 0.225]
    ).view(1, 3, 1, 1)
    assert_features_equal(d2, tv, (image - mean) / std, x_tv)

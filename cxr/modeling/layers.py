"""Small building blocks shared by the BiFPN and the EfficientDet head."""
from __future__ import annotations

from torch import nn

from detectron2.layers import get_norm

__all__ = ["ACTIVATIONS", "SeparableConv2d", "build_activation"]

# Activations by config name (MODEL.BIFPN.ACTIVATION).
ACTIVATIONS = {"silu": nn.SiLU, "swish": nn.SiLU, "relu6": nn.ReLU6, "relu": nn.ReLU}


def build_activation(name: str) -> nn.Module:
    """An in-place activation module from its config name ("silu", "relu6", "relu")."""
    try:
        return ACTIVATIONS[name.lower()](inplace=True)
    except KeyError:
        choices = sorted(ACTIVATIONS)
        raise ValueError(f"unknown activation {name!r}; choose from {choices}") from None


class SeparableConv2d(nn.Sequential):
    """Depthwise 3x3 conv, pointwise 1x1 conv, optional norm (symmetric padding, stride 1).

    With a norm, the pointwise conv has no bias and the norm directly follows it, so BN folds
    into the pointwise conv at eval time. Without a norm the pointwise conv has a bias (used for
    prediction layers).
    """

    def __init__(self, in_channels: int, out_channels: int, norm: str = "BN", kernel_size: int = 3):
        layers = [
            nn.Conv2d(
                in_channels, in_channels, kernel_size, padding=kernel_size // 2,
                groups=in_channels, bias=False,
            ),
            nn.Conv2d(in_channels, out_channels, 1, bias=not norm),
        ]  # fmt: skip
        if norm:
            layers.append(get_norm(norm, out_channels))
        super().__init__(*layers)

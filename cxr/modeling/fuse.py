"""Eval-time speed-up: every BatchNorm folded into the convolution that feeds it.

In eval mode BN is a fixed per-channel affine map, ``y = (x - mean) / sqrt(var + eps) * gamma +
beta``; after a convolution it folds into that convolution's weight and bias (torch's
``fuse_conv_bn_eval``), which saves one full pass over every activation map. Folding is one-way:
a folded model is for inference only (its state dict no longer has the BN entries).
"""
from __future__ import annotations

from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.utils.fusion import fuse_conv_bn_eval

__all__ = ["fold_bn", "fold_separable_conv", "fold_timm_efficientnet"]

# timm EfficientNet modules: (conv, following BatchNormAct2d) attribute pairs, in forward order.
_TIMM_PAIRS = {
    "EfficientNetFeatures": (("conv_stem", "bn1"),),
    "EfficientNet": (("conv_stem", "bn1"), ("conv_head", "bn2")),
    "DepthwiseSeparableConv": (("conv_dw", "bn1"), ("conv_pw", "bn2")),
    "InvertedResidual": (("conv_pw", "bn1"), ("conv_dw", "bn2"), ("conv_pwl", "bn3")),
    "EdgeResidual": (("conv_exp", "bn1"), ("conv_pwl", "bn2")),
}


class _AfterNorm(nn.Module):
    """What a timm BatchNormAct2d does after its normalization: dropout (no-op in eval), act."""

    def __init__(self, bn: nn.Module):
        super().__init__()
        self.drop = getattr(bn, "drop", nn.Identity())
        self.act = getattr(bn, "act", nn.Identity())

    def forward(self, x):
        return self.act(self.drop(x))


def fold_bn(conv: nn.Conv2d, bn: _BatchNorm) -> nn.Conv2d:
    """A copy of ``conv`` computing ``bn(conv(x))`` of the eval-mode BN (bias added if absent).

    Extra attributes of the conv (detectron2's ``Conv2d.norm``) are kept except ``norm``, which
    is set to None when present.
    """
    if not isinstance(bn, _BatchNorm) or bn.training or conv.training:
        raise ValueError(f"fold_bn needs a conv and a BatchNorm in eval mode, got {type(bn)}")
    fused = fuse_conv_bn_eval(conv, bn)
    if getattr(fused, "norm", None) is not None:
        fused.norm = None
    return fused


def fold_separable_conv(sep: nn.Sequential) -> None:
    """In place: a SeparableConv2d (depthwise, pointwise, BN) becomes (depthwise, pointwise)."""
    if len(sep) == 3 and isinstance(sep[2], _BatchNorm):
        sep[1] = fold_bn(sep[1], sep[2])
        del sep[2]


def fold_timm_efficientnet(model: nn.Module) -> int:
    """In place: fold every BN of a timm EfficientNet / EfficientNet-Lite into its conv.

    The BN modules are replaced by their trailing dropout + activation.

    Returns:
        number of BN layers folded.
    """
    n = 0
    for module in model.modules():
        for conv_name, bn_name in _TIMM_PAIRS.get(type(module).__name__, ()):
            conv, bn = getattr(module, conv_name, None), getattr(module, bn_name, None)
            if isinstance(conv, nn.Conv2d) and isinstance(bn, _BatchNorm):
                setattr(module, conv_name, fold_bn(conv, bn))
                setattr(module, bn_name, _AfterNorm(bn))
                n += 1
    return n

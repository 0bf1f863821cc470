"""EfficientNet (timm) trunk + BiFPN (ours): the EfficientDet backbone, yielding p3..p7.

The trunk is a timm EfficientNet / EfficientNet-Lite built with ``pretrained=False`` (nothing is
ever downloaded); ``MODEL.EFFICIENTNET.WEIGHTS`` may name a local weights file for it. Its stride
8/16/32 maps go through 1x1 conv + BN laterals to the BiFPN width; p6 = maxpool(lateral(c5)),
p7 = maxpool(p6); then ``NUM_LAYERS`` BiFPN layers (Tan et al., EfficientDet, 2020).

Speed-minded choices: symmetric PyTorch padding everywhere (no TF "same" padding ops); resampling
by nearest 2x upsampling and 3x3/2 max pooling (both give ceil(H/2) sizes, matching the trunk);
fusion weights are normalized once per node (a 2-3 element tensor) and applied as a weighted sum;
every separable conv is bias-free and directly followed by its BN, so BN folds at eval time
(:meth:`EfficientNetBiFPN.fuse_for_inference`); activations run in channels-last memory format
(``MODEL.BIFPN.CHANNELS_LAST``), where CPU depthwise convolutions are several times faster.
"""
from __future__ import annotations

import dataclasses
import logging

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from detectron2.layers import Conv2d, ShapeSpec, get_norm
from detectron2.modeling import BACKBONE_REGISTRY, Backbone

from ..fuse import fold_bn, fold_separable_conv, fold_timm_efficientnet
from ..layers import SeparableConv2d, build_activation

__all__ = [
    "BIFPN_PRESETS",
    "BiFPN",
    "BiFPNPreset",
    "EfficientNetBiFPN",
    "bifpn_settings",
    "build_efficientnet_bifpn_backbone",
]

logger = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class BiFPNPreset:
    """One EfficientDet scaling step (paper Table 1; Lite: the EfficientDet-Lite release)."""

    trunk: str
    channels: int
    layers: int
    head_convs: int
    image_size: int
    activation: str
    fusion: str


_FAST = "fast_normalized"
BIFPN_PRESETS = {
    "d0": BiFPNPreset("efficientnet_b0", 64, 3, 3, 512, "silu", _FAST),
    "d1": BiFPNPreset("efficientnet_b1", 88, 4, 3, 640, "silu", _FAST),
    "d2": BiFPNPreset("efficientnet_b2", 112, 5, 3, 768, "silu", _FAST),
    "d3": BiFPNPreset("efficientnet_b3", 160, 6, 4, 896, "silu", _FAST),
    "lite0": BiFPNPreset("efficientnet_lite0", 64, 3, 3, 320, "relu6", "sum"),
    "lite1": BiFPNPreset("efficientnet_lite1", 88, 4, 3, 384, "relu6", "sum"),
    "lite2": BiFPNPreset("efficientnet_lite2", 112, 5, 3, 448, "relu6", "sum"),
    "lite3": BiFPNPreset("efficientnet_lite3", 160, 6, 4, 512, "relu6", "sum"),
}


def bifpn_settings(cfg) -> dict:
    """Preset values of ``MODEL.BIFPN.PRESET`` with the non-empty overrides of the config.

    Returns:
        dict with keys trunk, channels, layers, head_convs, image_size, activation, fusion.
    """
    key = cfg.MODEL.BIFPN.PRESET.lower()
    if key not in BIFPN_PRESETS:
        raise ValueError(
            f"MODEL.BIFPN.PRESET={cfg.MODEL.BIFPN.PRESET!r}; choose from {sorted(BIFPN_PRESETS)}"
        )
    s = dataclasses.asdict(BIFPN_PRESETS[key])
    overrides = {
        "trunk": cfg.MODEL.EFFICIENTNET.NAME,
        "channels": cfg.MODEL.BIFPN.OUT_CHANNELS,
        "layers": cfg.MODEL.BIFPN.NUM_LAYERS,
        "activation": cfg.MODEL.BIFPN.ACTIVATION,
        "fusion": cfg.MODEL.BIFPN.FUSION,
    }
    s.update({k: v for k, v in overrides.items() if v})
    return s


class _FusionNode(nn.Module):
    """Fuse same-shaped maps (fast normalized or plain sum), then act -> separable conv -> BN."""

    def __init__(self, num_inputs: int, channels: int, norm: str, activation: str, fusion: str):
        super().__init__()
        if fusion not in (_FAST, "sum"):
            raise ValueError(f"MODEL.BIFPN.FUSION must be '{_FAST}' or 'sum', got {fusion!r}")
        self.weight = nn.Parameter(torch.ones(num_inputs)) if fusion == _FAST else None
        self.act = build_activation(activation)
        self.conv = SeparableConv2d(channels, channels, norm=norm)

    def forward(self, inputs: list[torch.Tensor]) -> torch.Tensor:
        if self.weight is None:
            x = inputs[0] + inputs[1]
            for t in inputs[2:]:
                x = x + t
        else:
            w = F.relu(self.weight)
            w = w / (w.sum() + 1e-4)
            x = inputs[0] * w[0]
            for i in range(1, len(inputs)):
                x = torch.add(x, inputs[i] * w[i])
        return self.conv(self.act(x))


def _up(x: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return F.interpolate(x, size=like.shape[-2:], mode="nearest")


def _down(x: torch.Tensor) -> torch.Tensor:
    return F.max_pool2d(x, kernel_size=3, stride=2, padding=1)


class BiFPN(nn.Module):
    """One BiFPN layer over L levels (finest first): top-down pass, then bottom-up pass.

    Top-down: ``td_i = node(p_i, up(td_{i+1}))`` with ``td_{L-1} = p_{L-1}``.
    Bottom-up: ``out_0 = td_0``; ``out_i = node(p_i, td_i, down(out_{i-1}))`` for middle levels
    and ``node(p_{L-1}, down(out_{L-2}))`` for the coarsest.
    """

    def __init__(self, channels: int, num_levels: int, norm: str, activation: str, fusion: str):
        super().__init__()
        self.num_levels = num_levels
        self.td_nodes = nn.ModuleList(
            _FusionNode(2, channels, norm, activation, fusion) for _ in range(num_levels - 1)
        )
        self.bu_nodes = nn.ModuleList(
            _FusionNode(2 if i == num_levels - 1 else 3, channels, norm, activation, fusion)
            for i in range(1, num_levels)
        )

    def forward(self, feats: list[torch.Tensor]) -> list[torch.Tensor]:
        n = self.num_levels
        td = [None] * n
        td[-1] = feats[-1]
        for i in range(n - 2, -1, -1):
            td[i] = self.td_nodes[i]([feats[i], _up(td[i + 1], feats[i])])
        out = [td[0]]
        for i in range(1, n):
            inputs = [feats[i], _down(out[-1])] if i == n - 1 else [feats[i], td[i], _down(out[-1])]
            out.append(self.bu_nodes[i - 1](inputs))
        return out


class EfficientNetBiFPN(Backbone):
    """timm EfficientNet trunk (strides 8/16/32) + BiFPN; outputs ``p3``..``p7``.

    Output ``p{k}`` has stride ``2**k`` and ``channels`` channels; an input of size HxW gives
    ``p{k}`` of size ``ceil(H / 2**k) x ceil(W / 2**k)``. ``size_divisibility`` (default 128, the
    p7 stride) is what detectron2 pads batches to.
    """

    def __init__(
        self,
        *,
        trunk_name: str,
        channels: int,
        num_layers: int,
        norm: str = "BN",
        activation: str = "silu",
        fusion: str = _FAST,
        trunk_weights: str = "",
        drop_path_rate: float = 0.0,
        freeze_at: int = 0,
        size_divisibility: int = 128,
        channels_last: bool = True,
    ):
        """
        Args:
            trunk_name: timm model name (e.g. "efficientnet_b0", "efficientnet_lite0").
            channels: BiFPN width.
            num_layers: number of BiFPN layers.
            norm: detectron2 norm name for laterals and separable convs ("BN", "SyncBN", "GN").
            activation: "silu" or "relu6".
            fusion: "fast_normalized" or "sum".
            trunk_weights: optional local file with trunk weights ("" = random init).
            drop_path_rate: stochastic depth rate in the trunk.
            freeze_at: 0 trains everything; n > 0 freezes the stem and the first n - 1 stages.
            size_divisibility: batches are padded to a multiple of this (128 = p7 stride).
            channels_last: run on channels-last (NHWC) tensors and weights; outputs are
                channels-last too (same values and shapes).
        """
        super().__init__()
        import timm

        self._size_divisibility = size_divisibility
        self.trunk = timm.create_model(
            trunk_name, pretrained=False, features_only=True, out_indices=(2, 3, 4),
            drop_path_rate=drop_path_rate,
        )  # fmt: skip
        if trunk_weights:
            self._load_trunk_weights(trunk_weights)
        self._freeze(freeze_at)
        in_channels = self.trunk.feature_info.channels()
        self.laterals = nn.ModuleList(
            Conv2d(c, channels, 1, bias=not norm, norm=get_norm(norm, channels))
            for c in in_channels + in_channels[-1:]  # p3, p4, p5, and p6 (from c5)
        )
        self.bifpn = nn.Sequential(
            *[BiFPN(channels, 5, norm, activation, fusion) for _ in range(num_layers)]
        )
        self._out_features = [f"p{k}" for k in range(3, 8)]
        self._out_feature_strides = {f"p{k}": 2**k for k in range(3, 8)}
        self._out_feature_channels = {f"p{k}": channels for k in range(3, 8)}
        self._channels_last = channels_last
        if channels_last:
            self.to(memory_format=torch.channels_last)

    def _load_trunk_weights(self, path: str) -> None:
        state = torch.load(path, map_location="cpu", weights_only=True)
        for key in ("model", "state_dict"):
            if isinstance(state, dict) and isinstance(state.get(key), dict):
                state = state[key]
        state = {k.removeprefix("module."): v for k, v in state.items()}
        result = self.trunk.load_state_dict(state, strict=False)
        logger.info(
            "Loaded trunk weights from %s (missing %d keys, unexpected %d: %s)", path,
            len(result.missing_keys), len(result.unexpected_keys), result.unexpected_keys[:5],
        )  # fmt: skip

    def _freeze(self, freeze_at: int) -> None:
        if freeze_at <= 0:
            return
        frozen = [self.trunk.conv_stem, self.trunk.bn1, *self.trunk.blocks[: freeze_at - 1]]
        for m in frozen:
            for p in m.parameters():
                p.requires_grad_(False)

    def fuse_for_inference(self) -> "EfficientNetBiFPN":
        """Fold every BatchNorm (trunk, laterals, BiFPN) into its conv; eval mode only.

        One-way: the module is then for inference only (its state dict loses the BN entries).
        Outputs equal the unfused eval outputs up to float rounding.
        """
        if self.training:
            raise RuntimeError("call .eval() before fuse_for_inference()")
        fold_timm_efficientnet(self.trunk)
        for i, lateral in enumerate(self.laterals):
            if isinstance(lateral.norm, _BatchNorm):
                self.laterals[i] = fold_bn(lateral, lateral.norm)
        for m in self.bifpn.modules():
            if isinstance(m, SeparableConv2d):
                fold_separable_conv(m)
        if self._channels_last:
            self.to(memory_format=torch.channels_last)
        return self

    @property
    def size_divisibility(self) -> int:
        return self._size_divisibility

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """
        Args:
            x: (N, 3, H, W) normalized images.

        Returns:
            dict p3..p7 -> (N, channels, ceil(H / stride), ceil(W / stride)).
        """
        if self._channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        c3, c4, c5 = self.trunk(x)
        feats = [lat(c) for lat, c in zip(self.laterals, (c3, c4, c5, c5))]
        feats[3] = _down(feats[3])
        feats.append(_down(feats[3]))
        for layer in self.bifpn:
            feats = layer(feats)
        return dict(zip(self._out_features, feats))

    def output_shape(self) -> dict[str, ShapeSpec]:
        return {
            f: ShapeSpec(
                channels=self._out_feature_channels[f], stride=self._out_feature_strides[f]
            )
            for f in self._out_features
        }


@BACKBONE_REGISTRY.register()
def build_efficientnet_bifpn_backbone(cfg, input_shape: ShapeSpec) -> EfficientNetBiFPN:
    """EfficientDet backbone from ``MODEL.BIFPN`` / ``MODEL.EFFICIENTNET`` (see config.py)."""
    if input_shape.channels != 3:
        raise ValueError(f"EfficientNet trunk expects 3 input channels, got {input_shape.channels}")
    s = bifpn_settings(cfg)
    return EfficientNetBiFPN(
        trunk_name=s["trunk"],
        channels=s["channels"],
        num_layers=s["layers"],
        norm=cfg.MODEL.BIFPN.NORM,
        activation=s["activation"],
        fusion=s["fusion"],
        trunk_weights=cfg.MODEL.EFFICIENTNET.WEIGHTS,
        drop_path_rate=cfg.MODEL.EFFICIENTNET.DROP_PATH_RATE,
        freeze_at=cfg.MODEL.EFFICIENTNET.FREEZE_AT,
        size_divisibility=cfg.MODEL.BIFPN.SIZE_DIVISIBILITY,
        channels_last=cfg.MODEL.BIFPN.CHANNELS_LAST,
    )

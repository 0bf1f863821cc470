"""BiFPN (ours) over any timm trunk: the EfficientDet backbone, yielding p3..p7.

The trunk is any timm ``features_only`` model (:mod:`.timm_trunk`): EfficientNet / -Lite for
EfficientDet (the preset's), or DenseNet-121, ResNet-50, ConvNeXt-T, EfficientNetV2, ... by
``MODEL.TIMM.NAME``. Its stride 8/16/32 maps go through 1x1 conv + BN laterals to the BiFPN
width; p6 = maxpool(lateral(c5)), p7 = maxpool(p6); then ``NUM_LAYERS`` BiFPN layers (Tan et al.,
EfficientDet, 2020), with EfficientDet's graph (the first layer's bottom-up nodes take their own
laterals), so that ``effdet``'s EfficientDets convert exactly (:mod:`cxr.checkpoint`).

Speed-minded choices: resampling by nearest 2x upsampling and 3x3/2 max pooling (both give
ceil(H/2) sizes, matching the trunk); symmetric padding unless ``MODEL.BIFPN.PADDING: same``
(TensorFlow's, which TF-ported weights need, only for the max pooling: stride-1 convs pad alike);
fusion weights are normalized once per node (a 2-3 element tensor) and applied as a weighted sum;
every separable conv is bias-free and directly followed by its BN, so BN folds at eval time
(:meth:`BiFPNBackbone.fuse_for_inference`); activations run in channels-last memory format
(``MODEL.BIFPN.CHANNELS_LAST``), where CPU depthwise convolutions are several times faster.
"""
from __future__ import annotations

import dataclasses
import logging
import math

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from detectron2.layers import Conv2d, ShapeSpec, get_norm
from detectron2.modeling import BACKBONE_REGISTRY, Backbone

from ..fuse import fold_bn, fold_separable_conv, fold_timm_efficientnet
from ..layers import SeparableConv2d, build_activation
from .timm_trunk import create_timm_trunk, freeze_trunk, timm_trunk_settings

__all__ = [
    "BIFPN_PRESETS",
    "BiFPN",
    "BiFPNBackbone",
    "BiFPNPreset",
    "EfficientNetBiFPN",
    "bifpn_settings",
    "build_efficientnet_bifpn_backbone",
    "build_timm_bifpn_backbone",
]

logger = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class BiFPNPreset:
    """One EfficientDet scaling step (paper Table 1; Lite: the EfficientDet-Lite release).

    ``tf_*`` presets are the TensorFlow-ported ones of ``effdet`` (``tf_efficientdet_*``): timm's
    ``tf_efficientnet_*`` trunk and TF "same" padding, as their weights need.
    """

    trunk: str
    channels: int
    layers: int
    activation: str
    fusion: str
    padding: str = ""


_FAST = "fast_normalized"


def _presets() -> dict[str, BiFPNPreset]:
    presets = {}
    for b, (channels, layers) in enumerate([(64, 3), (88, 4), (112, 5), (160, 6)]):
        for tf, padding in (("", ""), ("tf_", "same")):
            presets[f"{tf}d{b}"] = BiFPNPreset(
                f"{tf}efficientnet_b{b}", channels, layers, "silu", _FAST, padding
            )
            presets[f"{tf}lite{b}"] = BiFPNPreset(
                f"{tf}efficientnet_lite{b}", channels, layers, "relu6", "sum", padding
            )
    return presets


# D0-D3 / Lite0-Lite3, and their tf_ (TensorFlow-ported, "same" padding) twins.
BIFPN_PRESETS = _presets()


def bifpn_settings(cfg) -> dict:
    """Preset values of ``MODEL.BIFPN.PRESET`` with the non-empty overrides of the config.

    The trunk is ``MODEL.TIMM.NAME`` (any timm model), else ``MODEL.EFFICIENTNET.NAME``, else the
    preset's.

    Returns:
        dict with keys trunk, channels, layers, activation, fusion, padding.
    """
    key = cfg.MODEL.BIFPN.PRESET.lower()
    if key not in BIFPN_PRESETS:
        raise ValueError(
            f"MODEL.BIFPN.PRESET={cfg.MODEL.BIFPN.PRESET!r}; choose from {sorted(BIFPN_PRESETS)}"
        )
    s = dataclasses.asdict(BIFPN_PRESETS[key])
    overrides = {
        "trunk": cfg.MODEL.TIMM.NAME or cfg.MODEL.EFFICIENTNET.NAME,
        "channels": cfg.MODEL.BIFPN.OUT_CHANNELS,
        "layers": cfg.MODEL.BIFPN.NUM_LAYERS,
        "activation": cfg.MODEL.BIFPN.ACTIVATION,
        "fusion": cfg.MODEL.BIFPN.FUSION,
        "padding": cfg.MODEL.BIFPN.PADDING,
    }
    s.update({k: v for k, v in overrides.items() if v})
    if s["padding"] not in ("", "same"):
        raise ValueError(f"MODEL.BIFPN.PADDING must be '' or 'same', got {s['padding']!r}")
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


def _down(x: torch.Tensor, padding: str = "") -> torch.Tensor:
    """3x3 / 2 max pooling to ceil(H / 2) x ceil(W / 2).

    ``padding=""``: one pixel on every side; ``"same"``: TensorFlow's, i.e. the padding an
    even side needs goes to the bottom/right only (values padded with -inf in both cases).
    """
    if padding != "same":
        return F.max_pool2d(x, kernel_size=3, stride=2, padding=1)
    ph, pw = (max((math.ceil(n / 2) - 1) * 2 + 3 - n, 0) for n in x.shape[-2:])
    x = F.pad(x, (pw // 2, pw - pw // 2, ph // 2, ph - ph // 2), value=float("-inf"))
    return F.max_pool2d(x, kernel_size=3, stride=2)


class BiFPN(nn.Module):
    """One BiFPN layer over L levels (finest first): top-down pass, then bottom-up pass.

    Top-down: ``td_i = node(p_i, up(td_{i+1}))`` with ``td_{L-1} = p_{L-1}``.
    Bottom-up: ``out_0 = td_0``; ``out_i = node(q_i, td_i, down(out_{i-1}))`` for middle levels
    and ``node(q_{L-1}, down(out_{L-2}))`` for the coarsest, where ``q_i`` is ``p_i`` unless the
    caller passes a separate bottom-up input for level i (EfficientDet's first layer does).
    """

    def __init__(
        self,
        channels: int,
        num_levels: int,
        norm: str,
        activation: str,
        fusion: str,
        padding: str = "",
    ):
        super().__init__()
        self.num_levels = num_levels
        self.padding = padding
        self.td_nodes = nn.ModuleList(
            _FusionNode(2, channels, norm, activation, fusion) for _ in range(num_levels - 1)
        )
        self.bu_nodes = nn.ModuleList(
            _FusionNode(2 if i == num_levels - 1 else 3, channels, norm, activation, fusion)
            for i in range(1, num_levels)
        )

    def forward(
        self, feats: list[torch.Tensor], bottom_up_inputs: dict[int, torch.Tensor] | None = None
    ) -> list[torch.Tensor]:
        n = self.num_levels
        q = bottom_up_inputs or {}
        td = [None] * n
        td[-1] = feats[-1]
        for i in range(n - 2, -1, -1):
            td[i] = self.td_nodes[i]([feats[i], _up(td[i + 1], feats[i])])
        out = [td[0]]
        for i in range(1, n):
            down = _down(out[-1], self.padding)
            p = q.get(i, feats[i])
            out.append(self.bu_nodes[i - 1]([p, down] if i == n - 1 else [p, td[i], down]))
        return out


class BiFPNBackbone(Backbone):
    """Any timm trunk (its stride 8/16/32 maps) + BiFPN; outputs ``p3``..``p7``.

    The trunk's c3, c4, c5 go through 1x1 conv + BN laterals to the BiFPN width; p6 =
    down(lateral(c5)), p7 = down(p6). With ``separate_laterals`` (EfficientDet's graph) the first
    layer's bottom-up nodes at p4 / p5 take their own lateral of c4 / c5.

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
        padding: str = "",
        separate_laterals: bool = True,
        in_chans: int = 3,
        trunk_weights: str = "",
        pretrained: bool = False,
        out_indices: tuple[int, ...] = (),
        drop_path_rate: float = 0.0,
        freeze_at: int = 0,
        size_divisibility: int = 128,
        channels_last: bool = True,
    ):
        """
        Args:
            trunk_name: timm model name (e.g. "efficientnet_b0", "tf_efficientnet_lite0",
                "densenet121", "resnet50", "convnext_tiny").
            channels: BiFPN width.
            num_layers: number of BiFPN layers.
            norm: detectron2 norm name for laterals and separable convs ("BN", "SyncBN", "GN").
            activation: "silu" or "relu6".
            fusion: "fast_normalized" or "sum".
            padding: "" (symmetric) or "same" (TensorFlow's, for the max-pool downsampling;
                every stride-1 conv pads symmetrically either way).
            separate_laterals: first-layer bottom-up laterals of their own (see class doc).
            in_chans: input channels (1 for ``INPUT.FORMAT: L``).
            trunk_weights: optional local trunk weights file ("" = random init or pretrained).
            pretrained: let timm fetch the trunk's weights (see :func:`create_timm_trunk`).
            out_indices: timm feature indices of the stride 8/16/32 maps (empty: last three).
            drop_path_rate: stochastic depth rate in the trunk.
            freeze_at: 0 trains everything; n > 0 freezes the stem and the first n - 1 stages.
            size_divisibility: batches are padded to a multiple of this (128 = p7 stride).
            channels_last: run on channels-last (NHWC) tensors and weights; outputs are
                channels-last too (same values and shapes).
        """
        super().__init__()
        self._size_divisibility = size_divisibility
        self.trunk = create_timm_trunk(
            trunk_name, out_indices=out_indices, in_chans=in_chans, pretrained=pretrained,
            weights=trunk_weights, drop_path_rate=drop_path_rate,
        )  # fmt: skip
        freeze_trunk(self.trunk, freeze_at)
        in_channels = self.trunk.feature_info.channels()

        def lateral(c: int) -> Conv2d:
            return Conv2d(c, channels, 1, bias=not norm, norm=get_norm(norm, channels))

        # p3, p4, p5, and p6 (from c5)
        self.laterals = nn.ModuleList(lateral(c) for c in in_channels + in_channels[-1:])
        # first-layer bottom-up inputs at p4, p5 (EfficientDet); empty when shared
        self.bottom_up_laterals = nn.ModuleList(
            lateral(c) for c in (in_channels[1:] if separate_laterals else [])
        )
        self.padding = padding
        self.bifpn = nn.Sequential(
            *[BiFPN(channels, 5, norm, activation, fusion, padding) for _ in range(num_layers)]
        )
        self._out_features = [f"p{k}" for k in range(3, 8)]
        self._out_feature_strides = {f"p{k}": 2**k for k in range(3, 8)}
        self._out_feature_channels = {f"p{k}": channels for k in range(3, 8)}
        self._channels_last = channels_last
        if channels_last:
            self.to(memory_format=torch.channels_last)

    def fuse_for_inference(self) -> "BiFPNBackbone":
        """Fold every BatchNorm (EfficientNet trunk, laterals, BiFPN) into its conv; eval only.

        One-way: the module is then for inference only (its state dict loses the BN entries).
        Outputs equal the unfused eval outputs up to float rounding.
        """
        if self.training:
            raise RuntimeError("call .eval() before fuse_for_inference()")
        fold_timm_efficientnet(self.trunk)
        for laterals in (self.laterals, self.bottom_up_laterals):
            for i, lateral in enumerate(laterals):
                if isinstance(lateral.norm, _BatchNorm):
                    laterals[i] = fold_bn(lateral, lateral.norm)
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
            x: (N, in_chans, H, W) normalized images.

        Returns:
            dict p3..p7 -> (N, channels, ceil(H / stride), ceil(W / stride)).
        """
        if self._channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        c3, c4, c5 = self.trunk(x)
        feats = [lat(c) for lat, c in zip(self.laterals, (c3, c4, c5, c5))]
        feats[3] = _down(feats[3], self.padding)
        feats.append(_down(feats[3], self.padding))
        bottom_up = {i: lat(c) for i, lat, c in zip((1, 2), self.bottom_up_laterals, (c4, c5))}
        for layer in self.bifpn:
            feats = layer(feats, bottom_up)
            bottom_up = None
        return dict(zip(self._out_features, feats))

    def output_shape(self) -> dict[str, ShapeSpec]:
        return {
            f: ShapeSpec(
                channels=self._out_feature_channels[f], stride=self._out_feature_strides[f]
            )
            for f in self._out_features
        }


# The name of the EfficientNet-only backbone this generalizes.
EfficientNetBiFPN = BiFPNBackbone


@BACKBONE_REGISTRY.register()
def build_timm_bifpn_backbone(cfg, input_shape: ShapeSpec) -> BiFPNBackbone:
    """BiFPN (``MODEL.BIFPN``) over any timm trunk (``MODEL.TIMM``; the ``MODEL.EFFICIENTNET``
    keys fill what it leaves empty; trunk name default: the preset's EfficientNet).
    """
    s = bifpn_settings(cfg)
    t = timm_trunk_settings(cfg, default_name=s["trunk"])
    return BiFPNBackbone(
        trunk_name=t["name"],
        channels=s["channels"],
        num_layers=s["layers"],
        norm=cfg.MODEL.BIFPN.NORM,
        activation=s["activation"],
        fusion=s["fusion"],
        padding=s["padding"],
        separate_laterals=cfg.MODEL.BIFPN.SEPARATE_LATERALS,
        in_chans=input_shape.channels,
        trunk_weights=t["weights"],
        pretrained=t["pretrained"],
        out_indices=t["out_indices"],
        drop_path_rate=t["drop_path_rate"],
        freeze_at=t["freeze_at"],
        size_divisibility=cfg.MODEL.BIFPN.SIZE_DIVISIBILITY,
        channels_last=cfg.MODEL.BIFPN.CHANNELS_LAST,
    )


@BACKBONE_REGISTRY.register()
def build_efficientnet_bifpn_backbone(cfg, input_shape: ShapeSpec) -> BiFPNBackbone:
    """The EfficientDet backbone: :func:`build_timm_bifpn_backbone` (kept name for configs)."""
    return build_timm_bifpn_backbone(cfg, input_shape)

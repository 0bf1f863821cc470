"""Any timm ``features_only`` trunk as a detectron2 backbone, and under detectron2's FPN.

:func:`create_timm_trunk` builds ``timm.create_model(name, features_only=True)`` for the three
feature maps of stride 8, 16 and 32 (by default the trunk's last three), with

* random init (``pretrained=False``; nothing downloads),
* ``pretrained=True``: timm fetches its weights (its hub cache is honored); without network this
  fails at once with a :class:`PretrainedWeightsUnavailable` naming the weights and how to place
  them locally,
* ``weights=PATH``: a local state dict of the timm classification model (or of the trunk alone),
  read with ``torch.load(weights_only=True)`` and adapted by timm (first conv summed for 1-channel
  input, classifier dropped).

:class:`TimmBackbone` exposes the maps as ``c3``, ``c4``, ``c5`` (``c{k}`` has stride ``2**k``);
:func:`build_timm_fpn_backbone` puts detectron2's FPN with RetinaNet's P6/P7 on top.
"""
from __future__ import annotations

import contextlib
import logging
import math
import socket
from collections.abc import Iterator
from urllib.parse import urlparse

import torch
from torch import nn

from detectron2.layers import ShapeSpec
from detectron2.modeling import BACKBONE_REGISTRY, FPN, Backbone
from detectron2.modeling.backbone.fpn import LastLevelP6P7

from ...torch_io import load_weights_only

__all__ = [
    "PretrainedWeightsUnavailable",
    "TimmBackbone",
    "build_timm_fpn_backbone",
    "create_timm_trunk",
    "fetch_timm_state_dict",
    "freeze_trunk",
    "load_state_dict_file",
    "timm_trunk_settings",
]

logger = logging.getLogger(__name__)


class PretrainedWeightsUnavailable(RuntimeError):
    """Pretrained weights could not be fetched (no network) and are not in a local cache."""


def load_state_dict_file(path: str) -> dict[str, torch.Tensor]:
    """A state dict from a ``.pth`` / ``.pt`` / ``.safetensors`` file, without running code.

    A checkpoint dict with a ``"model"`` or ``"state_dict"`` entry is unwrapped and a
    ``module.`` prefix (DataParallel) is removed.

    Raises:
        FileNotFoundError: naming the file.
        ValueError: the file holds no tensor dict, or cannot be read without running code.
    """
    if path.endswith(".safetensors"):
        from safetensors.torch import load_file

        state = load_file(path)
    else:
        state = load_weights_only(path, error=ValueError)
    for key in ("model", "state_dict"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"{path}: expected a state dict of tensors (optionally under 'model')")
    return {k.removeprefix("module."): v for k, v in state.items()}


def _weights_name(name: str) -> str:
    """Where timm fetches the default pretrained weights of ``name`` from (hub id or URL)."""
    import timm

    cfg = timm.models.get_pretrained_cfg(name) or {}
    if not isinstance(cfg, dict):
        cfg = cfg.to_dict()
    if cfg.get("hf_hub_id"):
        return f"Hugging Face hub '{cfg['hf_hub_id']}'"
    return cfg.get("url") or "(timm lists no default weights for it)"


def _unavailable(name: str, e: Exception) -> PretrainedWeightsUnavailable:
    return PretrainedWeightsUnavailable(
        f"MODEL.TIMM.PRETRAINED: cannot fetch the weights of timm model {name!r} from "
        f"{_weights_name(name)} ({type(e).__name__}: {e}). On a machine with internet run "
        f"`python tools/convert_weights.py timm --name {name} --output {name}.pth` (or let "
        "timm fill its hub cache and copy it), then set MODEL.TIMM.WEIGHTS "
        f"{name}.pth and MODEL.TIMM.PRETRAINED False."
    )


@contextlib.contextmanager
def _hub_offline_unless_reachable(timeout_s: float = 5.0) -> Iterator[None]:
    """Hugging Face hub offline mode while its host cannot be reached, so that a cached copy
    still loads and a missing one fails at once (instead of minutes of retries)."""
    import huggingface_hub.constants as hf

    if hf.HF_HUB_OFFLINE:
        yield
        return
    try:
        socket.create_connection((urlparse(hf.ENDPOINT).hostname, 443), timeout=timeout_s).close()
        reachable = True
    except OSError:
        reachable = False
    hf.HF_HUB_OFFLINE = not reachable
    try:
        yield
    finally:
        hf.HF_HUB_OFFLINE = False


def fetch_timm_state_dict(name: str) -> dict[str, torch.Tensor]:
    """The default pretrained weights of timm classification model ``name`` (fetched by timm).

    Raises:
        PretrainedWeightsUnavailable: no network and no cached copy.
    """
    import timm

    try:
        with _hub_offline_unless_reachable():
            return timm.create_model(name, pretrained=True).state_dict()
    except (OSError, RuntimeError, ValueError) as e:  # hub/URL errors, offline mode
        raise _unavailable(name, e) from None


def create_timm_trunk(
    name: str,
    *,
    out_indices: tuple[int, ...] = (),
    in_chans: int = 3,
    pretrained: bool = False,
    weights: str = "",
    drop_path_rate: float = 0.0,
) -> nn.Module:
    """A timm ``features_only`` model returning the maps of stride 8, 16, 32 (finest first).

    Args:
        name: timm model name, e.g. "densenet121", "resnet50", "convnext_tiny", "efficientnet_b0".
        out_indices: timm feature indices; empty: the last three (strides 8/16/32).
        in_chans: input channels (1 for single-channel X-rays; pretrained first convs are summed).
        pretrained: let timm fetch its default weights (hub cache honored).
        weights: local state dict file (timm classification model or trunk); wins over
            ``pretrained``.
        drop_path_rate: stochastic depth rate, for trunks that have it.

    Raises:
        PretrainedWeightsUnavailable: ``pretrained`` without a reachable or cached copy.
        ValueError: the selected maps do not have strides 8, 16, 32.
    """
    import timm

    kwargs = {"features_only": True, "out_indices": tuple(out_indices) or (-3, -2, -1)}
    kwargs["in_chans"] = in_chans
    if drop_path_rate:
        kwargs["drop_path_rate"] = drop_path_rate
    if weights:
        state = load_state_dict_file(weights)
        kwargs["pretrained_cfg_overlay"] = {"state_dict": state}
        trunk = timm.create_model(name, pretrained=True, **kwargs)
        logger.info("Trunk %s: weights from %s (%d tensors)", name, weights, len(state))
    elif pretrained:
        try:
            with _hub_offline_unless_reachable():
                trunk = timm.create_model(name, pretrained=True, **kwargs)
        except (OSError, RuntimeError, ValueError) as e:  # hub/URL errors, offline mode
            raise _unavailable(name, e) from None
    else:
        trunk = timm.create_model(name, pretrained=False, **kwargs)
    strides = trunk.feature_info.reduction()
    if list(strides) != [8, 16, 32]:
        raise ValueError(
            f"timm model {name!r} with out_indices {kwargs['out_indices']} gives strides "
            f"{strides}; MODEL.TIMM.OUT_INDICES must select the stride 8, 16, 32 maps"
        )
    return trunk


def freeze_trunk(trunk: nn.Module, freeze_at: int) -> int:
    """Freeze every trunk parameter computed before timm feature stage ``freeze_at - 1``.

    Stage 0 is the trunk's first feature map (the stem's output for ResNet / DenseNet, the first
    block stage for EfficientNet, the first stage for ConvNeXt): ``freeze_at=1`` freezes the
    stem, ``n`` the stem and the stages before stage ``n - 1``; past the last stage, everything.
    Modules are taken in registration order, which is forward order for timm's trunks.

    Returns:
        number of parameter tensors frozen.
    """
    if freeze_at <= 0:
        return 0
    info = trunk.feature_info
    stage = min(freeze_at - 1, len(info.info))
    target = info.module_name(stage) if stage < len(info.info) else None
    targets = {target, target.replace(".", "_")} if target else set()
    n = 0
    for name, module in trunk.named_modules():
        if name in targets:
            break
        for p in module.parameters(recurse=False):
            p.requires_grad_(False)
            n += 1
    return n


def timm_trunk_settings(cfg, default_name: str = "") -> dict:
    """Trunk keyword arguments of :func:`create_timm_trunk` from ``MODEL.TIMM``.

    The ``MODEL.EFFICIENTNET`` keys (the EfficientDet backbone's) fill what ``MODEL.TIMM`` leaves
    empty, so EfficientDet configs keep working.

    Returns:
        dict with name, out_indices, pretrained, weights, drop_path_rate, freeze_at.
    """
    t, e = cfg.MODEL.TIMM, cfg.MODEL.EFFICIENTNET
    name = t.NAME or default_name
    if not name:
        raise ValueError("MODEL.TIMM.NAME is empty: name a timm model, e.g. densenet121")
    return {
        "name": name,
        "out_indices": tuple(t.OUT_INDICES),
        "pretrained": t.PRETRAINED,
        "weights": t.WEIGHTS or e.WEIGHTS,
        "drop_path_rate": t.DROP_PATH_RATE or e.DROP_PATH_RATE,
        "freeze_at": t.FREEZE_AT or e.FREEZE_AT,
    }


class TimmBackbone(Backbone):
    """A timm trunk's stride 8/16/32 maps as ``c3``, ``c4``, ``c5`` (see :func:`create_timm_trunk`).

    Input (N, in_chans, H, W) normalized images; ``c{k}`` is (N, C_k, ~H / 2**k, ~W / 2**k).
    """

    def __init__(self, *, name: str, in_chans: int = 3, freeze_at: int = 0, **trunk_kwargs):
        """
        Args:
            name: timm model name.
            in_chans: input channels.
            freeze_at: see :func:`freeze_trunk`.
            trunk_kwargs: out_indices, pretrained, weights, drop_path_rate of
                :func:`create_timm_trunk`.
        """
        super().__init__()
        self.trunk = create_timm_trunk(name, in_chans=in_chans, **trunk_kwargs)
        freeze_trunk(self.trunk, freeze_at)
        self._out_features = [f"c{int(math.log2(s))}" for s in self.trunk.feature_info.reduction()]
        channels = self.trunk.feature_info.channels()
        self._out_feature_channels = dict(zip(self._out_features, channels))
        self._out_feature_strides = {f: 2 ** int(f[1:]) for f in self._out_features}

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return dict(zip(self._out_features, self.trunk(x)))


@BACKBONE_REGISTRY.register()
def build_timm_fpn_backbone(cfg, input_shape: ShapeSpec) -> FPN:
    """detectron2's FPN (p3..p5 from c3..c5, P6/P7 from c5) over the ``MODEL.TIMM`` trunk.

    Width ``MODEL.FPN.OUT_CHANNELS``, norm ``MODEL.FPN.NORM``, fusion ``MODEL.FPN.FUSE_TYPE``;
    input channels from ``MODEL.PIXEL_MEAN`` (1 for ``INPUT.FORMAT: L``).
    """
    s = timm_trunk_settings(cfg)
    bottom_up = TimmBackbone(in_chans=input_shape.channels, **s)
    out = cfg.MODEL.FPN.OUT_CHANNELS
    c5 = bottom_up.output_shape()["c5"].channels
    return FPN(
        bottom_up=bottom_up,
        in_features=list(bottom_up.output_shape()),
        out_channels=out,
        norm=cfg.MODEL.FPN.NORM,
        top_block=LastLevelP6P7(c5, out, in_feature="c5"),
        fuse_type=cfg.MODEL.FPN.FUSE_TYPE,
    )

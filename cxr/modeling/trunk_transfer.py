"""Trunk transfer: initialise a detector's trunk from a ``CXRClassifier`` checkpoint.

A classifier stores its trunk as ``backbone.<name>`` (see
:class:`~cxr.modeling.meta_arch.classifier.CXRClassifier`); a detector keeps the same trunk as
``backbone.bottom_up.<name>`` (FPN) or ``backbone.trunk.<name>`` (EfficientDet). Built from the
same ``MODEL.RESNETS`` / ``MODEL.BIFPN.PRESET`` keys, the names and shapes match one to one.
``MODEL.TRUNK_WEIGHTS`` names the checkpoint; the trainer applies it before ``MODEL.WEIGHTS``.
"""

from __future__ import annotations

import dataclasses
import logging

import torch
from torch import nn

from ..torch_io import load_weights_only
from .meta_arch.classifier import trunk_of

__all__ = ["TrunkTransfer", "classifier_trunk_state", "load_classifier_trunk"]

logger = logging.getLogger(__name__)

_PREFIX = "backbone."


@dataclasses.dataclass
class TrunkTransfer:
    """What :func:`load_classifier_trunk` did: tensor names (relative to the trunk)."""

    loaded: list
    missing: list  # trunk tensors the checkpoint lacks (left as they were)
    shape_mismatch: list  # present in both, different shapes (left as they were)
    unused: list  # checkpoint trunk tensors the detector's trunk has no place for


def classifier_trunk_state(path: str, use_ema: bool = True) -> dict[str, torch.Tensor]:
    """The trunk tensors (``backbone.`` prefix removed) of a classifier checkpoint.

    The EMA weights are used when the checkpoint has them and ``use_ema``. Files are read with
    ``torch.load(weights_only=True)`` (no code runs); pickle ``.pkl`` files are refused.

    Raises:
        ValueError: a ``.pkl`` file, an unreadable checkpoint, or one without ``backbone.*``
            tensors (not a classifier checkpoint).
    """
    if path.endswith(".pkl"):
        raise ValueError(f"{path}: MODEL.TRUNK_WEIGHTS must be a .pth classifier checkpoint")
    try:
        ckpt = load_weights_only(path, error=ValueError)
    except FileNotFoundError:
        raise FileNotFoundError(f"MODEL.TRUNK_WEIGHTS: file not found: {path}") from None
    if not isinstance(ckpt, dict):
        raise ValueError(f"{path}: not a checkpoint dict")
    state = ckpt.get("model", ckpt)
    ema = ckpt.get("ema")
    if use_ema and isinstance(ema, dict) and isinstance(ema.get("weights"), dict):
        logger.info("Using the EMA weights of %s", path)
        state = ema["weights"]
    trunk = {k[len(_PREFIX) :]: v for k, v in state.items() if k.startswith(_PREFIX)}
    if not trunk:
        raise ValueError(
            f"{path}: field model has no backbone.* tensors: not a classifier checkpoint"
        )
    return trunk


def load_classifier_trunk(model: nn.Module, path: str, use_ema: bool = True) -> TrunkTransfer:
    """Copy the classifier trunk of checkpoint ``path`` into ``model.backbone``'s trunk.

    Tensors are matched by name and shape; everything else (the detector's FPN / BiFPN / head,
    unmatched tensors) keeps its values. What was loaded and what was not is logged.

    Args:
        model: a detector (or classifier) with a ``backbone`` attribute (DDP-wrapped allowed).

    Returns:
        :class:`TrunkTransfer`.

    Raises:
        ValueError: when no tensor matches (the checkpoint's trunk is another architecture).
    """
    module = model.module if hasattr(model, "module") else model
    trunk, name = trunk_of(module.backbone)
    src = classifier_trunk_state(path, use_ema)
    dst = trunk.state_dict()
    loaded, mismatch = {}, []
    for k, v in dst.items():
        if k in src:
            if src[k].shape == v.shape:
                loaded[k] = src[k]
            else:
                mismatch.append(k)
    report = TrunkTransfer(
        loaded=sorted(loaded),
        missing=sorted(k for k in dst if k not in src),
        shape_mismatch=sorted(mismatch),
        unused=sorted(k for k in src if k not in dst),
    )
    where = f"backbone.{name}" if name else "backbone"
    if not loaded:
        raise ValueError(
            f"{path}: no trunk tensor matches {where} ({len(report.missing)} missing, "
            f"{len(mismatch)} of another shape): build the classifier from the detector's MODEL keys"
        )
    trunk.load_state_dict(loaded, strict=False)
    logger.info(
        "Trunk transfer from %s into %s: loaded %d of %d tensors",
        path,
        where,
        len(loaded),
        len(dst),
    )
    for what in ("missing", "shape_mismatch", "unused"):
        names = getattr(report, what)
        if names:
            logger.warning("Trunk transfer: %d %s tensor(s), e.g. %s", len(names), what, names[:5])
    return report

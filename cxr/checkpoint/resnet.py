"""torchvision ResNet (and torchxrayvision's ResNet, which wraps it) -> detectron2 ResNet.

Renaming only: ``conv1`` / ``bn1`` -> ``stem.conv1`` (+ ``.norm``), ``layer{i}.{b}.conv{j}`` /
``bn{j}`` -> ``res{i+1}.{b}.conv{j}`` (+ ``.norm``), ``downsample.0`` / ``.1`` -> ``shortcut``
(+ ``.norm``); the classifier ``fc`` and the BN counters ``num_batches_tracked`` are dropped.
torchvision puts the stride in the 3x3 conv, so the detectron2 model needs ``MODEL.RESNETS.STRIDE_IN_1X1: False``; its input normalization is
torchvision's: RGB, ``PIXEL_MEAN`` 255 * (0.485, 0.456, 0.406), ``PIXEL_STD`` 255 * (0.229,
0.224, 0.225) (what ``(x / 255 - mean) / std`` computes).
"""
from __future__ import annotations

import re

import torch

from .common import ConversionReport

__all__ = ["TORCHVISION_MEAN", "TORCHVISION_STD", "convert_torchvision_resnet"]

TORCHVISION_MEAN = (123.675, 116.28, 103.53)
TORCHVISION_STD = (58.395, 57.12, 57.375)


def _rename(key: str) -> str | None:
    if key == "conv1.weight":
        return "stem.conv1.weight"
    if m := re.match(r"^bn1\.(.+)$", key):
        return f"stem.conv1.norm.{m.group(1)}"
    if not (m := re.match(r"^layer(\d)\.(\d+)\.(.+)$", key)):
        return None
    stage, block, rest = f"res{int(m.group(1)) + 1}", m.group(2), m.group(3)
    for pattern, repl in [(r"^conv(\d)\.weight$", r"conv\1.weight"),
                          (r"^bn(\d)\.(.+)$", r"conv\1.norm.\2"),
                          (r"^downsample\.0\.weight$", "shortcut.weight"),
                          (r"^downsample\.1\.(.+)$", r"shortcut.norm.\1")]:  # fmt: skip
        if re.match(pattern, rest):
            return f"{stage}.{block}." + re.sub(pattern, repl, rest)
    return None


def convert_torchvision_resnet(
    state: dict[str, torch.Tensor], prefix: str = "backbone.bottom_up."
) -> tuple[dict[str, torch.Tensor], ConversionReport]:
    """Rename a torchvision ResNet state dict to detectron2's ResNet under ``prefix``.

    Args:
        state: ``torchvision.models.resnet*().state_dict()`` (a ``model.`` prefix, as in
            torchxrayvision's ResNet, is removed).
        prefix: where the trunk lives in the cxr model (FPN detectors: ``backbone.bottom_up.``).

    Returns:
        (state dict, report).
    """
    if state and all(k.startswith("model.") for k in state if k != "op_threshs"):
        state = {k[len("model.") :]: v for k, v in state.items() if k.startswith("model.")}
    out, report = {}, ConversionReport()
    for key, value in state.items():
        new = None if key.endswith("num_batches_tracked") else _rename(key)
        if new is None:  # the classifier, and BN counters (FrozenBN has none)
            report.dropped.append(key)
        else:
            out[prefix + new] = value
    if "conv1.weight" not in state:
        raise ValueError("not a torchvision ResNet state dict (no conv1.weight)")
    report.kept, report.dropped = sorted(out), sorted(report.dropped)
    report.notes.append("needs MODEL.RESNETS.STRIDE_IN_1X1 False (torchvision strides the 3x3)")
    return out, report

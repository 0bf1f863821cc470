"""``effdet`` EfficientDet checkpoints -> cxr EfficientDet (timm trunk + BiFPN + EfficientDetHead).

The converted model computes the same function as ``effdet``'s in eval mode:

* trunk: the same timm model, tensors copied (``backbone.*`` -> ``backbone.trunk.*``);
* BiFPN: effdet's first-cell resample convs are cxr's laterals (top-down nodes: ``laterals``,
  bottom-up nodes at p4 / p5: ``bottom_up_laterals``), ``fpn.resample.3`` the p6 lateral;
  fnode ``k`` of a cell is top-down node ``3 - k`` (k < 4) or bottom-up node ``k - 4``; fusion
  weights copied in input order;
* head: ``conv_rep`` / ``bn_rep`` (repeat-first layout, as effdet saves) / ``predict`` of the
  class and box nets;
* BatchNorm: effdet's eps 1e-3 becomes cxr's 1e-5 by adding the difference to ``running_var``;
  the "redundant" conv biases of TF-ported models (a bias right before a BN) are folded into that
  BN's ``running_mean``; both exact in eval mode;
* box regression: effdet predicts (ty, tx, th, tw) per anchor, detectron2 (dx, dy, dw, dh): the
  box layer's output channels are reordered ``a * 4 + (1, 0, 3, 2)``; anchor order is the same
  (octave-major, then aspect; see :class:`cxr.modeling.EfficientDetAnchorGenerator`);
* class layer: kept for the same class count, else re-initialized with the prior bias.
"""
from __future__ import annotations

import dataclasses
import re

import torch

from .common import ConversionReport, reinit_class_layer

__all__ = [
    "EFFDET_ARCHS",
    "EffdetArch",
    "convert_effdet_state",
    "effdet_config_body",
    "effdet_reference_state",
]

_EPS_EFFDET, _EPS_CXR = 1e-3, 1e-5
IMAGENET_MEAN, IMAGENET_STD = (123.675, 116.28, 103.53), (58.395, 57.12, 57.375)


@dataclasses.dataclass(frozen=True)
class EffdetArch:
    """How one ``effdet`` architecture maps onto cxr's zoo.

    Attributes:
        preset: ``MODEL.BIFPN.PRESET``.
        zoo_config: file name of the matching config under ``configs/<dataset>/``.
        anchor_scale: ``MODEL.ANCHOR_GENERATOR.ANCHOR_SCALE`` (effdet's ``anchor_scale``).
        mean, std: effdet's input normalization, RGB, in 0-255 pixel units.
        size: effdet's input size (pixels, square).
    """

    preset: str
    zoo_config: str
    anchor_scale: float = 4.0
    mean: tuple = IMAGENET_MEAN
    std: tuple = IMAGENET_STD
    size: int = 512


EFFDET_ARCHS = {
    "efficientdet_d0": EffdetArch("D0", "efficientdet_d0.yaml"),
    "efficientdet_d1": EffdetArch("D1", "efficientdet_d1.yaml", size=640),
    "tf_efficientdet_d0": EffdetArch("TF_D0", "efficientdet_d0.yaml"),
    "tf_efficientdet_d1": EffdetArch("TF_D1", "efficientdet_d1.yaml", size=640),
    "tf_efficientdet_lite0": EffdetArch(
        "TF_Lite0", "efficientdet_lite0.yaml", 3.0, (127.5,) * 3, (127.5,) * 3, 320
    ),
}


class _Converter:
    def __init__(self, src: dict[str, torch.Tensor]):
        self.src, self.out, self.used = src, {}, set()
        self.report = ConversionReport()

    def take(self, key: str) -> torch.Tensor:
        self.used.add(key)
        return self.src[key]

    def copy(self, s: str, d: str) -> None:
        self.out[d] = self.take(s)

    def bn(self, s: str, d: str, bias: torch.Tensor | None = None) -> None:
        """effdet BN ``s`` (eps 1e-3, optional preceding conv bias) -> cxr BN ``d`` (eps 1e-5)."""
        for p in ("weight", "bias"):
            self.copy(s + p, d + p)
        mean = self.take(s + "running_mean")
        self.out[d + "running_mean"] = mean - bias if bias is not None else mean
        self.out[d + "running_var"] = self.take(s + "running_var") + (_EPS_EFFDET - _EPS_CXR)
        if s + "num_batches_tracked" in self.src:
            self.copy(s + "num_batches_tracked", d + "num_batches_tracked")

    def conv_bias(self, key: str) -> torch.Tensor | None:
        return self.take(key) if key in self.src else None

    def lateral(self, s: str, d: str) -> None:
        """ConvBnAct2d 1x1 (``s``: ...conv.) -> detectron2 Conv2d with norm (``d``)."""
        self.copy(s + "conv.weight", d + "weight")
        self.bn(s + "bn.", d + "norm.", self.conv_bias(s + "conv.bias"))

    def separable(self, s: str, d: str) -> None:
        """effdet SeparableConv2d with BN -> cxr SeparableConv2d (0 dw, 1 pw, 2 BN)."""
        self.copy(s + "conv_dw.weight", d + "0.weight")
        self.copy(s + "conv_pw.weight", d + "1.weight")
        self.bn(s + "bn.", d + "2.", self.conv_bias(s + "conv_pw.bias"))


def _count(src: dict, pattern: str) -> int:
    found = {int(m.group(1)) for k in src if (m := re.match(pattern, k))}
    return max(found) + 1 if found else 0


# (fnode of effdet's first cell, its backbone input offset: 0 c3, 1 c4, 2 c5) -> cxr lateral
_FIRST_CELL_LATERALS = [
    (3, 0, "laterals.0"),
    (2, 1, "laterals.1"),
    (1, 2, "laterals.2"),
    (4, 1, "bottom_up_laterals.0"),
    (5, 2, "bottom_up_laterals.1"),
]


def _convert_bifpn(c: _Converter, num_cells: int) -> None:
    c.lateral("fpn.resample.3.conv.", "backbone.laterals.3.")
    first = "fpn.cell.0.fnode.{}.combine.resample.{}.conv."
    for node, offset, dst in _FIRST_CELL_LATERALS:
        c.lateral(first.format(node, offset), f"backbone.{dst}.")
    for cell in range(num_cells):
        for k in range(8):
            s = f"fpn.cell.{cell}.fnode.{k}."
            node = f"td_nodes.{3 - k}." if k < 4 else f"bu_nodes.{k - 4}."
            d = f"backbone.bifpn.{cell}.{node}"
            if s + "combine.edge_weights" in c.src:
                c.copy(s + "combine.edge_weights", d + "weight")
            c.separable(s + "after_combine.conv.", d + "conv.")


def _convert_net(c: _Converter, net: str, convs: str, norms: str, predict: str) -> None:
    repeats = _count(c.src, rf"{net}\.conv_rep\.(\d+)\.")
    levels = _count(c.src, rf"{net}\.bn_rep\.0\.(\d+)\.")
    for r in range(repeats):
        s = f"{net}.conv_rep.{r}."
        c.copy(s + "conv_dw.weight", f"head.{convs}.{r}.0.weight")
        c.copy(s + "conv_pw.weight", f"head.{convs}.{r}.1.weight")
        bias = c.conv_bias(s + "conv_pw.bias")
        for lvl in range(levels):
            c.bn(f"{net}.bn_rep.{r}.{lvl}.bn.", f"head.{norms}.{r}.{lvl}.", bias)
    c.copy(f"{net}.predict.conv_dw.weight", f"head.{predict}.0.weight")
    c.copy(f"{net}.predict.conv_pw.weight", f"head.{predict}.1.weight")
    c.copy(f"{net}.predict.conv_pw.bias", f"head.{predict}.1.bias")


def _unwrap(state: dict) -> dict[str, torch.Tensor]:
    for key in ("state_dict_ema", "model", "state_dict"):
        if isinstance(state.get(key), dict):
            state = state[key]
            break
    for prefix in ("module.", "model."):
        if state and all(k.startswith(prefix) for k in state):
            state = {k[len(prefix) :]: v for k, v in state.items()}
    if not any(k.startswith("fpn.cell.") for k in state):
        raise ValueError("not an effdet EfficientDet state dict (no fpn.cell.* tensors)")
    return state


def convert_effdet_state(
    state: dict, *, num_classes: int | None = None, prior_prob: float = 0.01
) -> tuple[dict[str, torch.Tensor], ConversionReport]:
    """Convert an effdet EfficientDet state dict (or checkpoint) into cxr's model state dict.

    Args:
        state: effdet ``model.state_dict()`` (a checkpoint with ``state_dict`` / ``model`` /
            ``state_dict_ema`` or a ``DetBench``'s ``model.`` prefix is unwrapped).
        num_classes: class count of the cxr model; None keeps effdet's (90 for COCO).
        prior_prob: foreground prior of a re-initialized class layer.

    Returns:
        (state dict for ``CXRRetinaNet`` with the matching preset, report).

    Raises:
        ValueError: the input is not an effdet EfficientDet (repeat-first head BN layout).
    """
    src = _unwrap(state)
    c = _Converter(src)
    for k in src:
        if k.startswith("backbone."):
            c.copy(k, "backbone.trunk." + k[len("backbone.") :])
    _convert_bifpn(c, _count(src, r"fpn\.cell\.(\d+)\."))
    _convert_net(c, "class_net", "cls_convs", "cls_norms", "cls_score")
    _convert_net(c, "box_net", "box_convs", "box_norms", "bbox_pred")

    box_w = c.out["head.bbox_pred.1.weight"]
    anchors = box_w.shape[0] // 4
    perm = torch.tensor([a * 4 + j for a in range(anchors) for j in (1, 0, 3, 2)])
    for p in ("weight", "bias"):
        c.out[f"head.bbox_pred.1.{p}"] = c.out[f"head.bbox_pred.1.{p}"][perm]
    c.report.notes.append("box layer: (ty, tx, th, tw) -> (dx, dy, dw, dh) per anchor")
    c.report.notes.append("BatchNorm eps 1e-3 -> 1e-5 folded into running_var")
    if any(k.endswith("conv_pw.bias") for k in c.used if "predict" not in k):
        c.report.notes.append("conv biases before BatchNorm folded into running_mean")

    src_classes = c.out["head.cls_score.1.weight"].shape[0] // anchors
    if num_classes is not None and num_classes != src_classes:
        cls_w, cls_b = "head.cls_score.1.weight", "head.cls_score.1.bias"
        reinit_class_layer(c.out, cls_w, cls_b, anchors, num_classes, prior_prob)
        c.report.dropped += [f"class_net.predict.conv_pw.{p}" for p in ("weight", "bias")]
        c.report.reinitialized += [cls_w, cls_b]
        c.report.notes.append(
            f"class layer {src_classes} -> {num_classes} classes: N(0, 0.01) weights, "
            f"prior bias p={prior_prob}"
        )
    c.report.kept = sorted(set(c.out) - set(c.report.reinitialized))
    c.report.dropped += sorted(set(src) - c.used)
    return c.out, c.report


def effdet_config_body(arch: str, num_classes: int) -> str:
    """The YAML lines (under ``MODEL:`` then top level) a converted ``arch`` needs."""
    a = EFFDET_ARCHS[arch]
    return (
        f"  # {arch}'s input normalization (RGB, 0-255 units)\n"
        f"  PIXEL_MEAN: {list(a.mean)}\n  PIXEL_STD: {list(a.std)}\n"
        f'  BIFPN:\n    PRESET: "{a.preset}"\n'
        f'  ANCHOR_GENERATOR:\n    NAME: "EfficientDetAnchorGenerator"\n'
        f"    ANCHOR_SCALE: {a.anchor_scale}\n"
        f"  RETINANET:\n    NUM_CLASSES: {num_classes}\n"
        'INPUT:\n  FORMAT: "RGB"\n'
    )


def effdet_reference_state(arch: str, num_classes: int, base: str) -> dict[str, torch.Tensor]:
    """The state dict of cxr's model for ``arch`` (random weights, CPU): config ``base`` (a zoo
    config) with the architecture's preset, anchors and ``num_classes``; what a conversion for
    ``arch`` must fit (:func:`~cxr.checkpoint.common.check_against_model`)."""
    from detectron2.modeling import build_model

    from ..config import load_config

    a = EFFDET_ARCHS[arch]
    cfg = load_config(base, [
        "MODEL.BIFPN.PRESET", a.preset,
        "MODEL.ANCHOR_GENERATOR.NAME", "EfficientDetAnchorGenerator",
        "MODEL.ANCHOR_GENERATOR.ANCHOR_SCALE", str(a.anchor_scale),
        "MODEL.RETINANET.NUM_CLASSES", str(num_classes), "MODEL.DEVICE", "cpu",
    ])  # fmt: skip
    return build_model(cfg).state_dict()

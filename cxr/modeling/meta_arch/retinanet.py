"""``CXRRetinaNet``: detectron2's RetinaNet with per-class focal alpha and a swappable head."""
from __future__ import annotations

import logging
import math

import torch
import torch.nn.functional as F
from torch import nn

from detectron2.config import configurable
from detectron2.layers import ShapeSpec, cat, get_norm
from detectron2.modeling import META_ARCH_REGISTRY, RetinaNet
from detectron2.modeling.anchor_generator import build_anchor_generator
from detectron2.modeling.meta_arch.retinanet import RetinaNetHead
from detectron2.structures import ImageList
from detectron2.utils.registry import Registry

from ..backbone.efficientnet_bifpn import bifpn_settings
from ..fuse import fold_bn
from ..layers import SeparableConv2d, build_activation
from ..losses import resolve_focal_alpha, sigmoid_focal_loss

__all__ = ["CXRRetinaNet", "EfficientDetHead", "RETINANET_HEAD_REGISTRY", "build_retinanet_head"]

logger = logging.getLogger(__name__)

RETINANET_HEAD_REGISTRY = Registry("RETINANET_HEAD")
RETINANET_HEAD_REGISTRY.__doc__ = """
Dense heads for CXRRetinaNet, by MODEL.RETINANET.HEAD_NAME: ``head(cfg, input_shapes)`` returns a
module mapping a list of per-level features to (logits, box deltas) lists, as RetinaNetHead.
"""
RETINANET_HEAD_REGISTRY.register(RetinaNetHead)


def build_retinanet_head(cfg, input_shape: list[ShapeSpec]) -> nn.Module:
    """Build ``MODEL.RETINANET.HEAD_NAME`` from :data:`RETINANET_HEAD_REGISTRY`."""
    return RETINANET_HEAD_REGISTRY.get(cfg.MODEL.RETINANET.HEAD_NAME)(cfg, input_shape)


@RETINANET_HEAD_REGISTRY.register()
class EfficientDetHead(nn.Module):
    """EfficientDet class / box nets: separable convs with weights shared across levels and BN
    kept per level, ``num_convs`` deep, each followed by the activation; separable-conv
    predictors with bias (class bias from ``prior_prob``).
    """

    @configurable
    def __init__(
        self,
        *,
        input_shape: list[ShapeSpec],
        num_classes: int,
        num_anchors: int,
        num_convs: int = 3,
        norm: str = "BN",
        activation: str = "silu",
        prior_prob: float = 0.01,
    ):
        """
        Args:
            input_shape: one ShapeSpec per level (same channels everywhere).
            num_classes: K (no background column).
            num_anchors: A anchors per location.
            num_convs: depth of each net (D0-D2: 3, D3: 4).
            norm: detectron2 norm name, one instance per level and conv ("BN", "SyncBN").
            activation: "silu" or "relu6".
            prior_prob: initial foreground probability of every class logit.
        """
        super().__init__()
        channels = {s.channels for s in input_shape}
        if len(channels) != 1:
            raise ValueError(f"EfficientDetHead needs equal channels on all levels, got {channels}")
        c = channels.pop()
        self.num_levels = len(input_shape)

        def tower():
            convs = nn.ModuleList(SeparableConv2d(c, c, norm="") for _ in range(num_convs))
            for conv in convs:  # the per-level norm follows, so the pointwise bias is redundant
                conv[1].bias = None
            norms = nn.ModuleList(
                nn.ModuleList(get_norm(norm, c) for _ in range(self.num_levels))
                for _ in range(num_convs)
            )
            return convs, norms

        self.cls_convs, self.cls_norms = tower()
        self.box_convs, self.box_norms = tower()
        self.act = build_activation(activation)
        self.cls_score = SeparableConv2d(c, num_anchors * num_classes, norm="")
        self.bbox_pred = SeparableConv2d(c, num_anchors * 4, norm="")
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.normal_(m.weight, std=0.01)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
        nn.init.constant_(self.cls_score[1].bias, -math.log((1 - prior_prob) / prior_prob))

    @classmethod
    def from_config(cls, cfg, input_shape: list[ShapeSpec]):
        num_anchors = build_anchor_generator(cfg, input_shape).num_cell_anchors
        if len(set(num_anchors)) != 1:
            raise ValueError(f"EfficientDetHead needs equal anchors per level, got {num_anchors}")
        return {
            "input_shape": input_shape,
            "num_classes": cfg.MODEL.RETINANET.NUM_CLASSES,
            "num_anchors": num_anchors[0],
            "num_convs": cfg.MODEL.RETINANET.NUM_CONVS,
            "norm": cfg.MODEL.RETINANET.NORM,
            "activation": bifpn_settings(cfg)["activation"],
            "prior_prob": cfg.MODEL.RETINANET.PRIOR_PROB,
        }

    def fuse_for_inference(self) -> "EfficientDetHead":
        """Fold each level's BN into a per-level copy of the shared pointwise conv (eval only).

        The depthwise convs stay shared; each level gets ``pointwise * bn_scale`` weights and a
        bias, so a tower step is depthwise -> pointwise -> act with no BN pass. One-way.
        """
        if self.training:
            raise RuntimeError("call .eval() before fuse_for_inference()")

        def fold(convs, norms):
            return nn.ModuleList(
                nn.ModuleList(fold_bn(conv[1], norm[lvl]) for conv, norm in zip(convs, norms))
                for lvl in range(self.num_levels)
            )

        self.cls_folded = fold(self.cls_convs, self.cls_norms)
        self.box_folded = fold(self.box_convs, self.box_norms)
        del self.cls_norms, self.box_norms
        return self

    def _tower(self, x: torch.Tensor, level: int, convs, norms, folded) -> torch.Tensor:
        if folded is not None:  # fuse_for_inference(): depthwise, folded pointwise + BN, act
            for conv, pointwise in zip(convs, folded[level]):
                x = self.act(pointwise(conv[0](x)))
            return x
        for conv, norm in zip(convs, norms):
            x = self.act(norm[level](conv(x)))
        return x

    def forward(
        self, features: list[torch.Tensor]
    ) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """
        Args:
            features: per-level (N, C, Hi, Wi) maps, finest first.

        Returns:
            logits: per level (N, A*K, Hi, Wi); deltas: per level (N, A*4, Hi, Wi).
        """
        if len(features) != self.num_levels:
            raise ValueError(f"expected {self.num_levels} levels, got {len(features)}")
        logits, deltas = [], []
        cls_norms, box_norms = getattr(self, "cls_norms", None), getattr(self, "box_norms", None)
        cls_folded = getattr(self, "cls_folded", None)
        box_folded = getattr(self, "box_folded", None)
        for lvl, x in enumerate(features):
            cls = self._tower(x, lvl, self.cls_convs, cls_norms, cls_folded)
            box = self._tower(x, lvl, self.box_convs, box_norms, box_folded)
            logits.append(self.cls_score(cls))
            deltas.append(self.bbox_pred(box))
        return logits, deltas


@META_ARCH_REGISTRY.register()
class CXRRetinaNet(RetinaNet):
    """RetinaNet whose head comes from :data:`RETINANET_HEAD_REGISTRY` and whose focal loss
    takes one alpha per class (``MODEL.RETINANET.FOCAL_ALPHA``: number, list or "auto").

    Box losses are detectron2's (``MODEL.RETINANET.BBOX_REG_LOSS_TYPE``: smooth_l1, giou, diou,
    ciou). Everything else (anchors, matching, inference) is detectron2's RetinaNet.
    """

    @configurable
    def __init__(
        self, *, focal_alpha: float | list[float] = 0.25, channels_last: bool = False, **kwargs
    ):
        """
        Args:
            focal_alpha: a number (one alpha for every class) or a list of NUM_CLASSES alphas.
            channels_last: keep weights and the input batch in channels-last (NHWC) memory
                format (same results; faster CPU convolutions).
            kwargs: everything :class:`detectron2.modeling.RetinaNet` takes.
        """
        super().__init__(focal_loss_alpha=-1, **kwargs)
        self.channels_last = channels_last
        if channels_last:
            self.to(memory_format=torch.channels_last)
        if isinstance(focal_alpha, (int, float)):
            focal_alpha = [float(focal_alpha)] * self.num_classes
        if len(focal_alpha) != self.num_classes:
            raise ValueError(f"{len(focal_alpha)} focal alphas for {self.num_classes} classes")
        self.register_buffer("focal_alpha", torch.tensor(focal_alpha), persistent=False)

    @classmethod
    def from_config(cls, cfg):
        ret = super().from_config(cfg)
        # detectron2 builds its RetinaNetHead unconditionally; swap in the configured head.
        feature_shapes = [ret["backbone"].output_shape()[f] for f in ret["head_in_features"]]
        ret["head"] = build_retinanet_head(cfg, feature_shapes)
        ret.pop("focal_loss_alpha")
        ret["channels_last"] = cfg.MODEL.RETINANET.CHANNELS_LAST
        ret["focal_alpha"] = resolve_focal_alpha(
            cfg.MODEL.RETINANET.FOCAL_ALPHA,
            cfg.MODEL.RETINANET.NUM_CLASSES,
            default=cfg.MODEL.RETINANET.FOCAL_LOSS_ALPHA,
            dataset_names=cfg.DATASETS.TRAIN,
            power=cfg.MODEL.RETINANET.FOCAL_ALPHA_AUTO_POWER,
        )
        return ret

    def preprocess_image(self, batched_inputs: list[dict]) -> ImageList:
        """As :meth:`RetinaNet.preprocess_image`; the batch is channels-last when the model is."""
        images = super().preprocess_image(batched_inputs)
        if self.channels_last:
            images.tensor = images.tensor.contiguous(memory_format=torch.channels_last)
        return images

    def fuse_for_inference(self) -> "CXRRetinaNet":
        """Fold BatchNorm into the convs of the backbone and head that support it (eval only).

        Same detections up to float rounding, less work per image (docs/benchmarks.md).
        One-way: the model cannot be put back into training mode, and its state dict no longer
        matches checkpoints; load weights first, then fuse.

        Returns:
            self.
        """
        if self.training:
            raise RuntimeError("call model.eval() before fuse_for_inference()")
        for module in (self.backbone, self.head):
            if hasattr(module, "fuse_for_inference"):
                module.fuse_for_inference()
        if self.channels_last:  # folded convs are new modules
            self.to(memory_format=torch.channels_last)
        self._fused_for_inference = True
        return self

    def train(self, mode: bool = True) -> "CXRRetinaNet":
        if mode and getattr(self, "_fused_for_inference", False):
            raise RuntimeError("model was fused for inference (BN folded): rebuild it to train")
        return super().train(mode)

    def losses(self, anchors, pred_logits, gt_labels, pred_anchor_deltas, gt_boxes):
        """detectron2's :meth:`RetinaNet.losses` with one focal alpha per class.

        detectron2 computes the box loss, the EMA normalizer of positive anchors and its logging.
        Its focal loss takes one scalar alpha and offers no hook, and its TorchScript version
        changes numerics once the JIT has profiled a few calls (so a resumed run would differ
        from an uninterrupted one); the classification term is therefore recomputed here with
        the same targets and normalizer.

        Args:
            anchors: per-level Boxes (XYXY_ABS).
            pred_logits: per level (N, Hi*Wi*A, K); pred_anchor_deltas: per level (N, ., 4).
            gt_labels: N tensors (R,), values -1 (ignore), 0..K-1, K (background).
            gt_boxes: N tensors (R, 4) XYXY_ABS.

        Returns:
            dict with "loss_cls" and "loss_box_reg".
        """
        losses = super().losses(anchors, pred_logits, gt_labels, pred_anchor_deltas, gt_boxes)
        labels = torch.stack(gt_labels)
        valid = labels >= 0
        logits = cat(pred_logits, dim=1)[valid]
        target = F.one_hot(labels[valid], self.num_classes + 1)[:, :-1].to(logits.dtype)
        loss_cls = sigmoid_focal_loss(
            logits, target, self.focal_alpha.to(logits.dtype), self.focal_loss_gamma, "sum"
        )
        losses["loss_cls"] = loss_cls / self.loss_normalizer
        return losses

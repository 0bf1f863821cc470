"""Faster R-CNN ROI heads whose box classifier is trained with a sigmoid focal loss.

Background representation: the classifier has K outputs, one independent sigmoid per class (no
background column). A background ROI (``gt_class == K``) is the all-zero target row; a foreground
ROI of class c has target 1 in column c only. At inference the per-class scores are these
sigmoids. detectron2's ``fast_rcnn_inference`` expects a (K + 1)-th column and drops it unread; we
append a zero placeholder only to pass through it. In the training log, ``fast_rcnn/cls_accuracy``
treats a ROI as predicted background when no class logit exceeds 0 (no sigmoid above 0.5).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from detectron2.config import configurable
from detectron2.layers import cat
from detectron2.modeling import ROI_HEADS_REGISTRY, StandardROIHeads
from detectron2.modeling.roi_heads.fast_rcnn import FastRCNNOutputLayers

from ..losses import resolve_focal_alpha, sigmoid_focal_loss

__all__ = ["FocalFastRCNNOutputLayers", "FocalROIHeads"]


class FocalFastRCNNOutputLayers(FastRCNNOutputLayers):
    """Fast R-CNN predictor with K sigmoid class logits and a focal classification loss.

    ``loss_cls = sum over ROIs r and classes c of FL(s_rc, t_rc) / R`` where R is the number of
    sampled ROIs in the batch (as detectron2's mean cross-entropy), ``t_rc = [gt_class_r == c]``,
    and FL is :func:`cxr.modeling.losses.sigmoid_focal_loss` (gamma, alpha per class). The box
    loss is detectron2's.
    """

    @configurable
    def __init__(
        self,
        input_shape,
        *,
        focal_gamma: float = 2.0,
        focal_alpha: float | list[float] = 0.25,
        prior_prob: float = 0.01,
        **kwargs,
    ):
        """
        Args:
            input_shape, kwargs: as :class:`FastRCNNOutputLayers`.
            focal_gamma: focusing exponent.
            focal_alpha: a number (negative: no alpha weighting) or K numbers.
            prior_prob: initial probability of every class sigmoid.
        """
        super().__init__(input_shape, **kwargs)
        self.cls_score = nn.Linear(self.cls_score.in_features, self.num_classes)
        nn.init.normal_(self.cls_score.weight, std=0.01)
        nn.init.constant_(self.cls_score.bias, -math.log((1 - prior_prob) / prior_prob))
        self.focal_gamma = focal_gamma
        if isinstance(focal_alpha, (int, float)):
            self.focal_alpha = float(focal_alpha)
        else:
            if len(focal_alpha) != self.num_classes:
                raise ValueError(f"{len(focal_alpha)} focal alphas for {self.num_classes} classes")
            self.register_buffer("_alpha", torch.tensor(focal_alpha), persistent=False)
            self.focal_alpha = None

    @classmethod
    def from_config(cls, cfg, input_shape):
        ret = super().from_config(cfg, input_shape)
        head = cfg.MODEL.ROI_BOX_HEAD
        ret.update(
            focal_gamma=head.FOCAL_GAMMA,
            focal_alpha=resolve_focal_alpha(
                head.FOCAL_ALPHA,
                cfg.MODEL.ROI_HEADS.NUM_CLASSES,
                default=head.FOCAL_LOSS_ALPHA,
                dataset_names=cfg.DATASETS.TRAIN,
                power=head.FOCAL_ALPHA_AUTO_POWER,
            ),
            prior_prob=head.FOCAL_PRIOR_PROB,
        )
        return ret

    @staticmethod
    def _with_placeholder(x: torch.Tensor) -> torch.Tensor:
        """Append the zero (K + 1)-th column detectron2's helpers expect and ignore."""
        return F.pad(x, (0, 1))

    def losses(self, predictions, proposals):
        """
        Args:
            predictions: (scores (R, K) logits, deltas (R, K*4 or 4)) from :meth:`forward`.
            proposals: per-image Instances with proposal_boxes, gt_boxes (XYXY_ABS), gt_classes.

        Returns:
            dict with "loss_cls" (focal) and "loss_box_reg" (detectron2's).
        """
        scores, deltas = predictions
        # detectron2 logs accuracy and computes the box loss; its cross-entropy is replaced.
        losses = super().losses((self._with_placeholder(scores), deltas), proposals)
        gt_classes = (
            cat([p.gt_classes for p in proposals], dim=0)
            if len(proposals)
            else torch.empty(0, dtype=torch.long, device=scores.device)
        )
        target = F.one_hot(gt_classes, self.num_classes + 1)[:, :-1].to(scores.dtype)
        alpha = self.focal_alpha if self.focal_alpha is not None else self._alpha.to(scores.dtype)
        loss_cls = sigmoid_focal_loss(scores, target, alpha, self.focal_gamma, "sum")
        losses["loss_cls"] = loss_cls / max(gt_classes.numel(), 1) * self.loss_weight.get(
            "loss_cls", 1.0
        )
        return losses

    def predict_probs(self, predictions, proposals):
        """Per-class sigmoid scores, each (Ri, K + 1) with a zero placeholder last column."""
        scores, _ = predictions
        num_inst_per_image = [len(p) for p in proposals]
        probs = self._with_placeholder(torch.sigmoid(scores))
        return probs.split(num_inst_per_image, dim=0)


@ROI_HEADS_REGISTRY.register()
class FocalROIHeads(StandardROIHeads):
    """:class:`StandardROIHeads` with :class:`FocalFastRCNNOutputLayers` as box predictor."""

    @classmethod
    def _init_box_head(cls, cfg, input_shape):
        ret = super()._init_box_head(cfg, input_shape)
        ret["box_predictor"] = FocalFastRCNNOutputLayers(cfg, ret["box_head"].output_shape)
        return ret

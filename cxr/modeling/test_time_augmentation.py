"""Test-time augmentation for any cxr detector: several scales (optionally flips), merged by
weighted boxes fusion.

The views come from detectron2's ``DatasetMapperTTA`` (the test input resized to each
``TEST.AUG.MIN_SIZES`` short edge, flipped when ``TEST.AUG.FLIP``); each view's detections are
mapped back to the original image with the inverse of its transforms, then merged per class by
``TEST.AUG.MERGE`` (WBF by default, :func:`cxr.ensemble.fuse_boxes`), and the
``TEST.DETECTIONS_PER_IMAGE`` best are kept. One view has nothing to merge: its detections are
kept as the model gave them (those scored below ``TEST.AUG.SKIP_SCORE`` dropped), so a one-view
TTA at the test size gives the single-view detections.
"""
from __future__ import annotations

import logging
import math

import numpy as np
import torch
from torch import nn

from detectron2.config import configurable
from detectron2.modeling.test_time_augmentation import DatasetMapperTTA
from detectron2.structures import Boxes, Instances

from ..ensemble import fuse_boxes

__all__ = ["DetectorWithTTA", "build_tta_model", "tta_sizes"]

logger = logging.getLogger(__name__)


def tta_sizes(cfg) -> tuple[list[int], int]:
    """(short-edge sizes, max size) of the views: ``TEST.AUG.MIN_SIZES`` / ``MAX_SIZE``, or, when
    MIN_SIZES is empty, ``INPUT.MIN_SIZE_TEST`` / ``MAX_SIZE_TEST`` times ``TEST.AUG.SCALES``."""
    aug = cfg.TEST.AUG
    if aug.MIN_SIZES:
        return [int(s) for s in aug.MIN_SIZES], int(aug.MAX_SIZE)
    sizes = [int(round(cfg.INPUT.MIN_SIZE_TEST * s)) for s in aug.SCALES]
    return sizes, int(math.ceil(cfg.INPUT.MAX_SIZE_TEST * max(aug.SCALES)))


class DetectorWithTTA(nn.Module):
    """Wraps a detector with detectron2's model interface (``model(batched_inputs)`` ->
    ``[{"instances": Instances}]``, boxes XYXY_ABS in the ``height`` x ``width`` of each input);
    same interface, detections merged over the views."""

    @configurable
    def __init__(
        self,
        *,
        model: nn.Module,
        min_sizes: list[int],
        max_size: int,
        flip: bool = False,
        merge: str = "wbf",
        iou_thresh: float = 0.55,
        skip_score: float = 0.0,
        max_detections: int = 100,
    ):
        """
        Args:
            model: the detector (eval mode), e.g. CXRRetinaNet or an ONNX Runtime model.
            min_sizes: short-edge sizes of the views.
            max_size: longest side of any view.
            flip: add a horizontally flipped view per size.
            merge: fusion method name ("wbf", "nms", "soft-nms", "nmw").
            iou_thresh: IoU at which boxes of one class merge.
            skip_score: boxes scored below this are ignored.
            max_detections: detections kept per image after merging.
        """
        super().__init__()
        self.model = model
        self.views = DatasetMapperTTA(min_sizes=list(min_sizes), max_size=max_size, flip=flip)
        self.merge, self.iou_thresh, self.skip_score = merge, iou_thresh, skip_score
        self.max_detections = max_detections

    @classmethod
    def from_config(cls, cfg, model: nn.Module):
        sizes, max_size = tta_sizes(cfg)
        return {
            "model": model,
            "min_sizes": sizes,
            "max_size": max_size,
            "flip": cfg.TEST.AUG.FLIP,
            "merge": cfg.TEST.AUG.MERGE,
            "iou_thresh": cfg.TEST.AUG.IOU_THRESH,
            "skip_score": cfg.TEST.AUG.SKIP_SCORE,
            "max_detections": cfg.TEST.DETECTIONS_PER_IMAGE,
        }

    def forward(self, batched_inputs: list[dict]) -> list[dict]:
        return [{"instances": self._one(x)} for x in batched_inputs]

    def _one(self, inputs: dict) -> Instances:
        h = inputs.get("height", inputs["image"].shape[1])
        w = inputs.get("width", inputs["image"].shape[2])
        views = self.views(dict(inputs, height=h, width=w))
        for v in views:  # detections in each view's own pixels, mapped back below
            v["height"], v["width"] = v["image"].shape[1:]
        boxes, scores, labels = [], [], []
        with torch.no_grad():
            outputs = self.model([{k: v[k] for k in ("image", "height", "width")} for v in views])
        for v, out in zip(views, outputs):
            inst = out["instances"].to("cpu")
            boxes.append(v["transforms"].inverse().apply_box(inst.pred_boxes.tensor.numpy()))
            scores.append(inst.scores.numpy())
            labels.append(inst.pred_classes.numpy())
        if len(views) == 1:  # nothing to merge: the view's own detections, best first
            b, s, c = boxes[0], scores[0], labels[0]
            order = np.argsort(-s, kind="stable")
            keep = order[s[order] >= self.skip_score]
            b, s, c = b[keep], s[keep], c[keep]
        else:
            b, s, c = fuse_boxes(
                boxes, scores, labels, scale=(w, h), method=self.merge, iou_thr=self.iou_thresh,
                skip_box_thr=self.skip_score,
            )  # fmt: skip
        b, s, c = b[: self.max_detections], s[: self.max_detections], c[: self.max_detections]
        b[:, 0::2] = np.clip(b[:, 0::2], 0, w)
        b[:, 1::2] = np.clip(b[:, 1::2], 0, h)
        return Instances(
            (h, w),
            pred_boxes=Boxes(torch.as_tensor(b, dtype=torch.float32)),
            scores=torch.as_tensor(s, dtype=torch.float32),
            pred_classes=torch.as_tensor(c, dtype=torch.int64),
        )


def build_tta_model(cfg, model: nn.Module) -> nn.Module:
    """``model`` wrapped in :class:`DetectorWithTTA` when ``TEST.AUG.ENABLED``, else ``model``."""
    if not cfg.TEST.AUG.ENABLED:
        return model
    sizes, max_size = tta_sizes(cfg)
    logger.info("Test-time augmentation: sizes %s (max %d), flip %s, merged by %s",
                sizes, max_size, cfg.TEST.AUG.FLIP, cfg.TEST.AUG.MERGE)  # fmt: skip
    return DetectorWithTTA(cfg, model).eval()

"""Mixup, CutMix and Mosaic for detection, with box bookkeeping.

:class:`MixMapper` wraps the training mapper (the trainer's train loader does so through
:func:`build_mix_mapper` when any ``INPUT.MIX.*_PROB`` is > 0): it maps the sampled record as
usual, then with the configured probabilities draws partner records from ``DATASETS.TRAIN``,
maps them the same way and combines them. Images are the mapped uint8 CHW tensors (already
resized); boxes are ``gt_boxes`` in those pixels (XYXY_ABS). The combining functions are pure
and take their random draws as arguments:

- :func:`mixup`: ``lam * a + (1 - lam) * b`` (both zero-padded at the bottom / right to the
  larger size), every box of both kept (``lam ~ Beta(MIXUP_ALPHA, MIXUP_ALPHA)``).
- :func:`cutmix`: the rectangle ``rect`` of ``b`` (b zero-padded / cropped to a's size) pasted
  into ``a``. A box of ``a`` stays (unchanged) while the uncovered part of its area is at least
  ``min_visibility``; a box of ``b`` is clipped to ``rect`` and stays when the clipped part keeps
  at least ``min_visibility`` of its area.
- :func:`mosaic`: four images at half scale around a centre ``(xc, yc)`` of a's frame: a's
  bottom-right corner at the centre (top-left quadrant), b's bottom-left (top-right quadrant),
  c's top-right (bottom-left), d's top-left (bottom-right). Boxes are halved, shifted, clipped to
  their quadrant and kept when at least ``min_visibility`` of their (halved) area remains.
"""

from __future__ import annotations

import logging
from typing import Callable, Sequence

import cv2
import numpy as np
import torch
from detectron2.structures import Boxes, Instances

__all__ = ["MixMapper", "build_mix_mapper", "cutmix", "mixup", "mosaic"]

logger = logging.getLogger(__name__)

Sample = tuple[np.ndarray, np.ndarray, np.ndarray]  # (C, H, W) uint8, (n, 4) XYXY, (n,) classes


def _area(b: np.ndarray) -> np.ndarray:
    return np.clip(b[:, 2] - b[:, 0], 0, None) * np.clip(b[:, 3] - b[:, 1], 0, None)


def _clip(b: np.ndarray, rect: Sequence[float]) -> np.ndarray:
    x0, y0, x1, y1 = rect
    return np.stack([np.clip(b[:, 0], x0, x1), np.clip(b[:, 1], y0, y1),
                     np.clip(b[:, 2], x0, x1), np.clip(b[:, 3], y0, y1)], 1)  # fmt: skip


def _fit(img: np.ndarray, h: int, w: int) -> np.ndarray:
    """``img`` (C, H, W) zero-padded or cropped at the bottom / right to (C, h, w)."""
    out = np.zeros((img.shape[0], h, w), img.dtype)
    hh, ww = min(h, img.shape[1]), min(w, img.shape[2])
    out[:, :hh, :ww] = img[:, :hh, :ww]
    return out


def mixup(a: Sample, b: Sample, lam: float) -> Sample:
    """Blend two samples (see the module docstring); the result has the larger height/width."""
    h, w = max(a[0].shape[1], b[0].shape[1]), max(a[0].shape[2], b[0].shape[2])
    img = lam * _fit(a[0], h, w).astype(np.float32) + (1 - lam) * _fit(b[0], h, w)
    img = np.clip(np.rint(img), 0, 255).astype(np.uint8)
    return img, np.concatenate([a[1], b[1]]).reshape(-1, 4), np.concatenate([a[2], b[2]])


def cutmix(a: Sample, b: Sample, rect: Sequence[int], min_visibility: float) -> Sample:
    """Paste ``b``'s ``rect`` (x0, y0, x1, y1 integer pixels of a's frame) into ``a``."""
    x0, y0, x1, y1 = (int(v) for v in rect)
    img = a[0].copy()
    img[:, y0:y1, x0:x1] = _fit(b[0], *a[0].shape[1:])[:, y0:y1, x0:x1]
    area_a = _area(a[1])
    covered = _area(_clip(a[1], (x0, y0, x1, y1)))
    keep_a = (area_a - covered) >= min_visibility * area_a
    clipped = _clip(b[1], (x0, y0, x1, y1))
    keep_b = (_area(clipped) >= min_visibility * _area(b[1])) & (_area(clipped) > 0)
    boxes = np.concatenate([a[1][keep_a], clipped[keep_b]]).reshape(-1, 4)
    return img, boxes, np.concatenate([a[2][keep_a], b[2][keep_b]])


def mosaic(samples: Sequence[Sample], center: tuple[float, float], min_visibility: float) -> Sample:
    """Tile four samples at half scale around ``center`` (pixels of the first sample's frame)."""
    c, h, w = samples[0][0].shape
    xc, yc = int(round(center[0])), int(round(center[1]))
    hh, hw = h // 2, w // 2
    canvas = np.zeros((c, h, w), np.uint8)
    quadrants = [(0, 0, xc, yc), (xc, 0, w, yc), (0, yc, xc, h), (xc, yc, w, h)]
    offsets = [(xc - hw, yc - hh), (xc, yc - hh), (xc - hw, yc), (xc, yc)]
    boxes, classes = [], []
    for (img, bx, cl), (qx0, qy0, qx1, qy1), (ox, oy) in zip(samples, quadrants, offsets):
        half = cv2.resize(img.transpose(1, 2, 0), (hw, hh), interpolation=cv2.INTER_AREA)
        half = half.reshape(hh, hw, -1).transpose(2, 0, 1)
        # the part of the half image that falls inside the quadrant
        sx0, sy0 = max(qx0 - ox, 0), max(qy0 - oy, 0)
        sx1, sy1 = min(qx1 - ox, hw), min(qy1 - oy, hh)
        if sx1 > sx0 and sy1 > sy0:
            canvas[:, oy + sy0 : oy + sy1, ox + sx0 : ox + sx1] = half[:, sy0:sy1, sx0:sx1]
        moved = bx * [hw / w, hh / h, hw / w, hh / h] + [ox, oy, ox, oy]
        clipped = _clip(moved, (qx0, qy0, qx1, qy1))
        keep = (_area(clipped) >= min_visibility * _area(moved)) & (_area(clipped) > 0)
        boxes.append(clipped[keep])
        classes.append(cl[keep])
    return canvas, np.concatenate(boxes).reshape(-1, 4), np.concatenate(classes)


def _sample(d: dict) -> Sample:
    inst = d["instances"]
    return (d["image"].numpy(), inst.gt_boxes.tensor.numpy().astype(np.float64),
            inst.gt_classes.numpy())  # fmt: skip


class MixMapper:
    """Training mapper applying :func:`mosaic`, :func:`cutmix` or :func:`mixup` (tried in that
    order with their probabilities, at most one per image) on top of a base mapper.

    Args:
        base: the per-record training mapper (returns ``image`` and ``instances``, or None).
        dataset: the training records partners are drawn from (uniformly, np.random).
        mixup_prob, cutmix_prob, mosaic_prob: probabilities per sampled image.
        mixup_alpha: Beta(alpha, alpha) of the mixup weight.
        cutmix_alpha: Beta(alpha, alpha) of the kept fraction of ``a`` in CutMix.
        min_visibility: share of a box's area that must stay visible.
    """

    def __init__(
        self,
        base: Callable[[dict], dict | None],
        dataset: Sequence[dict],
        *,
        mixup_prob: float = 0.0,
        cutmix_prob: float = 0.0,
        mosaic_prob: float = 0.0,
        mixup_alpha: float = 1.5,
        cutmix_alpha: float = 1.0,
        min_visibility: float = 0.3,
    ):
        for name, p in (("MIXUP", mixup_prob), ("CUTMIX", cutmix_prob), ("MOSAIC", mosaic_prob)):
            if not 0.0 <= p <= 1.0:
                raise ValueError(f"INPUT.MIX.{name}_PROB must be in [0, 1], got {p}")
        if not dataset:
            raise ValueError("MixMapper needs a non-empty training dataset to draw partners from")
        self.base, self.dataset = base, list(dataset)
        self.probs = (mosaic_prob, cutmix_prob, mixup_prob)
        self.mixup_alpha, self.cutmix_alpha = mixup_alpha, cutmix_alpha
        self.min_visibility = min_visibility

    def _partners(self, n: int) -> list[Sample]:
        out = []
        for _ in range(100 * n):  # skip records the base mapper drops (unreadable files)
            d = self.base(self.dataset[np.random.randint(len(self.dataset))])
            if d is not None:
                out.append(_sample(d))
                if len(out) == n:
                    return out
        raise RuntimeError(f"MixMapper: no readable partner image after {100 * n} draws")

    def _combine(self, a: Sample) -> tuple[Sample, str] | None:
        mosaic_p, cutmix_p, mixup_p = self.probs
        r = np.random.rand(3)
        _, h, w = a[0].shape
        if r[0] < mosaic_p:
            centre = (np.random.uniform(0.25, 0.75) * w, np.random.uniform(0.25, 0.75) * h)
            return mosaic([a] + self._partners(3), centre, self.min_visibility), "mosaic"
        if r[1] < cutmix_p:
            keep = np.random.beta(self.cutmix_alpha, self.cutmix_alpha)
            rw, rh = int(w * np.sqrt(1 - keep)), int(h * np.sqrt(1 - keep))
            x0, y0 = np.random.randint(0, w - rw + 1), np.random.randint(0, h - rh + 1)
            rect = (x0, y0, x0 + rw, y0 + rh)
            return cutmix(a, self._partners(1)[0], rect, self.min_visibility), "cutmix"
        if r[2] < mixup_p:
            lam = float(np.random.beta(self.mixup_alpha, self.mixup_alpha))
            return mixup(a, self._partners(1)[0], lam), "mixup"
        return None

    def __call__(self, dataset_dict: dict) -> dict | None:
        d = self.base(dataset_dict)
        if d is None or "instances" not in d:
            return d
        out = self._combine(_sample(d))
        if out is None:
            return d
        (img, boxes, classes), how = out
        inst = Instances(img.shape[1:])
        inst.gt_boxes = Boxes(torch.as_tensor(boxes, dtype=torch.float32).reshape(-1, 4))
        inst.gt_classes = torch.as_tensor(classes, dtype=torch.int64)
        d["image"], d["instances"], d["mix"] = (
            torch.from_numpy(np.ascontiguousarray(img)),
            inst,
            how,
        )
        return d


def build_mix_mapper(cfg, base: Callable[[dict], dict | None], dataset: Sequence[dict]):
    """``base`` wrapped in a :class:`MixMapper` from ``cfg.INPUT.MIX``, or ``base`` itself when
    every probability is 0 (training loaders only; evaluation never mixes)."""
    m = cfg.INPUT.MIX
    if max(m.MIXUP_PROB, m.CUTMIX_PROB, m.MOSAIC_PROB) <= 0:
        return base
    logger.info("Training images mixed: mosaic %.2f, cutmix %.2f, mixup %.2f",
                m.MOSAIC_PROB, m.CUTMIX_PROB, m.MIXUP_PROB)  # fmt: skip
    return MixMapper(
        base, dataset, mixup_prob=m.MIXUP_PROB, cutmix_prob=m.CUTMIX_PROB,
        mosaic_prob=m.MOSAIC_PROB, mixup_alpha=m.MIXUP_ALPHA, cutmix_alpha=m.CUTMIX_ALPHA,
        min_visibility=m.MIN_VISIBILITY,
    )  # fmt: skip

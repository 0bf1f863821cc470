"""``EfficientDetAnchorGenerator``: EfficientDet's anchors in detectron2's anchor interface."""
from __future__ import annotations

import torch

from detectron2.config import configurable
from detectron2.layers import ShapeSpec
from detectron2.modeling.anchor_generator import ANCHOR_GENERATOR_REGISTRY, DefaultAnchorGenerator

__all__ = ["EfficientDetAnchorGenerator"]


@ANCHOR_GENERATOR_REGISTRY.register()
class EfficientDetAnchorGenerator(DefaultAnchorGenerator):
    """Anchors of EfficientDet (Tan et al. 2020; ``effdet.anchors.Anchors``), XYXY_ABS pixels.

    At a level of stride ``s``, for octave ``o`` in ``0..num_scales-1`` and each ``(w, h)`` of
    ``wh_ratios``, a box ``anchor_scale * s * 2**(o / num_scales)`` times ``w`` wide and ``h``
    high, centred at ``((x + offset) * s, (y + offset) * s)``. Per location the anchor index is
    ``o * len(wh_ratios) + j``, the order of effdet's (and of detectron2's size-major) anchors, so
    a head's ``A * K`` output channels mean the same in both.
    """

    @configurable
    def __init__(
        self,
        *,
        strides: list[int],
        anchor_scale: float = 4.0,
        num_scales: int = 3,
        wh_ratios: list[list[float]] = ((1.0, 1.0), (1.4, 0.7), (0.7, 1.4)),
        offset: float = 0.5,
    ):
        """
        Args:
            strides: stride of each feature level, in pixels.
            anchor_scale: base anchor size in units of the stride.
            num_scales: octave scales per level.
            wh_ratios: (width, height) multipliers of the base size.
            offset: anchor centre within its cell, in units of the stride (0.5: centre).
        """
        octaves = [2 ** (o / num_scales) for o in range(num_scales)]
        sizes = [[anchor_scale * s * m for m in octaves] for s in strides]
        super().__init__(
            sizes=sizes,
            aspect_ratios=[[tuple(map(float, wh)) for wh in wh_ratios]],
            strides=strides,
            offset=offset,
        )

    @classmethod
    def from_config(cls, cfg, input_shape: list[ShapeSpec]):
        g = cfg.MODEL.ANCHOR_GENERATOR
        return {
            "strides": [x.stride for x in input_shape],
            "anchor_scale": g.ANCHOR_SCALE,
            "num_scales": g.NUM_SCALES,
            "wh_ratios": g.WH_RATIOS,
            "offset": g.OFFSET,
        }

    def generate_cell_anchors(self, sizes, aspect_ratios) -> torch.Tensor:
        """(len(sizes) * len(pairs), 4) XYXY boxes centred at 0; ``aspect_ratios``: (w, h) pairs."""
        anchors = []
        for size in sizes:
            for w, h in aspect_ratios:
                hw, hh = size * w / 2.0, size * h / 2.0
                anchors.append([-hw, -hh, hw, hh])
        return torch.tensor(anchors)

"""Config keys of :mod:`cxr.data.mix` (Mixup / CutMix / Mosaic for detection); each commented."""

from detectron2.config import CfgNode as CN

from ..config import CONFIG_REGISTRY


@CONFIG_REGISTRY.register_as("mix")
def add_mix_config(cfg) -> None:
    """Add ``INPUT.MIX`` to ``cfg`` in place."""
    cfg.INPUT.MIX = CN()
    # Per training image, the chance of a 2x2 Mosaic with three random training images at half
    # scale (tried first).
    cfg.INPUT.MIX.MOSAIC_PROB = 0.0
    # Chance of CutMix: a rectangle of another training image pasted in (tried second).
    cfg.INPUT.MIX.CUTMIX_PROB = 0.0
    # Chance of Mixup: a weighted blend with another training image, all boxes kept (third).
    cfg.INPUT.MIX.MIXUP_PROB = 0.0
    # Mixup weight lam ~ Beta(MIXUP_ALPHA, MIXUP_ALPHA) (1.5 as in "Bag of Freebies").
    cfg.INPUT.MIX.MIXUP_ALPHA = 1.5
    # CutMix: the share of the image kept ~ Beta(CUTMIX_ALPHA, CUTMIX_ALPHA).
    cfg.INPUT.MIX.CUTMIX_ALPHA = 1.0
    # A box covered (CutMix) or cut (CutMix / Mosaic) so that less than this share of its area
    # stays visible is dropped.
    cfg.INPUT.MIX.MIN_VISIBILITY = 0.3

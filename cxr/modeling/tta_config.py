"""Config keys of test-time augmentation (:mod:`cxr.modeling.test_time_augmentation`).

detectron2 already defines ``TEST.AUG.ENABLED``, ``MIN_SIZES``, ``MAX_SIZE`` and ``FLIP``; cxr
changes two of their defaults (below) and adds the scale factors and the merge rule.
"""
from __future__ import annotations

from ..config import CONFIG_REGISTRY


@CONFIG_REGISTRY.register_as("tta")
def add_tta_config(cfg) -> None:
    """Add / re-default the ``TEST.AUG`` keys in place."""
    # Run every test image at several scales (and flips) and merge the detections
    # (train_net.py --eval-only, tools/eval.py, tools/predict.py). Off by default.
    cfg.TEST.AUG.ENABLED = False
    # Short-edge sizes of the views. Empty (cxr's default): INPUT.MIN_SIZE_TEST x SCALES,
    # with MAX_SIZE = INPUT.MAX_SIZE_TEST x max(SCALES).
    cfg.TEST.AUG.MIN_SIZES = ()
    # Scale factors of the views when MIN_SIZES is empty.
    cfg.TEST.AUG.SCALES = (0.8, 1.0, 1.2)
    # Horizontal flips add a mirrored view per size. Off: a flip swaps laterality (the heart's
    # side), which chest models learn; detectron2's default is on.
    cfg.TEST.AUG.FLIP = False
    # How the views' detections are merged: "wbf", "nms", "soft-nms" or "nmw" (cxr.ensemble).
    cfg.TEST.AUG.MERGE = "wbf"
    # IoU at which boxes of one class from different views are merged.
    cfg.TEST.AUG.IOU_THRESH = 0.55
    # Boxes scored below this in a view are ignored by the merge.
    cfg.TEST.AUG.SKIP_SCORE = 0.0

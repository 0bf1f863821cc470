"""Merging detections of several models or test-time views: WBF, NMS, soft-NMS, NMW through
``ensemble-boxes`` (one implementation for model ensembles, TTA and VinDr reader fusion)."""
from .fusion import BOX_FUSION_REGISTRY, fuse_boxes  # noqa: F401

"""ROI heads registered in detectron2's ROI_HEADS_REGISTRY."""
from .focal_roi_heads import FocalFastRCNNOutputLayers, FocalROIHeads  # noqa: F401

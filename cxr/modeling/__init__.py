"""Modeling: backbones, meta-architectures and ROI heads registered into detectron2.

``import cxr`` registers ``build_timm_fpn_backbone``, ``build_timm_bifpn_backbone`` and
``build_efficientnet_bifpn_backbone`` (BACKBONE_REGISTRY), ``EfficientDetAnchorGenerator``
(ANCHOR_GENERATOR_REGISTRY), ``CXRRetinaNet`` (META_ARCH_REGISTRY) and ``FocalROIHeads``
(ROI_HEADS_REGISTRY).
"""
from . import classifier_config, config, tta_config  # noqa: F401  (register config keys)
from .anchor_generator import EfficientDetAnchorGenerator  # noqa: F401
from .backbone import *  # noqa: F401,F403
from .losses import class_balanced_alpha, resolve_focal_alpha, sigmoid_focal_loss  # noqa: F401
from .meta_arch import *  # noqa: F401,F403
from .roi_heads import *  # noqa: F401,F403

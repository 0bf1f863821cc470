"""Backbones registered in detectron2's BACKBONE_REGISTRY."""
from .efficientnet_bifpn import (  # noqa: F401
    BIFPN_PRESETS,
    BiFPN,
    BiFPNBackbone,
    EfficientNetBiFPN,
    bifpn_settings,
    build_efficientnet_bifpn_backbone,
    build_timm_bifpn_backbone,
)
from .timm_trunk import (  # noqa: F401
    PretrainedWeightsUnavailable,
    TimmBackbone,
    build_timm_fpn_backbone,
    create_timm_trunk,
)

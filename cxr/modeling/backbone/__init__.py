"""Backbones registered in detectron2's BACKBONE_REGISTRY."""
from .efficientnet_bifpn import (  # noqa: F401
    BIFPN_PRESETS,
    BiFPN,
    EfficientNetBiFPN,
    bifpn_settings,
    build_efficientnet_bifpn_backbone,
)

# LazyConfig twin of Base-EfficientDet.yaml: timm EfficientNet trunk + BiFPN (cxr) + EfficientDet
# head on CXRRetinaNet; the scaling step comes from model.bifpn.preset.
from .base_cxr import dataloader, lr_multiplier, model, optimizer, train

model.backbone.name = "build_efficientnet_bifpn_backbone"
model.bifpn = dict(preset="D0", norm="BN")
model.retinanet.head_name = "EfficientDetHead"
model.retinanet.num_convs = 3  # EfficientDet D0-D2 box/class net depth
model.retinanet.norm = "BN"  # one BN per level and conv, weights shared across levels
# EfficientDet's anchors: at stride s, 4 * s * 2^(o/3), aspect ratios (1, 1), (1.4, 0.7), (0.7, 1.4).
model.anchor_generator.name = "EfficientDetAnchorGenerator"
model.anchor_generator.anchor_scale = 4.0
model.anchor_generator.offset = 0.5
optimizer.weight_decay = 0.00004  # EfficientDet's

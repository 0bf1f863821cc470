# LazyConfig twin of efficientdet_d0.yaml: EfficientDet-D0 style (EfficientNet-B0 + 3x BiFPN-64,
# 3-conv head), 512 px, NIH boxes.
from ..base_efficientdet import dataloader, lr_multiplier, model, optimizer, train

model.bifpn.preset = "D0"
train.output_dir = "output/nih/efficientdet_d0"

# LazyConfig twin of retinanet_R_50_FPN.yaml: RetinaNet, ResNet-50 + FPN (BN backbone, GN FPN,
# BN head), from scratch, NIH ChestX-ray14 boxes.
from ..base_cxr import dataloader, lr_multiplier, model, optimizer, train

train.output_dir = "output/nih/retinanet_R_50_FPN"

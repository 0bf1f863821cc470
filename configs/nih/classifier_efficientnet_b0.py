# LazyConfig twin of classifier_efficientnet_b0.yaml: stage 1 of two-stage training, an
# EfficientNet-B0 multi-label classifier (14 findings) on the ChestX-ray14 image labels, 2-layer
# MLP head, BCE; the trunk is EfficientDet-D0's.
from ..base_efficientdet import dataloader, lr_multiplier, model, optimizer, train

model.meta_architecture = "CXRClassifier"
model.classifier = dict(num_classes=14, head="mlp", loss="bce")
model.ema = dict(enabled=True)
dataloader.train.dataset.names = ["nih_cls_train"]
dataloader.test.dataset.names = ["nih_cls_val"]
dataloader.train.mapper.input.mapper = "ClassificationMapper"
dataloader.train.mapper.input.albumentations = dict(preset="light")
dataloader.train.sampler.sampler_train = "TrainingSampler"
dataloader.train.aspect_ratio_grouping = False  # square films: packed batches (cxr.data.loader)
dataloader.train.total_batch_size = 32
optimizer.lr = 0.02
lr_multiplier.name = "WarmupCosineLR"
train.max_iter = 20000
train.checkpointer.period = 2000
train.eval_period = 2000
train.test.best_metric = "cls/auroc_macro"
train.output_dir = "output/nih/classifier_efficientnet_b0"

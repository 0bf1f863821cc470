# LazyConfig twin of retinanet_demo.yaml (`make demo`): RetinaNet on a slim ResNet-50 + FPN
# (1/4 width, 2.2 M parameters), from scratch, on the phantom NIH set at 224 px.
from ..base_cxr import dataloader, lr_multiplier, model, optimizer, train

model.resnets.width_per_group = 16
model.resnets.stem_out_channels = 32
model.resnets.res2_out_channels = 64
model.fpn.out_channels = 64
# One size per level (4 x stride at 224-256 px input) x 3 aspect ratios = 3 anchors/location.
model.anchor_generator.sizes = [[16], [32], [64], [128], [256]]
model.retinanet.num_convs = 2
model.retinanet.channels_last = True  # NHWC weights and batches: faster CPU convolutions

dataloader.train.dataset.names = ["phantom_nih_train"]
dataloader.test.dataset.names = ["phantom_nih_val"]
dataloader.train.num_workers = 1
# Class balance: images of rarer classes (Nodule, Mass) are repeated (LVIS-style factors).
dataloader.train.sampler = dict(sampler_train="RepeatFactorTrainingSampler", repeat_threshold=0.3)
dataloader.train.mapper.input.update(
    min_size_train=[224], max_size_train=224, min_size_test=224, max_size_test=224
)

optimizer.lr = 0.05  # high LR with BN; warmup then cosine to 0
lr_multiplier.name = "WarmupCosineLR"
lr_multiplier.warmup_iters = 100
train.max_iter = 2000
train.checkpointer.period = 500
train.eval_period = 500
train.output_dir = "output/demo"

# LazyConfig twin of Base-CXR.yaml: X-ray defaults on top of detectron2's, in detectron2's
# LazyConfig layout (model, dataloader, optimizer, lr_multiplier, train). Each LazyCall argument
# is the lower-case name of the CfgNode key it sets (cxr.engine.lazy); children import these
# five objects and change what differs.
from detectron2.config import LazyCall as L
from detectron2.data import get_detection_dataset_dicts

from cxr.engine.lazy import (
    cxr_lr_multiplier,
    cxr_mapper,
    cxr_model,
    cxr_optimizer,
    cxr_test_loader,
    cxr_train_loader,
)

model = L(cxr_model)(
    # detectron2's RetinaNet + per-class focal alpha and a swappable head (cxr.modeling).
    meta_architecture="CXRRetinaNet",
    # Chest films are grayscale replicated to 3 channels: one mean/std replicated per channel.
    pixel_mean=[128.0, 128.0, 128.0],
    pixel_std=[64.0, 64.0, 64.0],
    backbone=dict(name="build_retinanet_resnet_fpn_backbone", freeze_at=0),
    # From-scratch training needs real BN/GN (FrozenBN + random init diverges).
    resnets=dict(depth=50, out_features=["res3", "res4", "res5"], norm="BN", stride_in_1x1=False),
    fpn=dict(in_features=["res3", "res4", "res5"], norm="GN"),
    # 3 scales per octave (2^0, 2^(1/3), 2^(2/3)) per level.
    anchor_generator=dict(
        sizes=[[32, 40, 50], [64, 80, 101], [128, 161, 203], [256, 322, 406], [512, 645, 812]]
    ),
    retinanet=dict(
        num_classes=8,  # NIH ChestX-ray14 box classes
        iou_thresholds=[0.4, 0.5],
        iou_labels=[0, -1, 1],
        smooth_l1_loss_beta=0.1,
        norm="BN",  # BN kept separately per FPN level
    ),
    roi_heads=dict(num_classes=8),
)

dataloader = dict(
    train=L(cxr_train_loader)(
        # Lesion-free films are the negatives that specificity is measured on: keep them.
        dataset=L(get_detection_dataset_dicts)(names=["nih_bbox_train"], filter_empty=False),
        mapper=L(cxr_mapper)(
            is_train=True,
            input=dict(
                min_size_train=[512],
                max_size_train=512,
                min_size_test=512,
                max_size_test=512,
                format="BGR",
                # Horizontal flips swap laterality (heart on the wrong side); off by default.
                random_flip="none",
            ),
        ),
        sampler=dict(),  # DATALOADER.* (SAMPLER_TRAIN, REPEAT_THRESHOLD, ...)
        total_batch_size=8,
        aspect_ratio_grouping=True,  # False: batches formed and packed in the workers
        num_workers=2,
        seed="${train.seed}",
    ),
    test=L(cxr_test_loader)(
        dataset=L(get_detection_dataset_dicts)(names=["nih_bbox_val"], filter_empty=False),
        mapper=L(cxr_mapper)(is_train=False, input="${dataloader.train.mapper.input}"),
    ),
)

optimizer = L(cxr_optimizer)(
    model=None,  # set to the model before instantiate(optimizer)
    lr=0.01,
    weight_decay=0.0001,
    clip_gradients=dict(enabled=True, clip_type="norm", clip_value=10.0),
)

lr_multiplier = L(cxr_lr_multiplier)(
    max_iter="${train.max_iter}",
    name="WarmupMultiStepLR",
    steps=[6000, 8000],
    warmup_iters=500,
)

train = dict(
    output_dir="./output",
    init_checkpoint="",
    max_iter=9000,
    eval_period=1000,
    checkpointer=dict(period=1000),
    device="cuda",  # falls back to CPU when CUDA is absent
    seed=-1,
    test=dict(detections_per_image=100),  # TEST.*
    cxr=dict(),  # CXR.*
    mlflow=dict(enabled=False),  # CXR.MLFLOW.*: off by default
)

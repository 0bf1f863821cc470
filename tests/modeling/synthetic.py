"""Synthetic detectron2 batches and small-model overrides shared by the modeling tests."""
from __future__ import annotations

import torch

from benchmarks.inference import num_classes_of  # noqa: F401  (re-exported for tests)
from detectron2.structures import Boxes, Instances

# Small inputs and light sampling so that every config trains a step in about a second on CPU.
SMALL_OPTS = [
    "MODEL.DEVICE", "cpu",
    "INPUT.MIN_SIZE_TRAIN", "(64,)", "INPUT.MAX_SIZE_TRAIN", "64",
    "INPUT.MIN_SIZE_TEST", "64", "INPUT.MAX_SIZE_TEST", "64",
    "SOLVER.IMS_PER_BATCH", "2",
    "MODEL.RPN.POST_NMS_TOPK_TRAIN", "64", "MODEL.RPN.POST_NMS_TOPK_TEST", "64",
    "MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE", "32",
    # random trunks: the zoo's pretrained trunk files are fetched by users (docs/pretrained.md)
    "MODEL.TIMM.WEIGHTS", "",
]  # fmt: skip


def synthetic_batch(
    num_classes: int, size: int = 64, seed: int = 0, channels: int = 3
) -> list[dict]:
    """Two CHW float images: the first with two boxes (XYXY_ABS), the second without boxes."""
    g = torch.Generator().manual_seed(seed)
    batch = []
    two = (torch.tensor([[0.08, 0.1, 0.47, 0.55], [0.55, 0.23, 0.94, 0.7]]) * size).tolist()
    for boxes in (two, []):
        image = torch.rand(channels, size, size, generator=g) * 255
        inst = Instances((size, size))
        inst.gt_boxes = Boxes(torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4))
        inst.gt_classes = torch.arange(len(boxes), dtype=torch.long) % num_classes
        batch.append({"image": image, "instances": inst, "height": size, "width": size})
    return batch

"""Benchmark task "inference": a detector from --config-file, eval mode, batch 1, no grad.

Reports ms/image at the config's test resolution (square ``INPUT.MAX_SIZE_TEST``), parameter
count, GFLOPs (fvcore's FlopCountAnalysis: one multiply-add counts as one flop, so these are
GMACs, as EfficientDet's paper counts FLOPs) and peak memory.
"""
from __future__ import annotations

import argparse
import logging
import warnings

import torch

from cxr.config import load_config
from detectron2.modeling import build_model
from detectron2.structures import Boxes, Instances

from .timing import BENCHMARK_REGISTRY, peak_rss_mib, result_row, time_repeated

__all__ = [
    "benchmark_model",
    "count_gflops",
    "num_classes_of",
    "peak_memory_mib",
    "synthetic_inputs",
]

logger = logging.getLogger(__name__)


def benchmark_model(args: argparse.Namespace, train: bool):
    """(cfg, model) from ``args.config_file`` + ``args.opts`` on ``args.device``, seeded."""
    cfg = load_config(args.config_file or None, list(args.opts or []))
    cfg.MODEL.DEVICE = args.device
    torch.manual_seed(0)
    model = build_model(cfg)
    model.train(train)
    return cfg, model


def synthetic_inputs(
    num_images: int, size: int, num_classes: int, device: str = "cpu", with_boxes: bool = False
) -> list[dict]:
    """detectron2 inputs: ``num_images`` random square CHW float images of ``size`` pixels.

    With ``with_boxes``, each image gets two ground-truth boxes (XYXY_ABS) at fixed fractions
    of the image, classes cycling over ``num_classes``.
    """
    g = torch.Generator().manual_seed(0)
    out = []
    for i in range(num_images):
        d = {"image": (torch.rand(3, size, size, generator=g) * 255).to(device),
             "height": size, "width": size}  # fmt: skip
        if with_boxes:
            inst = Instances((size, size))
            frac = torch.tensor([[0.1, 0.15, 0.45, 0.5], [0.55, 0.3, 0.9, 0.8]])
            inst.gt_boxes = Boxes((frac * size).to(device))
            inst.gt_classes = (torch.arange(2, device=device) + i) % num_classes
            d["instances"] = inst
        out.append(d)
    return out


class _TensorIO(torch.nn.Module):
    """Wraps a detectron2 model so that jit tracing sees a tensor in and tensors out."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model

    def forward(self, image: torch.Tensor):
        h, w = image.shape[-2:]
        inst = self.model([{"image": image, "height": h, "width": w}])[0]["instances"]
        return inst.pred_boxes.tensor, inst.scores


def count_gflops(model: torch.nn.Module, image: torch.Tensor) -> float | None:
    """fvcore flop count of one eval forward pass on ``image`` (CHW), in GMACs; None on failure.

    detectron2's own ``utils.analysis`` imports caffe2 (absent), so fvcore's counter runs on a
    tensor-in / tensors-out wrapper. Ops fvcore has no handle for (NMS, sigmoid, elementwise)
    count 0, as in detectron2's model-zoo numbers.
    """
    from fvcore.nn import FlopCountAnalysis

    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            flops = FlopCountAnalysis(_TensorIO(model).eval(), (image,))
            flops.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
            return flops.total() / 1e9
    except Exception as e:  # tracing may fail on some ops: report it, keep the timing
        logger.warning("FlopCountAnalysis failed: %s", e)
        return None


def num_classes_of(cfg) -> int:
    """Classes of the configured detector (ROI heads for GeneralizedRCNN, else RetinaNet)."""
    if cfg.MODEL.META_ARCHITECTURE == "GeneralizedRCNN":
        return cfg.MODEL.ROI_HEADS.NUM_CLASSES
    return cfg.MODEL.RETINANET.NUM_CLASSES


def peak_memory_mib(device: str) -> float:
    """Peak CUDA memory allocated on a cuda device, else peak process RSS, in MiB."""
    if device.startswith("cuda"):
        return torch.cuda.max_memory_allocated() / 2**20
    return peak_rss_mib()


@BENCHMARK_REGISTRY.register()
def inference(args: argparse.Namespace) -> list[dict]:
    """``--task inference``: batch-1 inference of the configured model; one result row."""
    cfg, model = benchmark_model(args, train=False)
    size = cfg.INPUT.MAX_SIZE_TEST
    inputs = synthetic_inputs(1, size, num_classes_of(cfg), args.device)
    with torch.no_grad():
        stats = time_repeated(lambda: model(inputs), args.warmup, args.repeats, args.device)
    logger.info("inference %s @%d: %s", args.config_file, size, stats.summary())
    params = sum(p.numel() for p in model.parameters())
    return [
        result_row(
            "inference", stats.median * 1000, None, "ms/image", "lower",
            iqr_ms=stats.spread * 1000, config=args.config_file, input_size=size,
            params=params, gflops=count_gflops(model, inputs[0]["image"]),
            peak_memory_mib=peak_memory_mib(args.device), device=args.device,
            threads=torch.get_num_threads(),
        )
    ]  # fmt: skip

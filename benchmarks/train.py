"""Benchmark task "train": forward + backward + optimizer step of the --config-file model.

Batch = ``SOLVER.IMS_PER_BATCH`` square images of ``INPUT.MAX_SIZE_TRAIN`` pixels with two boxes
each; optimizer from detectron2's ``build_optimizer(cfg, model)``.
"""
from __future__ import annotations

import argparse
import logging

import torch

from detectron2.solver import build_optimizer
from detectron2.utils.events import EventStorage

from .inference import benchmark_model, num_classes_of, peak_memory_mib, synthetic_inputs
from .timing import BENCHMARK_REGISTRY, result_row, time_repeated

logger = logging.getLogger(__name__)


@BENCHMARK_REGISTRY.register()
def train(args: argparse.Namespace) -> list[dict]:
    """``--task train``: one training iteration; rows in ms/iter and ms/image."""
    cfg, model = benchmark_model(args, train=True)
    size, batch = cfg.INPUT.MAX_SIZE_TRAIN, cfg.SOLVER.IMS_PER_BATCH
    inputs = synthetic_inputs(batch, size, num_classes_of(cfg), args.device, with_boxes=True)
    optimizer = build_optimizer(cfg, model)

    def step():
        losses = model(inputs)
        optimizer.zero_grad(set_to_none=True)
        sum(losses.values()).backward()
        optimizer.step()

    with EventStorage():
        stats = time_repeated(step, args.warmup, args.repeats, args.device)
    logger.info("train %s batch %d @%d: %s", args.config_file, batch, size, stats.summary())
    extra = dict(
        config=args.config_file,
        input_size=size,
        batch=batch,
        device=args.device,
        peak_memory_mib=peak_memory_mib(args.device),
        threads=torch.get_num_threads(),
    )
    return [
        result_row("train_step", stats.median * 1000, None, "ms/iter", "lower",
                   iqr_ms=stats.spread * 1000, **extra),
        result_row("train_step_per_image", stats.median * 1000 / batch, None, "ms/image", "lower",
                   **extra),
    ]  # fmt: skip

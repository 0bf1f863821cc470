"""Benchmark task "inference" runs on a small config and reports its fields."""
from __future__ import annotations

import argparse
import os

from benchmarks import BENCHMARK_REGISTRY
from benchmarks import inference as _inference  # noqa: F401  (registers the task)

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SMALL = ["INPUT.MAX_SIZE_TEST", "128", "INPUT.MAX_SIZE_TRAIN", "128", "SOLVER.IMS_PER_BATCH", "2",
         "MODEL.BIFPN.NUM_LAYERS", "1"]  # fmt: skip


def small_lite0_args() -> argparse.Namespace:
    """Arguments of a task run on configs/nih/efficientdet_lite0.yaml at 128 px, batch 2."""
    return argparse.Namespace(
        config_file=os.path.join(REPO, "configs/nih/efficientdet_lite0.yaml"),
        device="cpu", warmup=0, repeats=1, opts=SMALL,
    )  # fmt: skip


def test_inference_task():
    (row,) = BENCHMARK_REGISTRY.get("inference")(small_lite0_args())
    assert row["unit"] == "ms/image" and row["ours"] > 0 and row["input_size"] == 128
    assert row["params"] > 3e6
    # fvcore counts multiply-adds; p3..p7 maps of a 128 px input are at least the trunk's cost
    assert row["gflops"] is not None and 0.05 < row["gflops"] < 1.0

"""Benchmark tasks "inference" and "train" run on a small config and report their fields."""
from __future__ import annotations

import argparse
import os

from cxr.benchmark import BENCHMARK_REGISTRY
from cxr.benchmark import tasks  # noqa: F401  (registers the tasks)

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SMALL = ["INPUT.MAX_SIZE_TEST", "128", "INPUT.MAX_SIZE_TRAIN", "128", "SOLVER.IMS_PER_BATCH", "2",
         "MODEL.BIFPN.NUM_LAYERS", "1"]  # fmt: skip


def _args():
    return argparse.Namespace(
        config_file=os.path.join(REPO, "configs/nih/efficientdet_lite0.yaml"),
        device="cpu", warmup=0, repeats=1, opts=SMALL,
    )  # fmt: skip


def test_inference_and_train_tasks():
    (row,) = BENCHMARK_REGISTRY.get("inference")(_args())
    assert row["unit"] == "ms/image" and row["ours"] > 0 and row["input_size"] == 128
    assert row["params"] > 3e6
    # fvcore counts multiply-adds; p3..p7 maps of a 128 px input are at least the trunk's cost
    assert row["gflops"] is not None and 0.05 < row["gflops"] < 1.0
    rows = BENCHMARK_REGISTRY.get("train")(_args())
    assert [r["name"] for r in rows] == ["train_step", "train_step_per_image"]
    assert rows[0]["batch"] == 2 and abs(rows[1]["ours"] * 2 - rows[0]["ours"]) < 1e-6

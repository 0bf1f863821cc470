"""Benchmark task "train" runs one training step of a small config and reports both rows."""
from __future__ import annotations

from benchmarks import BENCHMARK_REGISTRY
from benchmarks import train as _train  # noqa: F401  (registers the task)

from .test_inference import small_lite0_args


def test_train_task():
    rows = BENCHMARK_REGISTRY.get("train")(small_lite0_args())
    assert [r["name"] for r in rows] == ["train_step", "train_step_per_image"]
    assert rows[0]["batch"] == 2 and abs(rows[1]["ours"] * 2 - rows[0]["ours"]) < 1e-6
    assert rows[0]["unit"] == "ms/iter" and rows[1]["unit"] == "ms/image"

"""The ``data`` benchmark task runs and reports one images/s comparison row."""
from __future__ import annotations

import argparse

from benchmarks import BENCHMARK_REGISTRY
from benchmarks import data as _data  # noqa: F401  (registers the task)


def test_data_task_row(monkeypatch):
    monkeypatch.setenv("CXR_BENCH_DATA_IMAGES", "4")
    args = argparse.Namespace(config_file="", opts=[], warmup=1, repeats=1, device="cpu")
    (row,) = BENCHMARK_REGISTRY.get("data")(args)
    assert row["name"] == "mapper_vs_detectron2" and row["unit"] == "images/s"
    assert row["better"] == "higher" and row["ours"] > 0 and row["peer"] > 0
    assert row["ratio"] == row["ours"] / row["peer"] and row["images"] == 4

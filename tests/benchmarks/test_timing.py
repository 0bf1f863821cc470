"""Timing primitives: result rows, alternating order, and the task registry."""
from __future__ import annotations

import builtins

import pytest

from benchmarks import suite  # noqa: F401  (registers every task)
from benchmarks.timing import BENCHMARK_REGISTRY, TimingStats, result_row, time_alternating


def test_result_row_ratio_is_ours_over_peer():
    r = result_row("inference_d0_vs_effdet_d0", 30.0, 120.0, "ms/image", "lower", threads=2)
    assert r["ratio"] == 0.25 and r["threads"] == 2
    assert result_row("x", 5.0, None, "s", "lower")["ratio"] is None
    with pytest.raises(ValueError, match="better"):
        result_row("x", 1.0, 2.0, "s", "faster")


def test_time_alternating_interleaves_calls():
    calls = []
    stats = time_alternating({"a": lambda: calls.append("a"), "b": lambda: calls.append("b")},
                             warmup=1, repeats=2)  # fmt: skip
    assert calls == ["a", "b"] * 3
    assert len(stats["a"].times) == 2 and all(t >= 0 for t in stats["b"].times)


def test_timing_stats_median_and_interquartile_range():
    s = TimingStats([4.0, 1.0, 3.0, 2.0, 5.0])
    assert s.median == 3.0 and s.spread == 2.0  # quartiles 2 and 4 (inclusive method)
    assert TimingStats([1.0]).spread == 0.0
    assert "median 3000.00 ms" in s.summary()


def test_registry_lists_every_task_and_no_function_shadows_a_builtin():
    names = BENCHMARK_REGISTRY.names()
    assert names == sorted(names)
    assert set(names) == {
        "all", "data", "eval", "inference", "train", "inference_d0_vs_effdet_d0",
        "inference_lite0_vs_effdet_lite0", "train_step_d0_vs_effdet_d0",
        "inference_d0_onnxruntime_vs_effdet_d0", "predict_dicom_end_to_end_d0",
        "predict_cold_onnxruntime_d0", "serve_latency_demo_png", "serve_latency_demo_dicom",
        "serve_latency_d0_png", "serve_latency_d0_dicom", "serve_cold_start",
        "data_dicom_prepared", "prepare_films_per_s", "data_cls_shards_vs_png", "nih_cls_all_load",
    }  # fmt: skip
    for name in names:
        assert not hasattr(builtins, BENCHMARK_REGISTRY.get(name).__name__), name

"""Benchmark task "eval": our evaluator vs pycocotools on a small synthetic set; same COCO AP."""
from __future__ import annotations

import argparse

import numpy as np

from benchmarks import BENCHMARK_REGISTRY
from benchmarks import evaluation


def test_synthetic_set_shapes():
    dicts, preds = evaluation.synthetic_eval_set(20, dets_per_image=10)
    assert len(dicts) == len(preds) == 20
    for d, p in zip(dicts, preds):
        assert p["boxes"].shape == (10, 4) and p["scores"].shape == p["classes"].shape == (10,)
        assert np.all(p["boxes"][:, 2:] > p["boxes"][:, :2])  # XYXY_ABS
        assert 0 <= len(d["annotations"]) <= 3
    assert {d["patient_id"] for d in dicts} == {f"p{i}" for i in range(10)}


def test_eval_task_matches_pycocotools(monkeypatch):
    real = evaluation._bootstrap_seconds
    monkeypatch.setattr(evaluation, "_bootstrap_seconds", lambda name: real(name, 20, 20))
    args = argparse.Namespace(eval_images=40, repeats=2, warmup=0)
    (row,) = BENCHMARK_REGISTRY.get("eval")(args)
    assert row["name"] == "eval_vs_pycocotools" and row["unit"] == "s"
    assert row["coco_identical"] is True and row["coco_max_abs_diff"] == 0.0
    assert row["images"] == 40 and row["detections"] == 4000
    assert len(row["ours_runs"]) == len(row["peer_runs"]) == 2
    assert row["ratio"] == row["ours"] / row["peer"]
    assert row["bootstrap_1000_images_1000_resamples_s"] > 0

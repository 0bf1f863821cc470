"""Benchmark tasks of films at scale: shards vs PNG files, the full-count label table probe."""

from __future__ import annotations

import argparse

from benchmarks import BENCHMARK_REGISTRY
from benchmarks import streaming


def test_shards_vs_png_row_maps_every_film_of_both(monkeypatch):
    monkeypatch.setenv("CXR_BENCH_DATA_IMAGES", "4")  # raised to one batch: each pass asserts it
    args = argparse.Namespace(config_file="", opts=[], warmup=1, repeats=1, device="cpu")
    (row,) = BENCHMARK_REGISTRY.get("data_cls_shards_vs_png")(args)
    assert row["name"] == "data_cls_shards_vs_png" and row["unit"] == "images/s"
    assert row["ours"] > 0 and row["peer"] > 0 and row["ratio"] == row["ours"] / row["peer"]
    assert (row["shard_film_size"], row["png_film_size"]) == (256, 1024)
    assert row["images"] == row["batch_size"] == streaming.BATCH


def test_worker_memory_probe_reads_every_record_each_epoch():
    records = [{"labels": [i % 2, 1]} for i in range(600)]
    epochs = streaming._worker_rss_per_epoch(records, epochs=2)
    assert [e["records"] for e in epochs] == [600, 600]
    assert all(len(e["rss"]) == 2 and min(e["rss"]) > 0 for e in epochs)

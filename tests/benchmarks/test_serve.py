"""Serve benchmark rows on tiny sizes: consistent rows, real servers, errors counted."""

from __future__ import annotations

import argparse
import os
import shutil

import pytest

from benchmarks import deploy, serve
from benchmarks.report import COMPARISONS, summary_row, validate_results
from benchmarks.timing import BENCHMARK_REGISTRY


def _args(**kw):
    return argparse.Namespace(config_file="", opts=[], device="cpu", warmup=0, repeats=2,
                              input_size=128, serve_clients=2, serve_requests=2, **kw)  # fmt: skip


@pytest.fixture(scope="module")
def d0_model(tmp_path_factory) -> str:
    """EfficientDet-D0 (random weights) exported at 128 px, once."""
    return serve._export_random_d0(str(tmp_path_factory.mktemp("d0")), 128)


@pytest.fixture
def small_films(monkeypatch, d0_model):
    """Small films; the rows' D0 export replaced by a copy of ``d0_model``."""
    monkeypatch.setattr(serve, "PNG_SIZE", 256)
    monkeypatch.setattr(serve.write_test_png, "__defaults__", (256, 0))
    monkeypatch.setattr(deploy.write_test_dicom, "__defaults__", ((300, 256), 0))

    def copy(folder: str, size: int) -> str:
        assert size == 128
        os.makedirs(folder)
        return shutil.copy(d0_model, folder)

    monkeypatch.setitem(serve._MODELS, "d0", copy)


def test_every_serve_row_is_a_registered_comparison():
    names = {c.name for c in COMPARISONS}
    rows = {f"serve_latency_{m}_{f}" for m in ("demo", "d0") for f in ("png", "dicom")}
    assert rows | {"serve_cold_start"} <= names
    assert rows | {"serve_cold_start"} <= set(BENCHMARK_REGISTRY.names())


def test_latency_row_counts_every_request_and_the_servers_memory(small_films):
    row = serve.serve_latency(_args(), "d0", "png")[0]
    validate_results([summary_row(row)])
    assert row["name"] == "serve_latency_d0_png" and row["unit"] == "s/request"
    load = row["concurrent"]
    assert load["clients"] == 2 and load["requests"] == load["planned"] == 4
    assert load["errors"] == 0 and not load["time_capped"]
    assert 0 < load["p50_s"] <= load["p99_s"] and load["requests_per_s"] > 0
    assert row["single_client"]["requests"] == 3 and row["rss_after_warmup_mib"] > 20
    assert row["goal_p50_single_s"] == 0.3


def test_load_run_counts_refused_films_as_errors(tmp_path, d0_model):
    with serve.ServedProcess(d0_model, str(tmp_path / "log")) as srv:
        bad = serve.load_run(srv.url, b"not a film", "image/png", 2, 3, 60)
        good = serve.load_run(srv.url, open(serve.write_test_png(str(tmp_path / "f.png")),
                                            "rb").read(), "image/png", 1, 2, 60)  # fmt: skip
    assert bad["requests"] == bad["errors"] == 6
    assert good["requests"] == 2 and good["errors"] == 0


def test_cold_start_row(small_films):
    args = _args()
    args.repeats = 1
    row = serve.serve_cold_start(args)[0]
    validate_results([summary_row(row)])
    assert row["name"] == "serve_cold_start" and row["goal_wall_s"] == 2.0
    assert row["ours_peak_rss_mib"] > 20 and len(row["ours_runs"]) == 1

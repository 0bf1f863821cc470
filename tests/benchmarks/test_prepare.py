"""The prepared-copy benchmark tasks run and report their rows (tiny films here)."""

from __future__ import annotations

import argparse

from benchmarks import BENCHMARK_REGISTRY
from benchmarks import prepare as _prepare  # noqa: F401  (registers the tasks)
from benchmarks.report import COMPARISONS, summary_row, validate_results


def test_prepare_rows(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)  # films are cached under ./output/bench
    monkeypatch.setenv("CXR_BENCH_PREPARE_FILMS", "2")
    monkeypatch.setenv("CXR_BENCH_FILM_HW", "600x500")
    args = argparse.Namespace(config_file="", opts=[], warmup=1, repeats=1, device="cpu")
    (data,) = BENCHMARK_REGISTRY.get("data_dicom_prepared")(args)
    (prep,) = BENCHMARK_REGISTRY.get("prepare_films_per_s")(args)
    validate_results([summary_row(data), summary_row(prep)])
    assert data["name"] == "data_dicom_prepared_vs_original" and data["unit"] == "images/s"
    assert data["films"] == 2 and data["film_hw"] == [600, 500] and data["better"] == "higher"
    assert prep["name"] == "prepare_films_per_s" and prep["films"] == 2 and prep["ours"] > 0
    assert (tmp_path / "output" / "bench" / "phantom_vindr_2_600x500").is_dir()
    assert {c.name for c in COMPARISONS} >= {data["name"], prep["name"]}

"""The ``all`` task: each comparison in its own process, files written, failures reported."""
from __future__ import annotations

import argparse
import ast
import json
import math
import os

import pytest

from benchmarks import suite
from benchmarks.report import Comparison, summary_row
from benchmarks.suite import run_suite
from benchmarks.timing import result_row

BENCHMARKS = os.path.dirname(os.path.abspath(suite.__file__))
REPO = os.path.dirname(BENCHMARKS)


def _row(name, ours=30.0, peer=60.0):
    return result_row(name, ours, peer, "ms/image", "lower")


def _suite_args(warmup=0):
    return argparse.Namespace(config_file="", opts=["X", "1"], device="cpu", warmup=warmup,
                              repeats=9, output="", task="all")  # fmt: skip


def test_suite_runs_a_real_comparison_in_its_own_process(tmp_path, monkeypatch):
    monkeypatch.setenv("CXR_BENCH_DATA_IMAGES", "4")  # inherited by the spawned process
    rows = run_suite(_suite_args(), (Comparison("mapper_vs_detectron2", "data", 1.0, 1),),
                     str(tmp_path))  # fmt: skip
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved == rows and [r["name"] for r in saved] == ["mapper_vs_detectron2"]
    assert math.isclose(saved[0]["ratio"], saved[0]["ours"] / saved[0]["peer"])
    details = json.loads((tmp_path / "details.json").read_text())
    assert details["rows"][0]["images"] == 4 and details["rows"][0]["repeats_capped"] == 1
    assert "load_average_end" in details["machine"]
    assert "`mapper_vs_detectron2`" in (tmp_path / "results.md").read_text()


def test_suite_writes_the_others_then_raises_when_one_fails(tmp_path, monkeypatch):
    seen = []

    def fake_run(task, args):
        seen.append((task, args.repeats, args.warmup, args.opts, args.config_file))
        if task == "no_such_task":
            raise RuntimeError("benchmark task 'no_such_task' failed: KeyError")
        return [_row("other_row"), _row("eval_vs_pycocotools", 2.0, 4.0)]

    monkeypatch.setattr(suite, "run_in_process", fake_run)
    comparisons = (Comparison("broken", "no_such_task", None, 1),
                   Comparison("eval_vs_pycocotools", "eval", 2.0, 3, 0))  # fmt: skip
    with pytest.raises(RuntimeError, match="broken"):
        run_suite(_suite_args(warmup=3), comparisons, str(tmp_path))
    # repeats and warm-up capped per comparison; each uses its own config, not the caller's opts
    assert seen == [("no_such_task", 1, 2, [], ""), ("eval", 3, 0, [], "")]
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved == [summary_row(_row("eval_vs_pycocotools", 2.0, 4.0))]
    details = json.loads((tmp_path / "details.json").read_text())
    assert "no_such_task" in details["rows"][0]["error"]


def _imports(path: str) -> set[str]:
    """Modules the Python file ``path`` imports (relative ones with their leading dots)."""
    out = set()
    for node in ast.walk(ast.parse(open(path, encoding="utf-8").read())):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            out.add("." * node.level + node.module)
        elif isinstance(node, ast.ImportFrom):  # from . import x
            out.update("." * node.level + a.name for a in node.names)
    return out


def test_no_import_cycle_between_the_suite_and_the_tasks():
    assert ".tasks" in _imports(os.path.join(BENCHMARKS, "suite.py"))
    for f in os.listdir(BENCHMARKS):
        if f.endswith(".py") and f != "suite.py":
            assert not any("suite" in m for m in _imports(os.path.join(BENCHMARKS, f))), f


def test_effdet_is_imported_only_by_the_peer_module():
    importers = []
    for folder in ("cxr", "benchmarks", "tools"):
        for root, _, files in os.walk(os.path.join(REPO, folder)):
            for f in files:
                path = os.path.join(root, f)
                if f.endswith(".py") and "effdet" in _imports(path):
                    importers.append(os.path.relpath(path, REPO))
    assert importers == [os.path.join("benchmarks", "peers.py")]


def test_suite_writes_rows_without_a_peer(tmp_path, monkeypatch):
    """make bench ends with nih_cls_all_load, which has no peer: its files are written."""
    load = result_row("nih_cls_all_load", 2.8, None, "s", "lower", records=112120)
    monkeypatch.setattr(suite, "run_in_process",
                        lambda task, args: [load] if task == "nih_cls_all_load" else [_row(task)])  # fmt: skip
    comparisons = (Comparison("eval_vs_pycocotools", "eval_vs_pycocotools", 2.0, 1),
                   Comparison("nih_cls_all_load", "nih_cls_all_load", None, 1, 0))  # fmt: skip
    run_suite(_suite_args(), comparisons, str(tmp_path))
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved[1] == summary_row(load) and saved[1]["peer"] is None
    assert "| `nih_cls_all_load` | 2.8 | — |" in (tmp_path / "results.md").read_text()

"""results.json schema and ratio math, goals, Markdown, timing order, and the suite runner."""
from __future__ import annotations

import argparse
import json
import math
import os

import pytest

from cxr.benchmark import result_row
from cxr.benchmark.report import (
    COMPARISONS,
    RESULT_KEYS,
    Comparison,
    goal_met,
    results_markdown,
    summary_row,
    validate_results,
    write_results,
)
from cxr.benchmark import suite
from cxr.benchmark.suite import run_suite
from cxr.benchmark.timing import time_alternating

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MACHINE = {"cpu": "test cpu", "cores": 2, "torch_threads": 2, "device": "cpu", "torch": "x"}


def _row(name="inference_d0_vs_effdet_d0", ours=30.0, peer=60.0, better="lower", **kw):
    return result_row(name, ours, peer, "ms/image", better, **kw)


def test_result_row_ratio_is_ours_over_peer():
    r = _row(ours=30.0, peer=120.0, threads=2)
    assert r["ratio"] == 0.25 and r["threads"] == 2
    assert result_row("x", 5.0, None, "s", "lower")["ratio"] is None
    with pytest.raises(ValueError, match="better"):
        result_row("x", 1.0, 2.0, "s", "faster")


def test_summary_row_keeps_exactly_the_schema_keys():
    assert tuple(summary_row(_row(extra=1))) == RESULT_KEYS
    validate_results([summary_row(_row()), summary_row(_row("eval_vs_pycocotools"))])


@pytest.mark.parametrize(
    "change, field",
    [
        ({"ratio": 0.6}, "ratio"),
        ({"better": "up"}, "better"),
        ({"peer": float("nan")}, "peer"),
        ({"ours": 0.0}, "ours"),
        ({"unit": ""}, "unit"),
        ({"extra": 1}, "keys"),
    ],
)
def test_validate_results_names_the_bad_field(change, field):
    row = {**summary_row(_row()), **change}
    with pytest.raises(ValueError, match=field) as e:
        validate_results([row])
    assert "inference_d0_vs_effdet_d0" in str(e.value)


def test_validate_results_refuses_duplicate_names():
    with pytest.raises(ValueError, match="unique"):
        validate_results([summary_row(_row()), summary_row(_row())])


def test_goals():
    goals = {c.name: c.goal for c in COMPARISONS}
    assert goals == {
        "inference_d0_vs_effdet_d0": 0.8,
        "inference_lite0_vs_effdet_lite0": None,
        "train_step_d0_vs_effdet_d0": 1.0,
        "mapper_vs_detectron2": 1.0,
        "eval_vs_pycocotools": 2.0,
    }
    assert goal_met(_row(ours=79.0, peer=100.0)) is True
    assert goal_met(_row(ours=81.0, peer=100.0)) is False
    assert goal_met(_row("mapper_vs_detectron2", 101.7, 57.4, "higher")) is True
    assert goal_met(_row("mapper_vs_detectron2", 50.0, 57.4, "higher")) is False
    assert goal_met(_row("inference_lite0_vs_effdet_lite0")) is None
    assert goal_met(_row("unknown"), goal=0.5) is True


def test_write_results(tmp_path):
    rows = [_row(ours=40.0, peer=50.0, runs=[1.0, float("nan")]),
            _row("mapper_vs_detectron2", 100.0, 50.0, "higher")]  # fmt: skip
    paths = write_results(str(tmp_path), rows, MACHINE, rows)
    saved = json.loads(open(paths["json"]).read())
    assert [tuple(r) for r in saved] == [RESULT_KEYS] * 2
    assert saved[0]["ratio"] == 0.8 and saved[1]["ratio"] == 2.0
    details = json.loads(open(paths["details"]).read())  # strict JSON: NaN became null
    assert details["rows"][0]["runs"] == [1.0, None] and details["machine"]["cores"] == 2
    md = open(paths["md"]).read()
    assert md == results_markdown(saved, MACHINE)
    line = next(x for x in md.splitlines() if "`inference_d0_vs_effdet_d0`" in x)
    assert "| 0.80 |" in line and "<= 0.8" in line and "| yes |" in line
    assert "2 cores" in md and "test cpu" in md
    with pytest.raises(ValueError):
        write_results(str(tmp_path / "bad"), [{**rows[0], "ratio": 3.0}], MACHINE, [])
    assert not (tmp_path / "bad" / "results.json").exists()


def test_time_alternating_interleaves_calls():
    calls = []
    stats = time_alternating({"a": lambda: calls.append("a"), "b": lambda: calls.append("b")},
                             warmup=1, repeats=2)  # fmt: skip
    assert calls == ["a", "b"] * 3
    assert len(stats["a"].times) == 2 and all(t >= 0 for t in stats["b"].times)


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


def test_effdet_is_imported_only_by_the_peer_module():
    importers = []
    for root, _, files in os.walk(os.path.join(REPO, "cxr")):
        for f in files:
            path = os.path.join(root, f)
            if f.endswith(".py") and "import effdet" in open(path).read():
                importers.append(os.path.relpath(path, REPO))
    assert importers == [os.path.join("cxr", "benchmark", "peers.py")]

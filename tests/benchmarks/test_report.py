"""results.json schema and ratio math, goals, Markdown and the files written."""
from __future__ import annotations

import json
import os
import stat

import pytest

from benchmarks.report import (
    COMPARISONS,
    RESULT_KEYS,
    Comparison,
    goal_met,
    results_markdown,
    summary_row,
    validate_results,
    write_results,
)
from benchmarks.timing import result_row

MACHINE = {"cpu": "test cpu", "cores": 2, "torch_threads": 2, "device": "cpu", "torch": "x"}


def _row(name="inference_d0_vs_effdet_d0", ours=30.0, peer=60.0, better="lower", **kw):
    return result_row(name, ours, peer, "ms/image", better, **kw)


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


def test_a_row_without_a_peer_is_valid_and_shown_with_dashes():
    """nih_cls_all_load measures cxr alone: no peer, no ratio, no goal."""
    row = summary_row(result_row("nih_cls_all_load", 2.8, None, "s", "lower"))
    assert row["peer"] is None and row["ratio"] is None
    validate_results([summary_row(_row()), row])
    assert goal_met(row) is None
    with pytest.raises(ValueError, match="'ratio' must be None without a peer"):
        validate_results([{**row, "ratio": 1.0}])
    table = results_markdown([row], {})
    assert "| `nih_cls_all_load` | 2.8 | — | s | — | lower | — | — |" in table


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
        "inference_d0_onnxruntime_vs_effdet_d0": 0.3,
        "predict_dicom_end_to_end_d0": None,
        "predict_cold_onnxruntime_d0": None,
        "data_dicom_prepared_vs_original": 5.0,
        "prepare_films_per_s": None,
        "data_cls_shards_vs_png": 10.0,
        "nih_cls_all_load": None,
        "serve_latency_demo_png": None,
        "serve_latency_demo_dicom": None,
        "serve_latency_d0_png": None,
        "serve_latency_d0_dicom": None,
        "serve_cold_start": None,
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
    umask = os.umask(0)
    os.umask(umask)
    for path in paths.values():  # the modes a plain open() gives, readable by others
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o666 & ~umask

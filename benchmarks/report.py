"""The peer-comparison results: ``results.json`` schema, goals, machine description, Markdown.

``results.json`` is a list with one object per comparison, exactly the keys
:data:`RESULT_KEYS`: ``name``, ``ours``, ``peer``, ``unit``, ``ratio`` (= ours / peer) and
``better`` ("lower" for times, "higher" for throughput). Everything else a task measured (all
runs, thread count, sizes, ...) goes to ``details.json`` beside it; ``results.md`` is the
README table plus the machine description.
"""
from __future__ import annotations

import dataclasses
import datetime
import math
import os
import platform

from cxr.fileio import json_safe, write_json_atomic, write_text_atomic

__all__ = [
    "COMPARISONS",
    "Comparison",
    "RESULT_KEYS",
    "goal_met",
    "machine_description",
    "results_markdown",
    "summary_row",
    "validate_results",
    "write_results",
]

RESULT_KEYS = ("name", "ours", "peer", "unit", "ratio", "better")


@dataclasses.dataclass(frozen=True)
class Comparison:
    """One row of the suite: the task computing it and the goal on its ratio (ours / peer).

    Attributes:
        name: row name in results.json.
        task: ``--task`` name that produces the row.
        goal: ratio bound ("lower": ratio <= goal; "higher": ratio >= goal); None = no goal.
        max_repeats: cap on timed repetitions within ``make bench`` (slow peers get few).
        max_warmup: cap on untimed warm-up rounds within ``make bench``.
    """

    name: str
    task: str
    goal: float | None
    max_repeats: int
    max_warmup: int = 2


COMPARISONS = (
    Comparison("inference_d0_vs_effdet_d0", "inference_d0_vs_effdet_d0", 0.8, 10),
    Comparison("inference_lite0_vs_effdet_lite0", "inference_lite0_vs_effdet_lite0", None, 10),
    Comparison("train_step_d0_vs_effdet_d0", "train_step_d0_vs_effdet_d0", 1.0, 5, 1),
    Comparison("mapper_vs_detectron2", "data", 1.0, 3),
    Comparison("eval_vs_pycocotools", "eval", 2.0, 1),
    Comparison("inference_d0_onnxruntime_vs_effdet_d0", "inference_d0_onnxruntime_vs_effdet_d0",
               0.30, 10),  # fmt: skip
    # absolute goals (median <= 0.5 s; <= 2 s wall and <= 400 MB): goal_* fields of details.json
    Comparison("predict_dicom_end_to_end_d0", "predict_dicom_end_to_end_d0", None, 5, 1),
    Comparison("predict_cold_onnxruntime_d0", "predict_cold_onnxruntime_d0", None, 2, 0),
    Comparison("data_dicom_prepared_vs_original", "data_dicom_prepared", 5.0, 3, 1),
    Comparison("prepare_films_per_s", "prepare_films_per_s", None, 3, 0),
    Comparison("data_cls_shards_vs_png", "data_cls_shards_vs_png", 10.0, 3),
    # seconds to load 112,120 records; memory and worker RSS per epoch in the row's fields
    Comparison("nih_cls_all_load", "nih_cls_all_load", None, 1, 0),
    # the served app (absolute goals in details.json: errors 0, RSS growth <= 10 %, D0 single-
    # client p50 <= 0.3 s; cold start <= 2 s and <= 400 MB)
    *(Comparison(f"serve_latency_{m}_{f}", f"serve_latency_{m}_{f}", None, 30, 0)
      for m in ("demo", "d0") for f in ("png", "dicom")),
    Comparison("serve_cold_start", "serve_cold_start", None, 2, 0),
)
_BY_NAME = {c.name: c for c in COMPARISONS}


def summary_row(row: dict) -> dict:
    """The :data:`RESULT_KEYS` of a task's row (its extra fields belong in details.json)."""
    return {k: row[k] for k in RESULT_KEYS}


def validate_results(rows: list[dict]) -> None:
    """Raise ValueError naming the row and field when ``rows`` break the results.json schema.

    Each row must have exactly :data:`RESULT_KEYS`; ``ours`` a positive finite number;
    ``peer`` one too, or None for a measurement without a peer (then ``ratio`` is None);
    ``ratio`` == ours / peer (relative 1e-9); ``better`` "lower" or "higher"; names unique.
    """
    seen = set()
    for i, row in enumerate(rows):
        where = f"results row {i} ({row.get('name', '?')!r})"
        if set(row) != set(RESULT_KEYS):
            raise ValueError(f"{where}: keys {sorted(row)}, expected {sorted(RESULT_KEYS)}")
        if not isinstance(row["name"], str) or row["name"] in seen:
            raise ValueError(f"{where}: field 'name' must be a unique string")
        seen.add(row["name"])
        for k in ("ours", "peer"):
            v = row[k]
            if k == "peer" and v is None:
                if row["ratio"] is not None:
                    raise ValueError(f"{where}: field 'ratio' must be None without a peer")
                continue
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                raise ValueError(f"{where}: field {k!r} must be a finite number, got {v!r}")
            if v <= 0:
                raise ValueError(f"{where}: field {k!r} must be positive, got {v!r}")
        if row["better"] not in ("lower", "higher"):
            raise ValueError(f"{where}: field 'better' must be 'lower' or 'higher'")
        if not isinstance(row["unit"], str) or not row["unit"]:
            raise ValueError(f"{where}: field 'unit' must be a non-empty string")
        if row["peer"] is None:
            continue
        expected = row["ours"] / row["peer"]
        if not isinstance(row["ratio"], (int, float)) or not math.isclose(
            row["ratio"], expected, rel_tol=1e-9
        ):
            raise ValueError(f"{where}: field 'ratio' is {row['ratio']!r}, ours/peer = {expected}")


def goal_met(row: dict, goal: float | None = None) -> bool | None:
    """Whether ``row['ratio']`` meets ``goal`` (default: its :data:`COMPARISONS` goal).

    Returns:
        None without a goal; else ratio <= goal for better="lower", ratio >= goal for "higher".
    """
    if goal is None:
        c = _BY_NAME.get(row["name"])
        goal = c.goal if c else None
    if goal is None or row["ratio"] is None:
        return None
    return row["ratio"] <= goal if row["better"] == "lower" else row["ratio"] >= goal


def _version(module: str) -> str:
    from importlib import metadata

    try:
        return metadata.version(module)
    except metadata.PackageNotFoundError:
        return "not installed"


def machine_description(device: str = "cpu") -> dict:
    """CPU model, cores, torch threads, load average, accelerator and package versions."""
    import torch

    from cxr.apps.demo import cpu_model

    desc = {
        "date_utc": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M"),
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "load_average_1_5_15": [round(x, 2) for x in os.getloadavg()],
        "device": device,
        "accelerator": (
            torch.cuda.get_device_name(0)
            if device.startswith("cuda") and torch.cuda.is_available()
            else "none"
        ),
        "python": platform.python_version(),
    }
    for pkg in ("torch", "torchvision", "detectron2", "timm", "effdet", "pycocotools",
                "numpy", "opencv-python-headless", "albumentations"):  # fmt: skip
        desc[pkg] = _version(pkg)
    return desc


def _fmt(v: float | None) -> str:
    if v is None:  # a measurement without a peer
        return "—"
    return f"{v:.3g}" if abs(v) < 100 else f"{v:.0f}"


def results_markdown(rows: list[dict], machine: dict) -> str:
    """A Markdown table of ``rows`` (results.json rows) with goals, and the machine below it."""
    lines = [
        "| comparison | ours | peer | unit | ratio ours/peer | better | goal | met |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        c = _BY_NAME.get(r["name"])
        goal = "—" if c is None or c.goal is None else (
            f"<= {c.goal}" if r["better"] == "lower" else f">= {c.goal}")  # fmt: skip
        met = {None: "—", True: "yes", False: "**no**"}[goal_met(r)]
        lines.append(
            f"| `{r['name']}` | {_fmt(r['ours'])} | {_fmt(r['peer'])} | {r['unit']} | "
            f"{'—' if r['ratio'] is None else format(r['ratio'], '.2f')} | {r['better']} | "
            f"{goal} | {met} |"
        )
    m = machine
    versions = ", ".join(
        f"{k} {m[k]}" for k in ("python", "torch", "torchvision", "detectron2", "timm", "effdet",
                                "pycocotools", "numpy", "opencv-python-headless") if k in m
    )  # fmt: skip
    lines += [
        "",
        f"Machine: {m.get('cpu')}, {m.get('cores')} cores, torch threads {m.get('torch_threads')}, "
        f"device {m.get('device')} (accelerator: {m.get('accelerator')}), load average (1/5/15 "
        f"min) {m.get('load_average_1_5_15')} at start and {m.get('load_average_end')} at end; "
        f"{m.get('date_utc')} UTC.",
        "",
        f"Versions: {versions}.",
        "",
    ]
    return "\n".join(lines)


def write_results(folder: str, rows: list[dict], machine: dict, details: list[dict]) -> dict:
    """Write ``results.json`` (validated), ``results.md`` and ``details.json`` atomically.

    Args:
        rows: full task rows; results.json keeps their :data:`RESULT_KEYS`.
        details: anything else to keep (all task fields, errors), with the machine.

    Returns:
        {"json": path, "md": path, "details": path}.
    """
    summary = [summary_row(r) for r in rows]
    validate_results(summary)
    names = {"json": "results.json", "md": "results.md", "details": "details.json"}
    paths = {k: os.path.join(folder, f) for k, f in names.items()}
    write_json_atomic(paths["json"], summary)
    write_text_atomic(paths["md"], results_markdown(summary, machine))
    write_json_atomic(paths["details"], json_safe({"machine": machine, "rows": details}))
    return paths

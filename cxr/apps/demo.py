"""``make demo``: render the phantom, score the shipped weights, train on, score the result.

Each step is its own command (printed before it runs, so any step can be repeated by hand):
``datasets/prepare_phantom.py`` (cached), ``tools/eval.py`` on the shipped phantom-pretrained
weights (the starting figures), ``tools/train_net.py`` on the demo config, ``tools/eval.py`` on
the trained model. The product's own method throughout: training evaluates on the validation
split (``phantom_nih_val``, ``TEST.EVAL_PERIOD``), keeps the best checkpoint
(``model_best.pth``) and the per-class operating points chosen on that split beside it
(``thresholds.json``); the test split is then scored with that model at those operating points.
:func:`run_demo` times the whole run and writes ``<output>/run.json``: wall time (whole run and
per step), torch thread count, CPU model, both phantom-test AP50 figures, the operating points.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import platform
import subprocess
import sys
import time

from ..evaluation.operating_points import load_thresholds
from ..fileio import write_json_atomic

__all__ = ["DemoSettings", "cpu_model", "demo_steps", "run_demo"]

logger = logging.getLogger(__name__)


@dataclasses.dataclass
class DemoSettings:
    """What the demo runs; paths relative to the repository root.

    Attributes:
        output: training folder; evaluations go to ``eval_start/`` and ``eval/`` inside it.
        phantom_dir, phantom_size, phantom_negatives, phantom_seed: the phantom rendering.
        start_config, start_weights: the shipped weights and the config they were trained with
            (their own input size), evaluated first. Empty ``start_weights``: no starting
            evaluation.
        config: the training config (it must evaluate during training, ``TEST.EVAL_PERIOD`` >
            0, on the validation split ``DATASETS.TEST``); opts: its KEY VALUE overrides.
        dataset: the test split; bootstrap: resamples for the 95% CIs.
        python: interpreter for every step.
    """

    output: str = "output/demo"
    phantom_dir: str = "datasets/phantom_nih"
    phantom_size: int = 512
    phantom_negatives: int = 300
    phantom_seed: int = 0
    start_config: str = "configs/phantom/retinanet_demo.yaml"
    start_weights: str = "datasets/weights/retinanet_demo_phantom.pth"
    config: str = "configs/phantom/retinanet_demo_finetune.yaml"
    opts: tuple[str, ...] = ()
    dataset: str = "phantom_nih_test"
    bootstrap: int = 200
    python: str = sys.executable


def trained_model(s: DemoSettings) -> str:
    """The checkpoint the demo scores: the best one on the validation split."""
    return os.path.join(s.output, "model_best.pth")


def operating_points_file(s: DemoSettings) -> str:
    """``thresholds.json`` beside :func:`trained_model`: its operating points on validation."""
    return os.path.join(s.output, "thresholds.json")


def demo_steps(s: DemoSettings) -> list[tuple[str, list[str]]]:
    """The demo's ``(name, command)`` steps, in order."""
    py = s.python
    render = [py, "datasets/prepare_phantom.py", "--output", s.phantom_dir]
    render += ["--size", str(s.phantom_size), "--seed", str(s.phantom_seed)]
    render += ["--negatives", str(s.phantom_negatives)]
    evaluate = [py, "tools/eval.py", "--dataset", s.dataset, "--bootstrap", str(s.bootstrap)]
    steps = [("render phantom", render)]
    if s.start_weights:
        start = evaluate + ["--config-file", s.start_config, "--checkpoint", s.start_weights]
        start += ["--output", os.path.join(s.output, "eval_start"), "--no-plots"]
        steps.append(("evaluate starting weights", start))
    train = [py, "tools/train_net.py", "--config-file", s.config, "OUTPUT_DIR", s.output]
    steps.append(("train", train + list(s.opts)))
    final = evaluate + ["--config-file", s.config, "--checkpoint", trained_model(s)]
    final += ["--thresholds", operating_points_file(s), "--output", os.path.join(s.output, "eval")]
    steps.append(("evaluate trained model", final + list(s.opts)))
    return steps


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``; else :func:`platform.processor`)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _ap50(eval_dir: str) -> float | None:
    path = os.path.join(eval_dir, "metrics.json")
    try:
        with open(path, encoding="utf-8") as f:
            return float(json.load(f)["coco"]["AP50"])
    except (OSError, KeyError, TypeError, ValueError) as e:
        logger.warning("No AP50 in %s: %s", path, e)
        return None


def _fmt_time(seconds: float) -> str:
    m, s = divmod(int(round(seconds)), 60)
    return f"{m} min {s:02d} s" if m else f"{s} s"


def _check_training_outputs(s: DemoSettings) -> None:
    """The best checkpoint and its validation operating points exist after training."""
    for path in (trained_model(s), operating_points_file(s)):
        if not os.path.isfile(path):
            raise FileNotFoundError(
                f"{path} was not written by training: the demo scores the best checkpoint on the "
                f"validation split at its operating points, so {s.config} needs TEST.EVAL_PERIOD "
                "> 0, a DATASETS.TEST split and TEST.BEST_METRIC"
            )


def run_demo(s: DemoSettings, echo=print, started: float | None = None) -> dict:
    """Run :func:`demo_steps`, stop at the first failing step, write ``<output>/run.json``.

    Args:
        started: ``time.time()`` when the demo began (the tool's first line); default now.

    Returns:
        the ``run.json`` content.

    Raises:
        subprocess.CalledProcessError when a step fails; FileNotFoundError when training left no
        best checkpoint or operating points.
    """
    t0 = time.time() if started is None else started
    steps = []
    for name, cmd in demo_steps(s):
        echo(f"== {name}: {' '.join(cmd)}", flush=True)
        t = time.perf_counter()
        subprocess.run(cmd, check=True)
        steps.append({"step": name, "command": cmd, "wall_time_s": time.perf_counter() - t})
        if name == "train":
            _check_training_outputs(s)
    import torch

    wall = time.time() - t0
    start = _ap50(os.path.join(s.output, "eval_start")) if s.start_weights else None
    final = _ap50(os.path.join(s.output, "eval"))
    record = {
        "wall_time_s": round(wall, 1),
        "steps": [{**x, "wall_time_s": round(x["wall_time_s"], 1)} for x in steps],
        "torch_threads": torch.get_num_threads(),
        "cpu_model": cpu_model(),
        "cpu_count": os.cpu_count(),
        "start_weights": s.start_weights or None,
        "start_AP50": start,
        "final_AP50": final,
        "AP50_gain": None if start is None or final is None else final - start,
        "config": s.config,
        "opts": list(s.opts),
        "dataset": s.dataset,
        "model": trained_model(s),
        "thresholds_file": operating_points_file(s),
        "operating_points": load_thresholds(operating_points_file(s)),
        "report": os.path.join(s.output, "eval", "report.html"),
    }
    write_json_atomic(os.path.join(s.output, "run.json"), record)
    _echo_summary(s, record, echo)
    return record


def _echo_summary(s: DemoSettings, record: dict, echo) -> None:
    """The demo's last lines: AP50s, operating points, TensorBoard, run.json, time, report."""
    start, final, wall = record["start_AP50"], record["final_AP50"], record["wall_time_s"]
    ap = f"{final:.3f}" if final is not None else "-"
    if start is not None and final is not None:
        ap = f"{start:.3f} (starting weights) -> {final:.3f} ({final - start:+.3f})"
    points = ", ".join(f"{k} {v:.3f}" for k, v in record["operating_points"].items())
    echo("")
    echo(f"{s.dataset} COCO AP50: {ap}")
    echo(f"Operating points (validation split, used on {s.dataset}): {points}")
    echo(f"              {record['thresholds_file']}, beside {record['model']}")
    echo(f"TensorBoard:  tensorboard --logdir {s.output}")
    echo(f"Run record:   {os.path.join(s.output, 'run.json')}")
    echo(
        f"Demo wall time {_fmt_time(wall)} ({wall:.0f} s), {record['torch_threads']} torch threads"
    )
    echo(f"Report:       {record['report']}")


PROFILE_PARTS = ("data", "preprocess", "trunk", "fpn", "head", "losses", "backward", "step")


def _timed(times: dict, name: str, fn):
    """``fn`` adding its CPU seconds to ``times[name]`` (nested timers are subtracted later)."""

    def wrapper(*args, **kwargs):
        t = time.process_time()
        try:
            return fn(*args, **kwargs)
        finally:
            times[name] += time.process_time() - t

    return wrapper


def profile_training(cfg, iterations: int = 10, warmup: int = 2) -> dict[str, float]:
    """CPU seconds per training iteration of ``cfg``'s model, by component, in this process.

    The model, train loader (``DATALOADER.NUM_WORKERS`` 0, so decoding is counted here) and
    optimizer are the trainer's; ``MODEL.WEIGHTS`` is loaded. Components: ``data`` (next batch),
    ``preprocess`` (normalize + pad), ``trunk`` (``backbone.bottom_up`` forward), ``fpn`` (the
    rest of the backbone forward), ``head`` forward, ``losses`` (anchor matching + losses, after
    the head), ``backward``, ``step`` (optimizer). CPU time (:func:`time.process_time`), so a
    busy machine inflates it less than wall time.

    Args:
        cfg: a RetinaNet-style config (``backbone.bottom_up``, ``head``); MODEL.DEVICE cpu.
        iterations: timed iterations after ``warmup`` untimed ones.

    Returns:
        component -> CPU seconds per iteration, plus ``"total"``.
    """
    from detectron2.utils.events import EventStorage

    from ..engine import Trainer
    from ..engine.checkpoint import load_model_weights

    cfg = cfg.clone()
    cfg.defrost()
    cfg.DATALOADER.NUM_WORKERS = 0
    model = Trainer.build_model(cfg)
    if cfg.MODEL.WEIGHTS:
        load_model_weights(model, cfg.MODEL.WEIGHTS)
    model.train()
    optimizer = Trainer.build_optimizer(cfg, model)
    batches = iter(Trainer.build_train_loader(cfg))
    t = dict.fromkeys(PROFILE_PARTS, 0.0)
    bb = model.backbone
    bb.bottom_up.forward = _timed(t, "trunk", bb.bottom_up.forward)
    bb.forward = _timed(t, "fpn", bb.forward)  # includes the trunk: subtracted below
    model.head.forward = _timed(t, "head", model.head.forward)
    model.preprocess_image = _timed(t, "preprocess", model.preprocess_image)
    model.forward_training = _timed(t, "losses", model.forward_training)
    with EventStorage(0):
        for i in range(warmup + iterations):
            if i == warmup:
                t.update(dict.fromkeys(PROFILE_PARTS, 0.0))
                t0 = time.process_time()
            data = _timed(t, "data", next)(batches)
            losses = model(data)
            loss = sum(losses.values())
            optimizer.zero_grad()
            _timed(t, "backward", loss.backward)()
            _timed(t, "step", optimizer.step)()
        total = time.process_time() - t0
    t["fpn"] -= t["trunk"]
    out = {k: v / iterations for k, v in t.items()}
    out["total"] = total / iterations
    return out

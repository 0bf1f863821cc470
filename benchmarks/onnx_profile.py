"""Where ONNX Runtime spends its time on EfficientDet-D0, and what the alternatives give.

    python -m benchmarks.onnx_profile [--size 512] [--repeats 20] [--model model.onnx]

Exports ``configs/nih/efficientdet_d0.yaml`` with random weights (as the
``inference_d0_onnxruntime_vs_effdet_d0`` row of ``make bench``) unless ``--model`` names an
exported file, then prints:

1. ONNX Runtime's own profile of the session ``OnnxDetector`` uses (all graph optimizations, one
   intra-op thread per core): kernel time per operator type per run, node count, share;
2. the graph alone (batch 1, no post-processing) under each candidate setting, timed alternately
   in this process (ratio of medians to the default session): lower optimization levels, the
   NCHWc layout transformer off, the SiLU fusion (``QuickGelu``) off, thread spinning off, and
   OpenVINO's CPU runtime on the same file when ``openvino`` is installed; plus effdet's
   ``tf_efficientdet_d0`` and our BatchNorm-folded PyTorch model as references.

Nothing here is a goal; the rows of ``make bench`` are. docs/deploy.md quotes this output.
"""
from __future__ import annotations

import argparse
import collections
import json
import logging
import os
import tempfile
from typing import Callable

import numpy as np
import torch

from .timing import time_alternating

logger = logging.getLogger(__name__)

_LEVELS = ("basic", "extended", "all")


def _session(path: str, *, level: str = "all", disabled: tuple[str, ...] = (), spin: bool = True,
             profile_prefix: str = ""):  # fmt: skip
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = torch.get_num_threads()
    opts.graph_optimization_level = {
        "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
        "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
        "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
    }[level]
    opts.add_session_config_entry("session.intra_op.allow_spinning", "1" if spin else "0")
    if profile_prefix:
        opts.enable_profiling = True
        opts.profile_file_prefix = profile_prefix
    return ort.InferenceSession(
        path, opts, providers=["CPUExecutionProvider"], disabled_optimizers=list(disabled)
    )


def operator_profile(path: str, image: np.ndarray, runs: int = 10) -> list[dict]:
    """Kernel time per operator type of the default session, per run (ONNX Runtime profiler).

    Returns:
        rows ``{"op", "ms_per_run", "nodes", "share"}``, slowest first.
    """
    warmup = 3
    with tempfile.TemporaryDirectory() as tmp:
        sess = _session(path, profile_prefix=os.path.join(tmp, "ort"))
        feed = {sess.get_inputs()[0].name: image}
        for _ in range(warmup + runs):
            sess.run(None, feed)
        with open(sess.end_profiling()) as f:
            events = json.load(f)
    # the warm-up runs (first-run allocation) are left out: node events before the end of the
    # last warm-up "model_run"
    run_ends = sorted(e["ts"] + e["dur"] for e in events if e.get("name") == "model_run")
    start = run_ends[warmup - 1] if len(run_ends) >= warmup else 0
    total, nodes = collections.Counter(), collections.defaultdict(set)
    for e in events:
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time") and e["ts"] > start:
            op = e["args"]["op_name"]
            total[op] += e["dur"]
            nodes[op].add(e["name"])
    grand = sum(total.values())
    return [
        {"op": op, "ms_per_run": us / runs / 1000, "nodes": len(nodes[op]), "share": us / grand}
        for op, us in total.most_common()
    ]


def _openvino_fn(path: str, image: np.ndarray) -> Callable[[], object] | None:
    try:
        import openvino as ov
    except ImportError:
        logger.info("openvino not installed: its row is left out")
        return None
    core = ov.Core()
    model = core.read_model(path)
    model.reshape({model.inputs[0].get_any_name(): list(image.shape)})
    compiled = core.compile_model(
        model, "CPU",
        {"INFERENCE_NUM_THREADS": torch.get_num_threads(), "PERFORMANCE_HINT": "LATENCY"},
    )  # fmt: skip
    request = compiled.create_infer_request()
    return lambda: request.infer({0: image})


def graph_variants(path: str, image: np.ndarray, warmup: int, repeats: int, size: int,
                   fused: torch.nn.Module | None) -> dict[str, float]:  # fmt: skip
    """Median ms of the graph (batch 1) under each setting, timed alternately."""
    from .inference import synthetic_inputs
    from .peers import NUM_CLASSES, _normalized, effdet_model

    sessions = {
        "onnxruntime (OnnxDetector's session)": _session(path),
        **{f"onnxruntime, optimization {lv}": _session(path, level=lv) for lv in _LEVELS[:2]},
        "onnxruntime, NCHWc transformer off": _session(path, disabled=("NchwcTransformer",)),
        "onnxruntime, SiLU fusion off": _session(path, disabled=("QuickGeluFusion",)),
        "onnxruntime, no thread spinning": _session(path, spin=False),
    }
    fns: dict[str, Callable[[], object]] = {
        k: (lambda s=s: s.run(None, {s.get_inputs()[0].name: image})) for k, s in sessions.items()
    }
    ov = _openvino_fn(path, image)
    if ov is not None:
        fns["openvino (same file, static 1x3xHxW)"] = ov
    inputs = synthetic_inputs(1, size, NUM_CLASSES, "cpu")
    peer = effdet_model("tf_efficientdet_d0", size, "predict", "cpu")
    x = _normalized(inputs)
    fns["effdet tf_efficientdet_d0 (PyTorch, with its NMS)"] = lambda: peer(x)
    if fused is not None:
        fns["ours, PyTorch, BN folded (with NMS)"] = lambda: fused(inputs)
    with torch.no_grad():
        stats = time_alternating(fns, warmup, repeats)
    return {k: s.median * 1000 for k, s in stats.items()}


def main(argv=None) -> dict:
    from .deploy import _export_d0
    from .peers import _setup

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--size", type=int, default=512)
    p.add_argument("--model", default="", help="an exported model.onnx (default: D0 exported)")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--repeats", type=int, default=20)
    p.add_argument("--threads", type=int, default=0, help="torch/ORT threads (0: cores)")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    size, _ = _setup(argparse.Namespace(threads=args.threads, device="cpu"), args.size)
    with tempfile.TemporaryDirectory() as tmp:
        fused, path = None, args.model
        if not path:
            fused, det = _export_d0(tmp, size, torch.get_num_threads())
            fused.test_score_thresh = 0.0  # as the make bench rows
            path = det.path
        image = np.random.default_rng(0).uniform(0, 255, (1, 3, size, size)).astype(np.float32)
        ops = operator_profile(path, image)
        times = graph_variants(path, image, args.warmup, args.repeats, size, fused)
    print(f"ONNX Runtime operator profile ({torch.get_num_threads()} threads, {size} px):")
    for r in ops[:15]:
        print(f"  {r['op']:<16} {r['ms_per_run']:7.2f} ms/run {r['nodes']:5d} nodes "
              f"{100 * r['share']:5.1f}%")  # fmt: skip
    print(f"  total kernel time {sum(r['ms_per_run'] for r in ops):.1f} ms/run")
    base = next(iter(times.values()))
    print(f"Median ms per image, alternating, {args.repeats} rounds:")
    for k, v in times.items():
        print(f"  {k:<52} {v:7.1f}  ({v / base:.2f} x the default session)")
    return {"operators": ops, "median_ms": times}


if __name__ == "__main__":
    main()

"""Load test of ``tools/predict.py`` (run by hand from the repository root).

    .venv/bin/python -m benchmarks.load_predict --sizes 100 1000 --px 256

For each N it writes N generated gray PNGs (``px`` x ``px``), runs ``tools/predict.py`` on them
in a child process (RetinaNet R18-FPN of ``configs/nih/retinanet_R_18_FPN.yaml``, random
weights, overlays on, ``INPUT.MIN/MAX_SIZE_TEST = px``, ``--score-thresh``) and reports:

- peak RSS of the child (``os.wait4`` rusage ``ru_maxrss``);
- the child's RSS sampled while it runs, against the number of images done (overlays written),
  so a leak shows as RSS growing with images;
- wall time and throughput; ``marginal`` = (N2 - N1) / (t2 - t1) removes the fixed start-up.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # benchmarks/ is in the root
CONFIG = os.path.join(REPO, "configs/nih/retinanet_R_18_FPN.yaml")


def _rss_kib(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def _checkpoint(path: str, opts: list[str]) -> None:
    import torch

    from cxr.config import load_config
    from cxr.engine import Trainer

    torch.manual_seed(0)
    model = Trainer.build_model(load_config(CONFIG, opts))
    torch.save({"model": model.state_dict(), "iteration": 0}, path)


def run_one(work: str, n: int, opts: list[str], ckpt: str) -> dict:
    src = os.path.join(work, "all")
    inp = os.path.join(work, f"in_{n}")
    os.makedirs(inp, exist_ok=True)
    for f in sorted(os.listdir(src))[:n]:
        if not os.path.exists(os.path.join(inp, f)):
            os.link(os.path.join(src, f), os.path.join(inp, f))
    out = os.path.join(work, f"out_{n}")
    from cxr.data.datasets.nih import NIH_CLASSES

    cmd = [sys.executable, "-W", "ignore", os.path.join(REPO, "tools/predict.py"),
           "--config-file", CONFIG, "--checkpoint", ckpt, "--input", inp, "--output", out,
           "--classes", ",".join(NIH_CLASSES), *opts]  # fmt: skip
    log = open(os.path.join(work, f"predict_{n}.log"), "wb")
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
    samples = []  # (images done, RSS KiB)
    ov = os.path.join(out, "overlays")
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)  # keeps the child's rusage
        if pid:
            proc.returncode = os.waitstatus_to_exitcode(status)
            break
        rss = _rss_kib(proc.pid)
        done = len(os.listdir(ov)) if os.path.isdir(ov) else 0
        if rss is not None:
            samples.append((done, rss))
        time.sleep(0.25)
    wall = time.perf_counter() - t0
    log.close()
    lines = open(log.name).read().strip().splitlines()
    stats = next((json.loads(x) for x in reversed(lines) if x.startswith("{")), {})
    assert proc.returncode == 0, f"predict.py failed: see {log.name}"
    peak = usage.ru_maxrss  # KiB on Linux

    def rss_at(k):
        vals = [r for d, r in samples if d >= k]
        return vals[0] if vals else None

    return {"images": n, "stats": stats, "wall_s": round(wall, 1),
            "images_per_s": round(n / wall, 2), "peak_rss_mib": round(peak / 1024),
            "rss_mib_at": {k: (rss_at(k) or 0) // 1024
                           for k in (1, 10, 100, 500, 1000) if k <= n},
            "max_sampled_rss_mib": max(r for _, r in samples) // 1024 if samples else None}  # fmt: skip


def main(argv=None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[100, 1000])
    p.add_argument("--px", type=int, default=256)
    p.add_argument("--device", default="cpu")
    p.add_argument("--workdir", default="")
    # The config's 0.05 gives no detection with random weights; 0 gives 100 per image (loads
    # the CSV streaming, but detectron2's post-processing of every anchor is ~5x slower on CPU).
    p.add_argument("--score-thresh", type=float, default=0.05)
    args = p.parse_args(argv)
    from .data import write_benchmark_pngs

    work = args.workdir or tempfile.mkdtemp(prefix="cxr_load_")
    opts = ["MODEL.DEVICE", args.device, "INPUT.MIN_SIZE_TEST", str(args.px),
            "INPUT.MAX_SIZE_TEST", str(args.px),
            "MODEL.RETINANET.SCORE_THRESH_TEST", str(args.score_thresh)]  # fmt: skip
    all_images = os.path.join(work, "all")
    os.makedirs(all_images, exist_ok=True)
    write_benchmark_pngs(all_images, n=max(args.sizes), size=args.px)
    ckpt = os.path.join(work, "model.pth")
    _checkpoint(ckpt, opts)
    results = []
    for n in sorted(args.sizes):
        r = run_one(work, n, opts, ckpt)
        results.append(r)
        print(json.dumps(r), flush=True)
    if len(results) >= 2:
        a, b = results[0], results[-1]
        marginal = (b["images"] - a["images"]) / max(b["wall_s"] - a["wall_s"], 1e-9)
        print(json.dumps({"marginal_images_per_s": round(marginal, 2),
                          "cpu_count": os.cpu_count(), "load_avg": os.getloadavg()}))  # fmt: skip
    return results


if __name__ == "__main__":
    main()

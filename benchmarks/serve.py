"""Rows of ``make bench`` for the served app (``tools/serve.py``), on loopback only:

- ``serve_latency_<model>_<film>`` for the demo RetinaNet (shipped weights) and EfficientDet-D0
  (random weights, 512 px), each with a 1,024 x 1,024 PNG and a 2,048 x 2,500 16-bit DICOM:
  ``tools/serve.py`` runs in its own process; one client first (``ours`` = its median latency,
  goal for D0 <= 0.3 s in ``goal_p50_single_s``), then 8 concurrent clients x 200 requests
  (p50 / p99 latency, requests/s, errors with goal 0, the server's RSS growth from after the
  warm-up to the end with goal <= 10 %), bounded by ``max_seconds`` per run. ``peer`` is the
  same film through the served model in process (:meth:`ServedModel.predict`: read, detect,
  decide, without HTTP), so the ratio is the cost of serving;
- ``serve_cold_start``: a fresh ``tools/serve.py`` process from start to its first answer on the
  DICOM (D0, 512 px), wall time and the server's peak RSS (goals 2 s and 400 MB), vs
  ``tools/predict.py --backend onnxruntime`` cold on the same film.

The load is a bounded httpx script: ``clients`` threads, each with its own connection, sending
``requests`` films one after another.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import logging
import os
import socket
import subprocess
import sys
import tempfile
import time

import cv2
import numpy as np

from .deploy import (
    DEMO_CONFIG,
    DEMO_WEIGHTS,
    _cold_run,
    _export_d0,
    cold_inputs,
    cold_row,
    write_test_dicom,
)
from .peers import REPO_ROOT, _setup
from .timing import BENCHMARK_REGISTRY, result_row

__all__ = ["ServedProcess", "load_run", "serve_cold_start", "write_test_png"]

logger = logging.getLogger(__name__)

PNG_SIZE = 1024
CLIENTS, REQUESTS, MAX_SECONDS = 8, 200, 600.0
PHANTOM_CLASSES = ["Atelectasis", "Cardiomegaly", "Effusion", "Infiltrate", "Mass", "Nodule",
                   "Pneumonia", "Pneumothorax"]  # fmt: skip


def write_test_png(path: str, size: int = PNG_SIZE, seed: int = 0) -> str:
    """An 8-bit phantom radiograph of ``size`` px with a nodule and an effusion."""
    from cxr.data.phantom import render_phantom

    s = size / 256
    boxes = [("Nodule", 150 * s, 60 * s, 170 * s, 80 * s), ("Effusion", 30 * s, 150 * s,
                                                            110 * s, 230 * s)]  # fmt: skip
    cv2.imwrite(path, render_phantom(boxes, size, np.random.default_rng(seed)))
    return path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServedProcess:
    """``tools/serve.py --checkpoint model`` in a fresh interpreter on a free loopback port,
    ready (``/readyz`` answered 200) when the constructor returns; its output goes to
    ``log_path``.

    Args:
        model: the model.onnx.
        log_path: file receiving the server's stdout and stderr.
        args: more tools/serve.py flags.
        python_flags: interpreter flags (e.g. ``-X importtime``).
        cwd, env: the process's working folder and extra environment variables.
    """

    def __init__(self, model: str, log_path: str, *args: str, python_flags=(), cwd=None,
                 env: dict | None = None, timeout: float = 60.0):  # fmt: skip
        import httpx

        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        full_env = dict(os.environ, PYTHONUNBUFFERED="1", **(env or {}))
        full_env["PYTHONPATH"] = REPO_ROOT + os.pathsep + os.environ.get("PYTHONPATH", "")
        self.log_path = log_path
        self._log = open(log_path, "wb")
        self.started = time.perf_counter()
        self.proc = subprocess.Popen(
            [sys.executable, *python_flags, os.path.join(REPO_ROOT, "tools", "serve.py"),
             "--checkpoint", model, "--port", str(self.port), *args],
            cwd=cwd, env=full_env, stdout=self._log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        deadline = self.started + timeout
        while time.perf_counter() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"tools/serve.py exited:\n{self.log()[-3000:]}")
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(self.url + "/readyz", timeout=2).status_code == 200:
                    self.ready = time.perf_counter()
                    return
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"tools/serve.py not ready within {timeout} s:\n{self.log()[-3000:]}")

    def log(self) -> str:
        with open(self.log_path, errors="replace") as f:
            return f.read()

    def memory_mib(self, field: str = "VmRSS") -> float:
        """The server's ``VmRSS`` (or ``VmHWM``: peak) in MiB, from /proc (Linux)."""
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 1024
        raise RuntimeError(f"no {field} in /proc/{self.proc.pid}/status")

    def stop(self) -> str:
        """Interrupt the server (as Ctrl-C does); its whole log."""
        if self.proc.poll() is None:
            self.proc.send_signal(2)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        return self.log()

    def __enter__(self) -> "ServedProcess":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def load_run(url: str, body: bytes, content_type: str, clients: int, requests: int,
             max_seconds: float) -> dict:  # fmt: skip
    """``clients`` threads each POST ``body`` to ``url/v1/predict`` ``requests`` times (until
    ``max_seconds`` have passed). Latencies in seconds; an error is any non-200 answer or a
    failed connection."""
    import httpx

    deadline = time.perf_counter() + max_seconds

    def client(_):
        lat, errors = [], 0
        with httpx.Client(base_url=url, timeout=120) as c:
            for _ in range(requests):
                if time.perf_counter() > deadline:
                    break
                t0 = time.perf_counter()
                try:
                    ok = (
                        c.post(
                            "/v1/predict", content=body, headers={"content-type": content_type}
                        ).status_code
                        == 200
                    )
                except httpx.HTTPError:
                    ok = False  # fmt: skip
                lat.append(time.perf_counter() - t0)
                errors += not ok
        return lat, errors

    t0 = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(clients) as pool:
        results = list(pool.map(client, range(clients)))
    wall = time.perf_counter() - t0
    lat = np.array([x for r in results for x in r[0]])
    return {"clients": clients, "requests": int(lat.size), "planned": clients * requests,
            "errors": sum(r[1] for r in results), "p50_s": float(np.median(lat)),
            "p99_s": float(np.percentile(lat, 99)), "requests_per_s": lat.size / wall,
            "wall_s": wall, "time_capped": int(lat.size) < clients * requests}  # fmt: skip


def _export_demo(folder: str, size: int) -> str:
    """The demo RetinaNet with its shipped weights (its own 224 px; ``size`` unused)."""
    from cxr.engine.inference import load_torch_model
    from cxr.config import load_config
    from cxr.export.exporter import export_model

    cfg = load_config(DEMO_CONFIG, ["MODEL.DEVICE", "cpu"])
    model = load_torch_model(cfg, DEMO_WEIGHTS)[0]
    return export_model(cfg, model, folder, class_names=PHANTOM_CLASSES)


def _export_random_d0(folder: str, size: int) -> str:
    return _export_d0(folder, size, 0)[1].path


_MODELS = {"demo": _export_demo, "d0": _export_random_d0}
_FILMS = {
    "png": (lambda folder: write_test_png(os.path.join(folder, "film.png")), "image/png"),
    "dicom": (lambda folder: write_test_dicom(os.path.join(folder, "film.dcm")),
              "application/dicom"),
}  # fmt: skip


def _in_process_median(model_path: str, body: bytes, content_type: str, repeats: int) -> float:
    """Median seconds of :meth:`ServedModel.predict` on ``body`` (one warm-up call first)."""
    from cxr_runtime.serve.model import ServedModel

    served = ServedModel.load(model_path)
    dicom = True if content_type == "application/dicom" else None
    served.predict(body, "film", dicom)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        served.predict(body, "film", dicom)
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def serve_latency(args: argparse.Namespace, model: str, film: str) -> list[dict]:
    """Row ``serve_latency_<model>_<film>`` (module docstring)."""
    size, _ = _setup(args, 512)
    clients = int(getattr(args, "serve_clients", 0) or CLIENTS)
    requests = int(getattr(args, "serve_requests", 0) or REQUESTS)
    max_s = float(getattr(args, "serve_max_seconds", 0) or MAX_SECONDS)
    single_n = max(3, int(args.repeats))
    with tempfile.TemporaryDirectory() as tmp:
        path = _MODELS[model](os.path.join(tmp, "model"), size)
        write, ctype = _FILMS[film]
        with open(write(tmp), "rb") as f:
            body = f.read()
        inproc = _in_process_median(path, body, ctype, single_n)
        with ServedProcess(path, os.path.join(tmp, "serve.log"), "--queue",
                           str(2 * clients)) as srv:  # fmt: skip
            load_run(srv.url, body, ctype, 1, 2, max_s)  # warm-up: lazy imports, first runs
            single = load_run(srv.url, body, ctype, 1, single_n, max_s)
            load_run(srv.url, body, ctype, clients, 2, max_s)  # warm-up: every connection
            rss_warm = srv.memory_mib()
            load = load_run(srv.url, body, ctype, clients, requests, max_s)
            rss_end = srv.memory_mib()
    growth = 100.0 * (rss_end - rss_warm) / rss_warm
    name = f"serve_latency_{model}_{film}"
    logger.info(
        "%s: single p50 %.3f s (in process %.3f s) | %d clients: p50 %.3f p99 %.3f s, %.1f req/s, "
        "%d errors, RSS %+.1f %%", name, single["p50_s"], inproc, clients, load["p50_s"],
        load["p99_s"], load["requests_per_s"], load["errors"], growth,
    )  # fmt: skip
    extra = {"goal_p50_single_s": 0.3, "goal_met_p50_single": single["p50_s"] <= 0.3} if (
        model == "d0") else {}  # fmt: skip
    return [result_row(
        name, single["p50_s"], inproc, "s/request", "lower", model=model, film=film,
        input_size=size if model == "d0" else 224, single_client=single, concurrent=load,
        rss_after_warmup_mib=rss_warm, rss_end_mib=rss_end, rss_growth_pct=growth,
        goal_errors=0, goal_rss_growth_pct=10.0,
        goals_met=load["errors"] == 0 and growth <= 10.0, **extra,
    )]  # fmt: skip


def _register_latency_tasks() -> None:
    for model in _MODELS:
        for film in _FILMS:
            BENCHMARK_REGISTRY.register_as(f"serve_latency_{model}_{film}")(
                lambda args, m=model, f=film: serve_latency(args, m, f)
            )


_register_latency_tasks()


def _cold_first_answer(path: str, body: bytes, log: str) -> tuple[float, float]:
    """(seconds from process start to the first /v1/predict answer, the server's peak RSS MiB)."""
    import httpx

    with ServedProcess(path, log) as srv:
        r = httpx.post(srv.url + "/v1/predict", content=body,
                       headers={"content-type": "application/dicom"}, timeout=60)  # fmt: skip
        wall = time.perf_counter() - srv.started
        if r.status_code != 200:
            raise RuntimeError(f"first answer {r.status_code}: {r.text[:500]}")
        return wall, srv.memory_mib("VmHWM")


@BENCHMARK_REGISTRY.register()
def serve_cold_start(args: argparse.Namespace) -> list[dict]:
    """A fresh tools/serve.py to its first answer vs tools/predict.py cold, D0 on a DICOM."""
    size, _ = _setup(args, 512)
    with tempfile.TemporaryDirectory() as tmp:
        dicom, path = cold_inputs(tmp, size, _MODELS["d0"])
        with open(dicom, "rb") as f:
            body = f.read()
        runs: dict[str, list[tuple[float, float]]] = {"ours": [], "peer": []}
        for r in range(max(1, args.repeats)):
            runs["ours"].append(_cold_first_answer(path, body, os.path.join(tmp, f"s{r}.log")))
            runs["peer"].append(_cold_run([os.path.join(REPO_ROOT, "tools", "predict.py"),
                                           "--backend", "onnxruntime", "--checkpoint", path,
                                           "--input", dicom, "--no-overlays", "--output",
                                           os.path.join(tmp, f"p{r}")]))  # fmt: skip
    return [cold_row("serve_cold_start", runs, size,
                     "cold start to first answer (ours: serve, peer: predict.py)")]  # fmt: skip

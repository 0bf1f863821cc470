"""Deployment rows of ``make bench`` (EfficientDet-D0, random weights, exported to ONNX):

- ``inference_d0_onnxruntime_vs_effdet_d0``: ONNX Runtime (graph + numpy post-processing) vs
  effdet's ``tf_efficientdet_d0`` in PyTorch, batch 1, 512 px, alternating, ratio of medians;
  the BN-folded PyTorch model is timed alongside (``torch_fused_ms``), and, when openvino is
  installed, the same file and numpy step through OpenVINO (``openvino_ms``, ``openvino_ratio``);
- ``predict_dicom_end_to_end_d0``: one 2,048 x 2,500 16-bit DICOM through the prediction loop
  of ``tools/predict.py`` (read, window, resize, detect, CSV rows, overlay PNG written): the
  deployed torch-free path (:mod:`cxr_runtime`, ONNX Runtime) vs the fused PyTorch model; the
  goal is absolute (median <= 0.5 s), in ``goal_s``;
- ``predict_cold_onnxruntime_d0``: ``tools/predict.py --backend onnxruntime --checkpoint
  model.onnx`` (no ``--config-file``: the torch-free :mod:`cxr_runtime` path) on that DICOM as a
  fresh process (imports included) vs ``--backend torch`` with the config: wall time, and peak
  RSS in ``ours_peak_rss_mib`` / ``peer_peak_rss_mib``; goals 2 s and 400 MB in ``goal_*``.

Also a script (``python -m benchmarks.deploy --equivalence``) printing the worst ONNX Runtime vs
PyTorch difference over a registered data set for the demo RetinaNet and a random-weight D0.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import subprocess
import sys
import tempfile
import time

import numpy as np
import torch

from .peers import D0_CONFIG, NUM_CLASSES, REPO_ROOT, _normalized, _setup, build_ours, effdet_model
from .timing import BENCHMARK_REGISTRY, result_row, time_alternating

__all__ = [
    "calibrate_bn",
    "inference_d0_onnxruntime_vs_effdet_d0",
    "predict_cold_onnxruntime_d0",
    "predict_dicom_end_to_end_d0",
    "write_test_dicom",
]

logger = logging.getLogger(__name__)

DICOM_HW = (2500, 2048)  # rows x columns of the end-to-end film
DEMO_CONFIG = os.path.join(REPO_ROOT, "configs/phantom/retinanet_demo.yaml")
DEMO_WEIGHTS = os.path.join(REPO_ROOT, "datasets/weights/retinanet_demo_phantom.pth")


def write_test_dicom(path: str, hw: tuple[int, int] = DICOM_HW, seed: int = 0) -> str:
    """A 16-bit MONOCHROME2 DICOM film (smooth anatomy-like gradient + noise, a window)."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0 : hw[0], 0 : hw[1]].astype(np.float32)
    film = 2000 + 1500 * np.sin(xx / hw[1] * np.pi) * np.cos(yy / hw[0] * 2.0)
    film = np.clip(film + rng.normal(0, 40, hw), 0, 4095).astype(np.uint16)
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.Modality, ds.PhotometricInterpretation = "DX", "MONOCHROME2"
    ds.Rows, ds.Columns, ds.SamplesPerPixel = hw[0], hw[1], 1
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.WindowCenter, ds.WindowWidth = 2000, 3000
    ds.PixelData = film.tobytes()
    ds.save_as(path, enforce_file_format=True)
    return path


def calibrate_bn(model: torch.nn.Module, images: list[np.ndarray], seed: int = 0) -> None:
    """Random weights that behave like a detector: head convs re-initialized (kaiming), class
    biases spread, every BN's running statistics set from ``images`` (HxW uint8); then eval.

    A fresh EfficientDet head (std 0.01 weights, prior-probability bias) gives the same score
    everywhere, which no comparison can tell apart from a broken one.
    """
    from torch.nn.modules.batchnorm import _BatchNorm

    torch.manual_seed(seed)
    for m in model.head.modules():
        if isinstance(m, torch.nn.Conv2d):
            m.reset_parameters()
    torch.nn.init.normal_(model.head.cls_score[1].bias, mean=-3.0, std=1.0)
    for m in model.modules():
        if isinstance(m, _BatchNorm):
            m.momentum = None
            m.reset_running_stats()
    x = torch.as_tensor(np.stack([np.repeat(i[None], 3, 0) for i in images]), dtype=torch.float32)
    model.train()
    with torch.no_grad():
        feats = model.backbone((x - model.pixel_mean) / model.pixel_std)
        model.head([feats[f] for f in model.head_in_features])
    model.eval()


def _export_d0(folder: str, size: int, threads: int):
    """(fused torch D0, its ONNX Runtime detector) at ``size`` px, random weights, 8 classes."""
    from cxr.config import load_config
    from cxr.export.exporter import export_model
    from cxr.export.runtime import OnnxDetector

    model = build_ours(D0_CONFIG, size, "cpu", False)
    cfg = load_config(D0_CONFIG, ["INPUT.MIN_SIZE_TEST", size, "INPUT.MAX_SIZE_TEST", size])
    names = [f"class{i}" for i in range(NUM_CLASSES)]
    path = export_model(cfg, model, folder, class_names=names)
    return model, OnnxDetector(path, num_threads=threads)


@BENCHMARK_REGISTRY.register()
def inference_d0_onnxruntime_vs_effdet_d0(args: argparse.Namespace) -> list[dict]:
    """D0 through ONNX Runtime vs effdet ``tf_efficientdet_d0``: batch 1, 512 px."""
    from .inference import synthetic_inputs

    size, device = _setup(args, 512)
    with tempfile.TemporaryDirectory() as tmp:
        fused, det = _export_d0(tmp, size, torch.get_num_threads())
        det.metadata["score_thresh"] = fused.test_score_thresh = 0.0  # as the torch row
        peer = effdet_model("tf_efficientdet_d0", size, "predict", device)
        inputs = synthetic_inputs(1, size, NUM_CLASSES, device)
        x, img = _normalized(inputs), inputs[0]["image"].numpy()
        fns = {"ours": lambda: det.run_resized([img], [(size, size)]), "peer": lambda: peer(x),
               "torch_fused": lambda: fused(inputs)}  # fmt: skip
        openvino = _openvino_detector(det, torch.get_num_threads())
        if openvino is not None:
            fns["openvino"] = lambda: openvino.run_resized([img], [(size, size)])
        with torch.no_grad():
            stats = time_alternating(fns, args.warmup, args.repeats, device)
    logger.info("onnxruntime %s | effdet %s | torch fused %s", stats["ours"].summary(),
                stats["peer"].summary(), stats["torch_fused"].summary())  # fmt: skip
    extra = {}
    if "openvino" in stats:
        logger.info("openvino (same file) %s", stats["openvino"].summary())
        extra = {"openvino_ms": stats["openvino"].median * 1000,
                 "openvino_ratio": stats["openvino"].median / stats["peer"].median}  # fmt: skip
    return [result_row(
        "inference_d0_onnxruntime_vs_effdet_d0", stats["ours"].median * 1000,
        stats["peer"].median * 1000, "ms/image", "lower", peer_model="tf_efficientdet_d0",
        input_size=size, batch=1, device="cpu", threads=torch.get_num_threads(),
        ours_score_thresh=0.0, torch_fused_ms=stats["torch_fused"].median * 1000,
        ratio_of_min=min(stats["ours"].times) / min(stats["peer"].times),
        ours_runs_ms=[round(t * 1000, 2) for t in stats["ours"].times],
        peer_runs_ms=[round(t * 1000, 2) for t in stats["peer"].times], **extra,
    )]  # fmt: skip


def _openvino_detector(det, threads: int):
    """The same exported file compiled by OpenVINO (None when openvino is not installed)."""
    import importlib.util

    from cxr.export.runtime import OnnxDetector

    if importlib.util.find_spec("openvino") is None:
        return None
    ov = OnnxDetector(det.path, num_threads=threads, engine="openvino")
    ov.metadata["score_thresh"] = det.metadata["score_thresh"]
    return ov


@BENCHMARK_REGISTRY.register()
def predict_dicom_end_to_end_d0(args: argparse.Namespace) -> list[dict]:
    """One 2,048 x 2,500 16-bit DICOM through the prediction loop: the deployed path
    (``cxr_runtime.predict.predict_files`` with the ONNX Runtime detector, what
    ``tools/predict.py --backend onnxruntime`` runs) vs the fused PyTorch model through
    ``cxr.apps.predictor.predict_files`` (``--backend torch``)."""
    from cxr.apps.predictor import XrayPredictor
    from cxr.apps.predictor import predict_files as predict_torch
    from cxr.config import load_config
    from cxr_runtime.predict import predict_files as predict_deployed

    size, _ = _setup(args, 512)
    cfg = load_config(D0_CONFIG, ["INPUT.MIN_SIZE_TEST", size, "INPUT.MAX_SIZE_TEST", size,
                                  "MODEL.DEVICE", "cpu"])  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        os.makedirs(os.path.join(tmp, "in"))
        dicom = write_test_dicom(os.path.join(tmp, "in", "film.dcm"))
        fused, det = _export_d0(os.path.join(tmp, "export"), size, torch.get_num_threads())
        names, peer = det.class_names, XrayPredictor(cfg, model=fused)
        out = {k: os.path.join(tmp, k) for k in ("ours", "peer")}
        fns = {"ours": lambda: predict_deployed(det, [dicom], out["ours"], names, cm_threshold=0.0,
                                                in_channels=1),
               "peer": lambda: predict_torch(peer, [dicom], out["peer"], names, cm_threshold=0.0)}
        stats = time_alternating(fns, args.warmup, args.repeats)  # fmt: skip
    logger.info("DICOM end to end: onnxruntime %s | torch %s", stats["ours"].summary(),
                stats["peer"].summary())  # fmt: skip
    return [result_row(
        "predict_dicom_end_to_end_d0", stats["ours"].median, stats["peer"].median, "s/image",
        "lower", dicom_hw=list(DICOM_HW), bits=16, input_size=size, goal_s=0.5,
        goal_met_abs=stats["ours"].median <= 0.5, threads=torch.get_num_threads(),
        ours_runs_s=[round(t, 4) for t in stats["ours"].times],
        peer_runs_s=[round(t, 4) for t in stats["peer"].times],
    )]  # fmt: skip


# Runs a script as __main__ and reports its peak RSS (VmHWM of its own memory map, Linux) on
# exit. The rusage of a child counts the RSS its parent had at fork time (this benchmark holds
# models), VmHWM only what the script itself used.
_PEAK_WRAPPER = """import atexit, runpy, sys
def _peak():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            sys.stderr.write("PEAK_RSS_KIB " + line.split()[1] + "\\n")
atexit.register(_peak)
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def _cold_run(script_and_args: list[str]) -> tuple[float, float]:
    """(wall seconds, peak RSS MiB) of ``python script args...`` as a fresh process."""
    env = dict(os.environ, PYTHONPATH=REPO_ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    cmd = [sys.executable, "-c", _PEAK_WRAPPER, *script_and_args]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=REPO_ROOT, env=env, stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, text=True)  # fmt: skip
    wall = time.perf_counter() - t0
    peaks = [int(line.split()[1]) for line in proc.stderr.splitlines()
             if line.startswith("PEAK_RSS_KIB ")]  # fmt: skip
    if proc.returncode != 0 or not peaks:
        raise RuntimeError(f"{' '.join(script_and_args)} failed:\n{proc.stderr[-2000:]}")
    return wall, peaks[-1] / 1024


def cold_inputs(folder: str, size: int, export=None) -> tuple[str, str]:
    """The inputs of the cold-start rows: (the test DICOM in ``folder/in/``, the model.onnx of
    ``export(folder/export, size)``, by default D0 with random weights at ``size`` px)."""
    os.makedirs(os.path.join(folder, "in"))
    dicom = write_test_dicom(os.path.join(folder, "in", "film.dcm"))
    export = export or (lambda out, px: _export_d0(out, px, 0)[1].path)
    return dicom, export(os.path.join(folder, "export"), size)


def cold_row(
    name: str, runs: dict[str, list[tuple[float, float]]], size: int, what: str
) -> dict:
    """The row of a cold-start comparison: per side of ``runs`` ((wall s, peak RSS MiB) per
    run) the median wall time and the highest RSS; goals 2 s and 400 MB for ours."""
    med = {k: float(np.median([w for w, _ in v])) for k, v in runs.items()}
    rss = {k: max(m for _, m in v) for k, v in runs.items()}
    logger.info("%s: ours %.2f s %.0f MiB | peer %.2f s %.0f MiB", what, med["ours"],
                rss["ours"], med["peer"], rss["peer"])  # fmt: skip
    return result_row(
        name, med["ours"], med["peer"], "s (wall)", "lower", ours_peak_rss_mib=rss["ours"],
        peer_peak_rss_mib=rss["peer"], goal_wall_s=2.0, goal_rss_mib=400,
        goals_met=med["ours"] <= 2.0 and rss["ours"] <= 400, input_size=size,
        ours_runs=runs["ours"], peer_runs=runs["peer"],
    )  # fmt: skip


@BENCHMARK_REGISTRY.register()
def predict_cold_onnxruntime_d0(args: argparse.Namespace) -> list[dict]:
    """``tools/predict.py`` on one DICOM as a fresh process: onnxruntime vs torch backend."""
    size, _ = _setup(args, 512)
    with tempfile.TemporaryDirectory() as tmp:
        dicom, onnx_path = cold_inputs(tmp, size)
        ckpt = os.path.join(tmp, "d0.pth")
        torch.save({"model": build_ours(D0_CONFIG, size, "cpu", False).state_dict()}, ckpt)
        tool = [os.path.join(REPO_ROOT, "tools", "predict.py"), "--input", dicom]
        sizes = ["INPUT.MIN_SIZE_TEST", str(size), "INPUT.MAX_SIZE_TEST", str(size)]
        runs: dict[str, list[tuple[float, float]]] = {"ours": [], "peer": []}
        for r in range(max(1, args.repeats)):
            # the deployment command: model.onnx alone (sizes and classes stored in it)
            runs["ours"].append(_cold_run(tool + ["--checkpoint", onnx_path, "--backend",
                                                  "onnxruntime", "--output",
                                                  os.path.join(tmp, f"o{r}")]))
            runs["peer"].append(_cold_run(tool + ["--config-file", D0_CONFIG, "--checkpoint",
                                                  ckpt, "--output", os.path.join(tmp, f"t{r}"),
                                                  *sizes]))  # fmt: skip
    return [cold_row("predict_cold_onnxruntime_d0", runs, size,
                     "cold predict (ours: onnxruntime, peer: torch)")]  # fmt: skip


def equivalence(dataset: str, max_images: int) -> dict:
    """Worst ONNX Runtime vs PyTorch differences on ``dataset`` for the demo RetinaNet (shipped
    weights) and EfficientDet-D0 (random weights, :func:`calibrate_bn` on 8 of the images)."""
    from detectron2.data import DatasetCatalog
    from detectron2.modeling import build_model

    from cxr.engine.inference import load_torch_model
    from cxr.config import load_config
    from cxr.data.io import read_xray
    from cxr.engine.defaults import setup_config
    from cxr.export.cli import verify_on_dataset
    from cxr.export.exporter import export_model

    names = [f"class{i}" for i in range(NUM_CLASSES)]
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        cfg = setup_config(DEMO_CONFIG, [])
        model = load_torch_model(cfg, DEMO_WEIGHTS)[0]
        path = export_model(cfg, model, os.path.join(tmp, "r"), class_names=names)
        out["retinanet_demo"] = verify_on_dataset(cfg, model, path, dataset, max_images)
        cfg = load_config(D0_CONFIG, ["MODEL.DEVICE", "cpu"])
        torch.manual_seed(0)
        model = build_model(cfg)
        calib = [read_xray(d["file_name"]) for d in DatasetCatalog.get(dataset)[:8]]
        calibrate_bn(model, [i for i in calib if i.shape == calib[0].shape])
        path = export_model(cfg, model, os.path.join(tmp, "d"), class_names=names)
        out["efficientdet_d0_random"] = verify_on_dataset(cfg, model, path, dataset, max_images)
    return out


def main(argv=None) -> None:
    import cxr  # noqa: F401  (registers the data sets)

    p = argparse.ArgumentParser(description="ONNX Runtime vs PyTorch: worst case on a data set")
    p.add_argument("--equivalence", action="store_true", required=True)
    p.add_argument("--dataset", default="phantom_nih_test")
    p.add_argument("--max-images", type=int, default=0, help="first N images (0: all)")
    args = p.parse_args(argv)
    with contextlib.redirect_stdout(sys.stderr):
        result = equivalence(args.dataset, args.max_images)
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()

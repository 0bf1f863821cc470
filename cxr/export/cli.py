"""The logic behind ``tools/export.py``: export, an optional INT8 copy, an optional comparison
with PyTorch on a data set."""
from __future__ import annotations

import dataclasses
import logging
import os

import numpy as np
from tqdm import tqdm

from .exporter import check_exportable, export_model

__all__ = ["check_export_args", "run_export", "verify_on_dataset"]

logger = logging.getLogger(__name__)


def verify_on_dataset(cfg, model, onnx_path: str, dataset: str, max_images: int = 0) -> dict:
    """Detections of the fused PyTorch ``model`` vs ONNX Runtime on a registered data set.

    Args:
        cfg: the model's config.
        model: the eval-mode (fused) model that was exported.
        onnx_path: the exported file.
        dataset: a registered data set name (e.g. ``phantom_nih_test``).
        max_images: compare the first N images (0: all).

    Returns:
        the :class:`~cxr.export.verify.EquivalenceReport` as a dict, plus ``passes``.
    """
    from detectron2.data import DatasetCatalog

    from ..apps.predictor import XrayPredictor
    from ..data.io import read_xray
    from ..engine.inference import instances_to_detections
    from .runtime import OnnxDetector
    from .verify import compare_backends

    predictor = XrayPredictor(cfg, model=model)
    channels = len(cfg.MODEL.PIXEL_MEAN)

    dicts = DatasetCatalog.get(dataset)
    dicts = dicts[:max_images] if max_images > 0 else dicts
    images = ((d["file_name"], read_xray(d["file_name"])) for d in dicts)
    images = tqdm(images, total=len(dicts), desc="verify", disable=None)
    report = compare_backends(
        images,
        lambda gray: instances_to_detections(
            predictor(np.repeat(gray[:, :, None], channels, axis=2))["instances"]
        ),
        OnnxDetector(onnx_path),
    )
    out = dataclasses.asdict(report)
    out["worst_image"] = os.path.basename(out["worst_image"])
    out["passes"] = report.passes()
    return out


def check_export_args(args) -> None:
    """Refuse, before anything is built or written, options the chosen ``--format`` cannot
    honour (``--int8`` and ``--verify`` work on the ONNX file).

    Raises:
        SystemExit naming the option.
    """
    if args.format == "onnx":
        return
    for flag, given in (("--int8", args.int8), ("--verify", args.verify)):
        if given:
            raise SystemExit(
                f"{flag} works on the ONNX file (ONNX Runtime): use --format onnx, or leave "
                f"out {flag} with --format {args.format}"
            )


def run_export(args) -> dict:
    """``tools/export.py``: build + load + fuse the model, export, then quantize / verify.

    Returns:
        ``{"model": path, ...}`` with ``"int8"`` and ``"verify"`` entries when asked for.
    """
    from ..engine.inference import load_torch_model
    from ..apps.predictor import class_names_from_cfg
    from ..engine.defaults import setup_config, setup_logging
    from ..evaluation import load_thresholds

    check_export_args(args)
    setup_logging(None)
    cfg = setup_config(args.config_file, args.opts)
    check_exportable(cfg)
    names = [c.strip() for c in args.classes.split(",") if c.strip()] or class_names_from_cfg(cfg)
    if not names:
        raise SystemExit("class names unknown: pass --classes A,B,... or a registered dataset")
    thresholds = load_thresholds(args.thresholds) if args.thresholds else None
    model = load_torch_model(cfg, args.checkpoint)[0].to("cpu")
    path = export_model(
        cfg, model, args.output, fmt=args.format, class_names=names, thresholds=thresholds
    )
    result = {"model": path}
    if args.int8:
        from .quantize import quantize_int8

        result["int8"] = quantize_int8(path, os.path.join(args.output, "model.int8.onnx"))
    if args.verify:
        result["verify"] = verify_on_dataset(cfg, model, path, args.verify, args.verify_images)
    return result

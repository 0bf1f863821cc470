#!/usr/bin/env python
"""Detect lesions on X-ray files (PNG / JPEG / DICOM, files or folders) with a trained model.

    python tools/predict.py --config-file CFG --checkpoint model_best.pth \\
        --input scans/ more.dcm --thresholds output/run/thresholds.json --output preds/

Writes preds/predictions.csv (file, class, score, x1, y1, x2, y2; XYXY_ABS pixels),
preds/findings.csv (per-image findings at the operating points: thresholds.json, or
--cm-threshold for every class) and preds/overlays/*.png. Never writes beside or over its inputs.
Logic: :mod:`cxr.evaluation.predictor`.
"""

import argparse
import json
import logging
import sys

import cxr  # noqa: F401  (registers datasets and models)


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        description=__doc__.split("\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--config-file", required=True, help="model config")
    p.add_argument("--checkpoint", required=True, help="model weights (.pth)")
    p.add_argument("--input", nargs="+", required=True, help="image files and/or folders")
    p.add_argument("--output", required=True, help="output folder (not beside the inputs)")
    p.add_argument("--thresholds", default="", help="thresholds.json (per-class operating points)")
    p.add_argument(
        "--cm-threshold",
        type=float,
        default=None,
        help="threshold for classes without an operating point (default CXR.EVAL)",
    )
    p.add_argument(
        "--classes",
        default="",
        help="comma-separated class names (default: the " "config's dataset metadata)",
    )
    p.add_argument("--no-overlays", action="store_true", help="skip the overlay PNGs")
    p.add_argument("opts", nargs=argparse.REMAINDER, help="KEY VALUE config overrides")
    return p.parse_args(argv)


def main(argv=None):
    import torch
    from detectron2.utils.logger import setup_logger

    from cxr.config import load_config
    from cxr.evaluation import load_thresholds
    from cxr.evaluation.predictor import (
        XrayPredictor,
        check_predict_output,
        class_names_from_cfg,
        predict_files,
    )

    args = parse_args(argv)
    setup_logger(name="cxr")
    logging.getLogger("cxr").setLevel(logging.INFO)
    check_predict_output(args.output, args.input)
    cfg = load_config(args.config_file, args.opts)
    if cfg.MODEL.DEVICE.startswith("cuda") and not torch.cuda.is_available():
        cfg.MODEL.DEVICE = "cpu"
    cfg.freeze()
    names = [c.strip() for c in args.classes.split(",") if c.strip()] or class_names_from_cfg(cfg)
    if not names:
        raise SystemExit(
            "class names unknown: pass --classes A,B,... or a config whose "
            "DATASETS.TEST is registered"
        )
    thresholds = load_thresholds(args.thresholds) if args.thresholds else None
    cm = cfg.CXR.EVAL.CM_THRESHOLD if args.cm_threshold is None else args.cm_threshold
    stats = predict_files(
        XrayPredictor(cfg, args.checkpoint),
        args.input,
        args.output,
        names,
        thresholds,
        cm,
        len(cfg.MODEL.PIXEL_MEAN),
        not args.no_overlays,
    )
    print(json.dumps(stats))
    return stats


if __name__ == "__main__":
    sys.exit(0 if main() is not None else 1)

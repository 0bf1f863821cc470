#!/usr/bin/env python
"""Detect lesions on X-ray files (PNG / JPEG / DICOM, files or folders) with a trained model.

    python tools/predict.py --config-file CFG --checkpoint model_best.pth \\
        --input scans/ more.dcm --thresholds output/run/thresholds.json --output preds/

Writes preds/predictions.csv (file, class, score, x1, y1, x2, y2; XYXY_ABS pixels),
preds/findings.csv (per-image findings at the operating points: thresholds.json, or
--cm-threshold for every class), preds/overlays/*.png, preds/errors.csv (inputs that could not
be read, and files that are not images) and preds/log.txt. DICOM files are recognised by content,
whatever their name. Never writes beside or over its inputs. Exits non-zero when no input image
could be read. Logic: :mod:`cxr.apps.predictor`.
"""

import argparse
import json

import cxr  # noqa: F401  (registers datasets and models)


def parse_args(argv=None):
    from cxr.apps.tools import add_backend_argument

    p = argparse.ArgumentParser(
        description=__doc__.split("\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--config-file", required=True, help="model config")
    p.add_argument("--checkpoint", required=True, help="model weights (.pth) or model.onnx")
    add_backend_argument(p)
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
    p.add_argument(
        "--gradcam", action="store_true", help="also write Grad-CAM overlays of the positive boxes"
    )
    p.add_argument("opts", nargs=argparse.REMAINDER, help="KEY VALUE config overrides")
    return p.parse_args(argv)


def main(argv=None):
    from cxr.apps.tools import run_predict

    args = parse_args(argv)
    stats = run_predict(args)
    print(json.dumps(stats))
    if stats["images"] == 0:
        raise SystemExit(f"no input image could be read: see {args.output}/errors.csv")
    return stats


if __name__ == "__main__":
    main()

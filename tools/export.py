#!/usr/bin/env python
"""Export a trained RetinaNet / EfficientDet model to ONNX (ONNX Runtime) or TorchScript.

    python tools/export.py --config-file CFG --checkpoint model_final.pth \\
        --format onnx --output deploy/ [--thresholds thresholds.json] [--int8] \\
        [--verify phantom_nih_test]

Writes deploy/model.onnx (or model.ts) with BatchNorm folded and the class names, operating
points and post-processing settings inside, plus deploy/model.json (the same settings).
--int8 also writes deploy/model.int8.onnx (dynamic INT8 weights; opt-in, see docs/deploy.md).
--verify DATASET compares ONNX Runtime with PyTorch on that data set and prints the worst case.
Logic: :mod:`cxr.export`.
"""

import argparse
import json
import sys

import cxr  # noqa: F401  (registers datasets and models)


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        description=__doc__.split("\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--config-file", required=True, help="model config")
    p.add_argument("--checkpoint", required=True, help="model weights (.pth)")
    p.add_argument("--format", choices=("onnx", "torchscript"), default="onnx")
    p.add_argument("--output", required=True, help="output folder (model.onnx / model.ts)")
    p.add_argument("--thresholds", default="", help="thresholds.json to store in the export")
    p.add_argument("--classes", default="", help="comma-separated class names (default: dataset)")
    p.add_argument("--int8", action="store_true", help="also write model.int8.onnx")
    p.add_argument("--verify", default="", help="registered dataset to compare backends on")
    p.add_argument("--verify-images", type=int, default=0, help="first N images only (0: all)")
    p.add_argument("opts", nargs=argparse.REMAINDER, help="KEY VALUE config overrides")
    return p.parse_args(argv)


def main(argv=None):
    from cxr.export.cli import run_export

    result = run_export(parse_args(argv))
    print(json.dumps(result, indent=1))
    verify = result.get("verify")
    return result if verify is None or verify["passes"] else None


if __name__ == "__main__":
    sys.exit(0 if main() is not None else 1)

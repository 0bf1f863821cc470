#!/usr/bin/env python
"""Detect lesions on X-ray files (PNG / JPEG / DICOM, files or folders) with a trained model.

    python tools/predict.py --config-file CFG --checkpoint model_best.pth \\
        --input scans/ more.dcm --thresholds output/run/thresholds.json --output preds/

    # an exported model (tools/export.py), without torch or detectron2:
    python tools/predict.py --backend onnxruntime --checkpoint export/model.onnx \\
        --input scans/ --output preds/

Writes preds/predictions.csv (file, class, score, x1, y1, x2, y2; XYXY_ABS pixels),
preds/findings.csv (per-image findings at the operating points: thresholds.json, or
--cm-threshold for every class), preds/overlays/*.png, preds/errors.csv (inputs that could not
be read, and files that are not images) and preds/log.txt; --gradcam adds
preds/overlays/*_gradcam.png (Grad-CAM of the positive boxes). DICOM files are recognised by
content, whatever their name. Never writes beside or over its inputs. Exits non-zero when no
input image could be read.

An image-label classifier config (META_ARCHITECTURE CXRClassifier) gives the same findings.csv
(its class scores are the image scores), no predictions.csv rows, and with --gradcam the map of
each image's top positive finding (else its top class).

--config-file (YAML, or a LazyConfig .py with key=value overrides) is required with
--backend torch. With --backend onnxruntime and no --config-file
the prediction runs on numpy, OpenCV, pydicom and ONNX Runtime only (cxr_runtime): class names,
operating points, cm threshold and sizes are those stored in model.onnx at export (--classes,
--thresholds, --cm-threshold replace them; KEY VALUE overrides need --config-file). With
--config-file, the config supplies the class names (they must equal the model's) and the
evaluation settings. Logic: cxr_runtime.predict (the loop) and cxr.apps.predictor.
"""

import json

from cxr_runtime.predict import parse_predict_args, runs_without_torch


def parse_args(argv=None):
    return parse_predict_args(argv, __doc__)


def main(argv=None):
    args = parse_args(argv)
    if runs_without_torch(args):
        from cxr_runtime.predict import run_predict
    else:
        import cxr  # noqa: F401  (registers datasets and models)
        from cxr.apps.tools import run_predict
    stats = run_predict(args)
    print(json.dumps(stats))
    if stats["images"] == 0:
        raise SystemExit(f"no input image could be read: see {args.output}/errors.csv")
    return stats


if __name__ == "__main__":
    main()

#!/usr/bin/env python
"""Evaluate detections with cxr's medical metrics (COCO mAP, mAP@0.4, IoBB, FROC, image level).

Checkpoints mode (runs the model)::

    python tools/eval.py --config-file CFG --checkpoint model_final.pth --output DIR
    python tools/eval.py --config-file CFG --checkpoint output/run/ --dataset nih_bbox_val \\
        --bootstrap 1000 --output DIR                       # every checkpoint of a training run
    python tools/eval.py --config-file CFG --checkpoint M.pth --image-folder PNGS \\
        --annotations BBox_List_2017.csv --output DIR        # NIH-format CSV + image folder

``--config-file`` may be a LazyConfig ``.py`` file (overrides ``key=value``, e.g.
``train.device=cpu``; docs/experiments.md).

Files mode (scores any model's COCO results; no model)::

    python tools/eval.py --gt-json gt.json --detections results.json --output DIR

Classifiers (``CXRClassifier`` configs, ``evaluator_type`` ``cxr_cls`` data sets) get AUROC, AP
and operating-point metrics per finding with patient-bootstrap CIs, ROC and t-SNE plots::

    python tools/eval.py --config-file configs/phantom/classifier_R_50_slim.yaml \
        --checkpoint model_final.pth --dataset phantom_nih_cls_test --bootstrap 1000 --output DIR
    python tools/eval.py --dataset phantom_nih_cls_test --predictions DIR/predictions.json \
        --output DIR2                                        # rescore a predictions file

``--gradcam N`` (checkpoints mode) adds DIR/gradcam/: the Grad-CAM overlays of the first N
images (a classifier's top finding; a detector's top boxes at their operating points) and
gradcam.csv naming what each explains (map rule: CXR.VIS.GRADCAM_METHOD gradcam / hirescam).

Both print a per-class table and write DIR/metrics.json, per_class.csv, predictions.json,
thresholds.json, PNG plots, report.html (metrics, plots, galleries of false positives and missed
lesions; opens offline), TensorBoard event files and log.txt. Logic: :mod:`cxr.apps`.
"""

import argparse
import sys

import cxr  # noqa: F401  (registers datasets, models, evaluators)


def parse_args(argv=None):
    from cxr.apps.tools import add_backend_argument

    p = argparse.ArgumentParser(
        description=__doc__.split("\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--config-file", default="", help="model config (checkpoints mode)")
    p.add_argument(
        "--checkpoint", nargs="+", default=[], help="checkpoint files or folders (or model.onnx)"
    )
    add_backend_argument(p)
    p.add_argument("--dataset", default="", help="registered dataset (default DATASETS.TEST[0])")
    p.add_argument("--image-folder", default="", help="folder of PNGs (with --annotations)")
    p.add_argument("--annotations", default="", help="NIH-format box CSV (BBox_List_2017.csv)")
    p.add_argument(
        "--data-entry", default="", help="NIH Data_Entry CSV: adds No Finding images as negatives"
    )
    p.add_argument("--gt-json", default="", help="COCO ground truth (files mode)")
    p.add_argument("--detections", default="", help="COCO results JSON (files mode)")
    p.add_argument(
        "--predictions", default="", help="classifier predictions.json (files mode, with --dataset)"
    )
    p.add_argument("--output", required=True, help="output folder (must not contain an input)")
    p.add_argument(
        "--cm-threshold",
        type=float,
        default=None,
        help="image-level score threshold for every class (default CXR.EVAL 0.3)",
    )
    p.add_argument("--thresholds", default="", help="thresholds.json: per-class operating points")
    p.add_argument("--bootstrap", type=int, default=None, help="bootstrap resamples (0 = no CIs)")
    p.add_argument("--seed", type=int, default=None, help="bootstrap seed")
    p.add_argument(
        "--best-metric",
        default=None,
        help="metric naming the best checkpoint (default: the evaluator's: AP50 for detectors, "
        "auroc_macro for classifiers)",
    )
    p.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    p.add_argument(
        "--gallery-size",
        type=int,
        default=None,
        help="report.html: false positives / missed lesions shown per class (default CXR.EVAL 8)",
    )
    p.add_argument(
        "--gradcam",
        type=int,
        default=None,
        metavar="N",
        help="checkpoints mode: Grad-CAM PNGs of the first N images into OUTPUT/gradcam/ "
        "(CXR.VIS.GRADCAM_IMAGES)",
    )
    p.add_argument("--image-root", default="", help="files mode: folder of the GT file_name images")
    p.add_argument("opts", nargs=argparse.REMAINDER, help="KEY VALUE config overrides")
    return p.parse_args(argv)


def main(argv=None):
    from cxr.apps.tools import run_eval

    return run_eval(parse_args(argv))


if __name__ == "__main__":
    sys.exit(0 if main() is not None else 1)

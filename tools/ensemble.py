#!/usr/bin/env python
"""Fuse the COCO detection-result files of several models (WBF, NMS, soft-NMS or NMW).

    python tools/ensemble.py --detections a.json b.json [--weights 2 1] --method wbf \\
        --iou 0.55 --skip-score 0.0 [--gt-json gt.json] --output fused.json
    python tools/eval.py --gt-json gt.json --detections fused.json --output eval_fused/

Any model's COCO results work (``image_id``, ``category_id``, ``bbox`` XYWH pixels, ``score``).
--gt-json only supplies image sizes (optional). Logic: :mod:`cxr.ensemble`.
"""
import argparse
import json
import sys


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        description=__doc__.split("\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--detections", nargs="+", required=True, help="COCO results files")
    p.add_argument("--weights", nargs="+", type=float, default=None, help="one per file")
    p.add_argument("--method", default="wbf", choices=("wbf", "nms", "soft-nms", "nmw"))
    p.add_argument("--iou", type=float, default=0.55, help="IoU at which boxes merge")
    p.add_argument("--skip-score", type=float, default=0.0, help="ignore boxes scored below")
    p.add_argument("--gt-json", default="", help="COCO ground truth (image sizes; optional)")
    p.add_argument("--output", required=True, help="fused COCO results file")
    return p.parse_args(argv)


def main(argv=None):
    from cxr.ensemble.coco import fuse_coco_results, image_sizes_from_gt, read_coco_results
    from cxr.engine import setup_logging
    from cxr.fileio import write_json_atomic

    args = parse_args(argv)
    setup_logging(None)  # console
    results = [read_coco_results(p) for p in args.detections]
    fused = fuse_coco_results(
        results,
        method=args.method,
        weights=args.weights,
        iou_thr=args.iou,
        skip_box_thr=args.skip_score,
        image_sizes=image_sizes_from_gt(args.gt_json) if args.gt_json else None,
    )
    write_json_atomic(args.output, fused)
    summary = {"inputs": [len(r) for r in results], "fused": len(fused), "output": args.output}
    print(json.dumps(summary))
    return summary


if __name__ == "__main__":
    sys.exit(0 if main() is not None else 1)

#!/usr/bin/env python
"""Write a registered cxr data set as COCO ground truth (for tools/eval.py --gt-json).

    python tools/export_coco.py --dataset nih_bbox_test --output gt.json

Category ids are 1-based in thing_classes order, image ids are the data set's image ids (the
file stems), the same ids tools/eval.py writes into predictions.json; each image keeps its
patient_id. Logic: :mod:`cxr.apps.coco_json`.
"""

import argparse
import sys

import cxr  # noqa: F401  (registers the data sets)


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        description=__doc__.split("\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--dataset", required=True, help="registered data set, e.g. nih_bbox_test")
    p.add_argument("--output", required=True, help="COCO JSON file to write")
    return p.parse_args(argv)


def main(argv=None):
    from cxr.apps.tools import run_export_coco

    return run_export_coco(parse_args(argv))


if __name__ == "__main__":
    sys.exit(0 if main() is not None else 1)

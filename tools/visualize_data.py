#!/usr/bin/env python
"""Draw ground-truth boxes of a registered dataset into PNG files.

Examples::

    python tools/visualize_data.py --dataset phantom_nih_train --output viz/ --num 20
    python tools/visualize_data.py --dataset nih_bbox_train --source dataloader \\
        --config-file configs/nih/retinanet_R_18_FPN.yaml INPUT.ALBUMENTATIONS.PRESET strong

``--source annotation`` draws the boxes (XYXY_ABS after conversion) on the image as read by
``cxr.data.io.read_xray`` (a shard set's film from its shard member); ``--source dataloader`` draws them after the train-time mapper
(``cfg.INPUT.MAPPER``: resize, flip, Albumentations), i.e. what the model sees.
"""

import argparse
import os

import numpy as np

import cxr  # noqa: F401  (registers the datasets)
from cxr.config import load_config
from cxr.data import build_mapper
from cxr.data.datasets.common import PALETTE
from cxr.data.wds import read_record_image, record_stem
from cxr.fileio import write_png_atomic
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.structures import BoxMode
from detectron2.utils.visualizer import Visualizer


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--dataset", required=True, help="a registered dataset name")
    p.add_argument("--output", required=True, help="folder for the PNG files")
    p.add_argument("--source", choices=["annotation", "dataloader"], default="annotation")
    p.add_argument("--config-file", default="", help="config for --source dataloader")
    p.add_argument("--num", type=int, default=20, help="images to draw (first N; <= 0: all)")
    p.add_argument("--only-positive", action="store_true", help="skip images without boxes")
    p.add_argument("opts", nargs=argparse.REMAINDER, help="KEY VALUE config overrides")
    return p.parse_args(argv)


def draw(gray: np.ndarray, boxes: np.ndarray, classes: list, metadata) -> np.ndarray:
    """RGB image with ``boxes`` (N x 4 XYXY_ABS pixels of ``gray``) labelled by class id."""
    names = metadata.get("thing_classes", None) or [
        str(c) for c in range(max(classes, default=0) + 1)
    ]
    # a data set without colors gets cxr's distinct ones (detectron2 would draw random ones,
    # grays among them, which vanish on a radiograph)
    colors = metadata.get("thing_colors", None) or PALETTE
    vis = Visualizer(np.repeat(gray[:, :, None], 3, axis=2), metadata)
    out = vis.overlay_instances(
        boxes=np.asarray(boxes).reshape(-1, 4),
        labels=[names[c] for c in classes],
        assigned_colors=[np.array(colors[c % len(colors)]) / 255.0 for c in classes],
    )
    return out.get_image()


def main(argv=None):
    args = parse_args(argv)
    cxr.engine.setup_logging(None)  # console
    metadata = MetadataCatalog.get(args.dataset)
    dicts = DatasetCatalog.get(args.dataset)
    if args.only_positive:
        dicts = [d for d in dicts if d.get("annotations")]
    if args.num > 0:
        dicts = dicts[: args.num]
    mapper = None
    if args.source == "dataloader":
        mapper = build_mapper(load_config(args.config_file or None, args.opts or None), True)
    os.makedirs(args.output, exist_ok=True)
    written = []
    for d in dicts:
        if mapper is None:
            gray = read_record_image(dict(d))  # an image file or a shard member
            boxes = [
                BoxMode.convert(a["bbox"], a["bbox_mode"], BoxMode.XYXY_ABS)
                for a in d["annotations"]
            ]
            classes = [a["category_id"] for a in d["annotations"]]
        else:
            m = mapper(d)
            gray = m["image"][0].numpy()
            boxes = m["instances"].gt_boxes.tensor.numpy()
            classes = m["instances"].gt_classes.tolist()
        rgb = draw(gray, np.asarray(boxes, np.float64), classes, metadata)
        path = os.path.join(args.output, f"{record_stem(d)}.png")
        write_png_atomic(path, rgb[:, :, ::-1])
        written.append(path)
    print(f"wrote {len(written)} image(s) to {args.output}")
    return written


if __name__ == "__main__":
    main()

"""Helpers for tests: random COCO-style sets and the pycocotools reference."""

from __future__ import annotations

import contextlib
import io

import numpy as np
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from cxr.evaluation.records import DetectionSet


def random_coco(seed: int, n_images=12, n_classes=3, max_gt=4, max_dt=15, crowd=True, ties=True):
    """Random GT (COCO dict) and results (list) with overlaps, ties, crowd boxes, all area sizes."""
    rng = np.random.default_rng(seed)
    images = [{"id": int(i), "width": 400, "height": 400} for i in rng.permutation(n_images) + 3]
    cats = [{"id": int(c) * 2 + 1, "name": f"c{c}"} for c in range(n_classes)]
    anns, dets = [], []
    aid = 1
    for img in images:
        boxes = []
        for _ in range(rng.integers(0, max_gt + 1)):
            w, h = rng.uniform(5, 160, 2)
            x, y = rng.uniform(0, 240, 2)
            c = cats[rng.integers(n_classes)]["id"]
            anns.append(
                {
                    "id": aid,
                    "image_id": img["id"],
                    "category_id": c,
                    "bbox": [float(x), float(y), float(w), float(h)],
                    "area": float(w * h),
                    "iscrowd": int(crowd and rng.random() < 0.1),
                }
            )
            boxes.append((x, y, w, h, c))
            aid += 1
        for _ in range(rng.integers(0, max_dt + 1)):
            if boxes and rng.random() < 0.6:
                x, y, w, h, c = boxes[rng.integers(len(boxes))]
                x, y = x + rng.normal(0, 8), y + rng.normal(0, 8)
                w, h = max(1.0, w + rng.normal(0, 8)), max(1.0, h + rng.normal(0, 8))
                if rng.random() < 0.2:
                    c = cats[rng.integers(n_classes)]["id"]
            else:
                w, h = rng.uniform(5, 160, 2)
                x, y = rng.uniform(0, 240, 2)
                c = cats[rng.integers(n_classes)]["id"]
            score = float(np.round(rng.random(), 1) if ties else rng.random())
            dets.append(
                {
                    "image_id": img["id"],
                    "category_id": int(c),
                    "bbox": [float(x), float(y), float(w), float(h)],
                    "score": score,
                }
            )
    gt = {"images": images, "annotations": anns, "categories": cats}
    return gt, dets


def pycoco_eval(gt: dict, dets: list) -> COCOeval:
    with contextlib.redirect_stdout(io.StringIO()):
        cg = COCO()
        cg.dataset = gt
        cg.createIndex()
        cd = cg.loadRes([dict(d) for d in dets]) if dets else COCO()
        if not dets:
            cd.dataset = {"images": gt["images"], "annotations": [], "categories": gt["categories"]}
            cd.createIndex()
        ev = COCOeval(cg, cd, "bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return ev


def to_detection_set(gt: dict, dets: list) -> DetectionSet:
    img_ids = sorted(i["id"] for i in gt["images"])
    cat_ids = sorted(c["id"] for c in gt["categories"])
    im = {v: i for i, v in enumerate(img_ids)}
    ca = {v: i for i, v in enumerate(cat_ids)}
    a = gt["annotations"]
    gb = np.array([x["bbox"] for x in a], float).reshape(-1, 4)
    db = np.array([d["bbox"] for d in dets], float).reshape(-1, 4)
    return DetectionSet(
        num_images=len(img_ids),
        num_classes=len(cat_ids),
        gt_image=[im[x["image_id"]] for x in a],
        gt_class=[ca[x["category_id"]] for x in a],
        gt_boxes=np.c_[gb[:, :2], gb[:, :2] + gb[:, 2:]],
        gt_boxes_xywh=gb,
        gt_area=[x["area"] for x in a],
        gt_crowd=[x.get("iscrowd", 0) for x in a],
        gt_ids=[x["id"] for x in a],
        dt_image=[im[d["image_id"]] for d in dets],
        dt_class=[ca[d["category_id"]] for d in dets],
        dt_boxes=np.c_[db[:, :2], db[:, :2] + db[:, 2:]],
        dt_boxes_xywh=db,
        dt_scores=[d["score"] for d in dets],
    )

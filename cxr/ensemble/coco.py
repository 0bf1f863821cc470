"""Fusing COCO detection-result files (``[{"image_id", "category_id", "bbox": [x, y, w, h],
"score"}, ...]``, any model's) image by image with :func:`~cxr.ensemble.fusion.fuse_boxes`."""
from __future__ import annotations

import logging
import math
from collections import defaultdict
from typing import Sequence

import numpy as np

from ..fileio import read_json
from .fusion import fuse_boxes

__all__ = ["fuse_coco_results", "image_sizes_from_gt", "read_coco_results"]

logger = logging.getLogger(__name__)


def _fail(path: str, index: int, field: str, why: str):
    raise ValueError(f"{path}: detection {index}, field {field!r}: {why}")


def read_coco_results(path: str) -> list[dict]:
    """Read and check a COCO results file.

    Raises:
        ValueError naming the file, the detection's index and the field at fault.
    """
    data = read_json(path, "detections")
    if isinstance(data, dict) and "annotations" in data:
        data = data["annotations"]
    if not isinstance(data, list):
        raise ValueError(f"{path}: expected a JSON list of detections, got {type(data).__name__}")
    for i, d in enumerate(data):
        if not isinstance(d, dict):
            _fail(path, i, "", f"expected an object, got {type(d).__name__}")
        for field in ("image_id", "category_id", "bbox", "score"):
            if field not in d:
                _fail(path, i, field, "missing")
        box = d["bbox"]
        if not (isinstance(box, list) and len(box) == 4):
            _fail(path, i, "bbox", f"expected [x, y, w, h], got {box!r}")
        finite = all(isinstance(v, (int, float)) and math.isfinite(v) for v in box)
        if not finite or min(box[2:]) < 0:
            _fail(path, i, "bbox", f"needs 4 finite numbers with w, h >= 0, got {box!r}")
        s = d["score"]
        if not (isinstance(s, (int, float)) and 0.0 <= s <= 1.0):
            _fail(path, i, "score", f"must be a number in [0, 1], got {s!r}")
    return data


def image_sizes_from_gt(gt_json: str) -> dict:
    """image id -> (width, height) from a COCO ground-truth file's ``images``."""
    gt = read_json(gt_json, "ground-truth")
    return {im["id"]: (float(im["width"]), float(im["height"])) for im in gt.get("images", [])}


def _by_image(results: list[dict]) -> dict:
    out: dict = defaultdict(list)
    for d in results:
        out[d["image_id"]].append(d)
    return out


def _arrays(dets: list[dict]):
    if not dets:
        return np.zeros((0, 4)), np.zeros(0), np.zeros(0, np.int64)
    xywh = np.array([d["bbox"] for d in dets], np.float64)
    xyxy = np.concatenate([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], axis=1)
    return xyxy, np.array([d["score"] for d in dets]), np.array([d["category_id"] for d in dets])


def fuse_coco_results(
    results: Sequence[list[dict]],
    *,
    method: str = "wbf",
    weights: Sequence[float] | None = None,
    iou_thr: float = 0.55,
    skip_box_thr: float = 0.0,
    image_sizes: dict | None = None,
) -> list[dict]:
    """Fuse several models' COCO results per image.

    Args:
        results: one list of COCO detections per model.
        method, weights, iou_thr, skip_box_thr: as :func:`~cxr.ensemble.fusion.fuse_boxes`.
        image_sizes: image id -> (width, height) (e.g. :func:`image_sizes_from_gt`); images
            missing from it are normalized by their boxes' extent (same result).

    Returns:
        fused COCO detections (``bbox`` XYWH pixels), image by image, by descending score.
    """
    per_model = [_by_image(r) for r in results]
    image_ids = sorted({i for m in per_model for i in m}, key=lambda v: (str(type(v)), v))
    fused = []
    for image_id in image_ids:
        lists = [_arrays(m.get(image_id, [])) for m in per_model]
        boxes, scores, labels = fuse_boxes(
            [x[0] for x in lists], [x[1] for x in lists], [x[2] for x in lists],
            scale=(image_sizes or {}).get(image_id), method=method, weights=weights,
            iou_thr=iou_thr, skip_box_thr=skip_box_thr,
        )  # fmt: skip
        for b, s, c in zip(boxes, scores, labels):
            fused.append({
                "image_id": image_id, "category_id": int(c),
                "bbox": [float(b[0]), float(b[1]), float(b[2] - b[0]), float(b[3] - b[1])],
                "score": float(s),
            })  # fmt: skip
    return fused

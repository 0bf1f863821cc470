"""A hand-built evaluation whose false positives and missed lesions are known (report tests)."""

from __future__ import annotations

import os

import cv2
import numpy as np

from cxr.evaluation.records import DetectionSet

CLASS_NAMES = ["Nodule", "Mass"]
THRESHOLD = 0.5
NODULE, MASS = 0, 1

# (file, GT boxes [(class, XYXY_ABS)], detections [(class, XYXY_ABS, score)])
IMAGES = [
    ("tp_nodule.png", [(NODULE, (20, 20, 50, 50))], [(NODULE, (21, 20, 50, 51), 0.9)]),
    ("weak_nodule.png", [(NODULE, (60, 60, 90, 90))], [(NODULE, (60, 60, 90, 90), 0.3)]),
    ("mass_elsewhere.png", [(MASS, (10, 10, 70, 70))], [(MASS, (80, 80, 120, 120), 0.8)]),
    ("negative_a.png", [], [(NODULE, (30, 30, 60, 60), 0.95)]),
    ("negative_b.png", [], [(NODULE, (70, 20, 95, 45), 0.6), (MASS, (5, 5, 60, 60), 0.4)]),
    (
        "double_mass.png",
        [(MASS, (40, 40, 100, 100))],
        [(MASS, (40, 40, 100, 100), 0.7), (MASS, (42, 41, 101, 99), 0.65)],
    ),
]

# At THRESHOLD, by the FROC rule (highest score first):
EXPECTED_FALSE_POSITIVES = {
    "Nodule": ["negative_a.png", "negative_b.png"],  # 0.95, 0.6
    "Mass": ["mass_elsewhere.png", "double_mass.png"],  # wrong place 0.8, duplicate 0.65
}
EXPECTED_MISSED = {
    "Nodule": ["weak_nodule.png"],  # only a 0.3 detection
    "Mass": ["mass_elsewhere.png"],  # no detection on it
}


def build_report_case(root: str, size: int = 128) -> tuple[DetectionSet, list[str]]:
    """Write the films of :data:`IMAGES` (gray PNGs with bright lesions) under ``root``.

    Returns:
        ``(set, file_names)``; boxes XYXY_ABS pixels.
    """
    os.makedirs(root, exist_ok=True)
    rng = np.random.default_rng(0)
    files, gi, gc, gb, di, dc, db, ds_ = [], [], [], [], [], [], [], []
    for k, (name, gts, dets) in enumerate(IMAGES):
        img = rng.integers(60, 90, size=(size, size), dtype=np.uint8)
        for c, b in gts:
            img[b[1] : b[3], b[0] : b[2]] = 200
            gi.append(k), gc.append(c), gb.append(b)
        for c, b, s in dets:
            di.append(k), dc.append(c), db.append(b), ds_.append(s)
        path = os.path.join(root, name)
        cv2.imwrite(path, img)
        files.append(path)
    gxyxy = np.asarray(gb, np.float64).reshape(-1, 4)
    dxyxy = np.asarray(db, np.float64).reshape(-1, 4)
    xywh = lambda b: np.c_[b[:, :2], b[:, 2:] - b[:, :2]]  # noqa: E731
    ds = DetectionSet(
        num_images=len(IMAGES),
        num_classes=len(CLASS_NAMES),
        gt_image=gi,
        gt_class=gc,
        gt_boxes=gxyxy,
        gt_boxes_xywh=xywh(gxyxy),
        dt_image=di,
        dt_class=dc,
        dt_boxes=dxyxy,
        dt_boxes_xywh=xywh(dxyxy),
        dt_scores=ds_,
    )
    return ds, files

"""The cases behind the numbers: false positives and missed lesions at the operating point.

:func:`operating_point_cases` lists, per class, the detections that count as false positives and
the ground-truth boxes that count as missed at the per-class operating-point thresholds, by the
FROC matching rule (docs/evaluation.md, "Metric definitions"). :func:`case_thumbnail` draws one case as a
small JPEG of the film region around it. Boxes are XYXY_ABS pixels of the original image.
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

import cv2
import numpy as np

from ..boxes import pairwise_iou
from .metrics.matching import froc_matches
from .records import DetectionSet

__all__ = ["GalleryCase", "ClassCases", "operating_point_cases", "case_thumbnail"]

GT_COLOR = (60, 200, 60)  # BGR green: ground truth
PRED_COLOR = (40, 80, 255)  # BGR red-orange: predictions (with scores)


@dataclasses.dataclass(frozen=True)
class GalleryCase:
    """One gallery entry.

    Attributes:
        kind: ``"false_positive"`` or ``"missed"``.
        class_index: class of the detection / lesion.
        image_index: index of the image in the :class:`DetectionSet`.
        box: (4,) XYXY_ABS pixels: the false-positive detection or the missed lesion.
        score: the detection's score; for a missed lesion, the best score of a same-class
            detection overlapping it with IoU >= the match IoU (0.0 when there is none).
        index: detection index (false positive) or ground-truth index (missed) in the set.
    """

    kind: str
    class_index: int
    image_index: int
    box: tuple[float, float, float, float]
    score: float
    index: int


@dataclasses.dataclass
class ClassCases:
    """Cases of one class: the first ``gallery_size`` of each kind and the totals."""

    false_positives: list[GalleryCase]
    missed: list[GalleryCase]
    num_false_positives: int
    num_missed: int


def _missed_scores(ds: DetectionSet, gt: np.ndarray, iou_threshold: float) -> np.ndarray:
    """Per box of ``gt`` (indices): the best score of a detection of its class in its image
    (any score) overlapping it with IoU >= ``iou_threshold``; 0.0 when there is none."""
    out = np.zeros(len(gt))
    for j, k in enumerate(gt):
        d = np.flatnonzero((ds.dt_image == ds.gt_image[k]) & (ds.dt_class == ds.gt_class[k]))
        near = pairwise_iou(ds.gt_boxes[k], ds.dt_boxes[d])[0] >= iou_threshold
        out[j] = np.where(near, ds.dt_scores[d], 0.0).max(initial=0.0)
    return out


def operating_point_cases(
    ds: DetectionSet,
    thresholds: Sequence[float],
    iou_threshold: float = 0.4,
    gallery_size: int = 8,
) -> list[ClassCases]:
    """False positives and missed lesions of every class at its operating point.

    The detections with ``score >= thresholds[c]`` are matched to the ground-truth boxes by the
    FROC rule (:func:`~cxr.evaluation.metrics.matching.froc_matches`: per image and class,
    descending score, highest unmatched IoU, ``IoU >= iou_threshold``). Unmatched detections
    are false positives (highest score first); unmatched boxes are missed lesions (highest
    near-miss score first, then image order).

    Args:
        ds: the evaluated set (XYXY_ABS boxes).
        thresholds: (C,) per-class score thresholds (a score equal to it counts).
        iou_threshold: match IoU (the FROC IoU).
        gallery_size: cases kept per class and kind.

    Returns:
        one :class:`ClassCases` per class.
    """
    C = ds.num_classes
    thr = np.asarray(thresholds, np.float64).reshape(-1)
    if len(thr) != C:
        raise ValueError(f"{len(thr)} thresholds for {C} classes")
    kept = np.flatnonzero(ds.dt_scores >= thr[ds.dt_class])
    sub = dataclasses.replace(ds, dt_image=ds.dt_image[kept], dt_class=ds.dt_class[kept],
                              dt_boxes=ds.dt_boxes[kept], dt_scores=ds.dt_scores[kept],
                              dt_boxes_xywh=None)  # fmt: skip
    m = froc_matches(sub, iou_threshold)
    fps: list[list[GalleryCase]] = [[] for _ in range(C)]
    missed: list[list[GalleryCase]] = [[] for _ in range(C)]
    for k in kept[m.dt_index[~m.tp]]:
        box = tuple(float(v) for v in ds.dt_boxes[k])
        c, img = int(ds.dt_class[k]), int(ds.dt_image[k])
        fps[c].append(GalleryCase("false_positive", c, img, box, float(ds.dt_scores[k]), int(k)))
    lost = np.flatnonzero(~m.gt_matched)
    for k, score in zip(lost, _missed_scores(ds, lost, iou_threshold)):
        box = tuple(float(v) for v in ds.gt_boxes[k])
        c, img = int(ds.gt_class[k]), int(ds.gt_image[k])
        missed[c].append(GalleryCase("missed", c, img, box, float(score), int(k)))
    out = []
    for c in range(C):
        f = sorted(fps[c], key=lambda x: (-x.score, x.image_index, x.index))
        m_ = sorted(missed[c], key=lambda x: (-x.score, x.image_index, x.index))
        out.append(ClassCases(f[:gallery_size], m_[:gallery_size], len(f), len(m_)))
    return out


def _crop_window(box, shape, context: float, min_frac: float) -> tuple[int, int, int]:
    """Square window ``(x0, y0, side)`` around ``box`` inside an image of ``shape`` (H, W)."""
    h, w = shape[:2]
    x0, y0, x1, y1 = box
    side = max(x1 - x0, y1 - y0) * (1.0 + 2.0 * context)
    side = int(round(min(max(side, min_frac * max(h, w)), max(h, w))))
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    left = int(round(min(max(cx - side / 2, 0), max(w - side, 0))))
    top = int(round(min(max(cy - side / 2, 0), max(h - side, 0))))
    return left, top, side


def _draw_box(img, box, color, label: str, origin, scale) -> None:
    p0 = (int(round((box[0] - origin[0]) * scale)), int(round((box[1] - origin[1]) * scale)))
    p1 = (int(round((box[2] - origin[0]) * scale)), int(round((box[3] - origin[1]) * scale)))
    cv2.rectangle(img, p0, p1, color, 2, cv2.LINE_AA)
    if label:
        ty = p0[1] - 4 if p0[1] > 14 else p1[1] + 13
        org = (max(p0[0], 1), ty)
        cv2.putText(img, label, org, cv2.FONT_HERSHEY_SIMPLEX, 0.42, (0, 0, 0), 3, cv2.LINE_AA)
        cv2.putText(img, label, org, cv2.FONT_HERSHEY_SIMPLEX, 0.42, color, 1, cv2.LINE_AA)


def case_thumbnail(
    image: np.ndarray,
    case: GalleryCase,
    ds: DetectionSet,
    class_names: Sequence[str],
    threshold: float,
    size: int = 224,
    context: float = 1.0,
    min_frac: float = 0.25,
    quality: int = 80,
) -> bytes:
    """A JPEG thumbnail of the film region around one case.

    The square window is the case box plus ``context`` box sizes on each side (at least
    ``min_frac`` of the image side, at most the image), scaled to ``size`` pixels. Drawn on it:
    every ground-truth box of the image in green (labelled with its class when it is not the
    case's class) and, in red-orange with their scores, the case class's detections at or above
    ``threshold`` plus, for a missed lesion, the best overlapping detection below it.

    Args:
        image: (H, W) or (H, W, 3) uint8 film (BGR when 3 channels).
        case: the case; its boxes are XYXY_ABS pixels of ``image``.
        ds: the set the case comes from (for the other boxes of the image).
        class_names: names by class index.
        threshold: the class's operating-point threshold.

    Returns:
        JPEG bytes.
    """
    left, top, side = _crop_window(case.box, image.shape, context, min_frac)
    crop = image[top : top + side, left : left + side]
    if crop.ndim == 2:
        crop = cv2.cvtColor(crop, cv2.COLOR_GRAY2BGR)
    scale = size / max(side, 1)
    out_wh = (max(int(round(crop.shape[1] * scale)), 1), max(int(round(crop.shape[0] * scale)), 1))
    interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    thumb = np.ascontiguousarray(cv2.resize(crop, out_wh, interpolation=interp))
    origin = (left, top)
    for k in np.flatnonzero(ds.gt_image == case.image_index):
        c = int(ds.gt_class[k])
        label = "" if c == case.class_index else class_names[c]
        _draw_box(thumb, ds.gt_boxes[k], GT_COLOR, label, origin, scale)
    same = np.flatnonzero((ds.dt_image == case.image_index) & (ds.dt_class == case.class_index))
    shown = same[ds.dt_scores[same] >= threshold]
    if case.kind == "missed" and case.score > 0:
        near = same[(ds.dt_scores[same] == case.score) & (ds.dt_scores[same] < threshold)]
        shown = np.r_[shown, near[:1]]
    for k in shown:
        _draw_box(thumb, ds.dt_boxes[k], PRED_COLOR, f"{ds.dt_scores[k]:.2f}", origin, scale)
    ok, buf = cv2.imencode(".jpg", thumb, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise RuntimeError("JPEG encoding of a gallery thumbnail failed")
    return buf.tobytes()

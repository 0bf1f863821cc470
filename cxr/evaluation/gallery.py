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

from .metrics import DetectionSet

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


def _iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(n, m) IoU of XYXY_ABS boxes (continuous coordinates, no +1)."""
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(rb - lt, 0, None), axis=2)
    area = lambda x: np.prod(np.clip(x[:, 2:] - x[:, :2], 0, None), axis=1)  # noqa: E731
    union = area(a)[:, None] + area(b)[None, :] - inter
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(union > 0, inter / union, 0.0)


def _match_group(dt_boxes, dt_scores, gt_boxes, iou_threshold):
    """Greedy FROC matching inside one (image, class): detections by descending score (stable)
    each take the unmatched box with the highest IoU (first on ties) if IoU >= the threshold.

    Returns:
        (dt_matched (n,) bool, gt_matched (m,) bool).
    """
    order = np.argsort(-dt_scores, kind="stable")
    iou = _iou(dt_boxes, gt_boxes)
    dt_ok = np.zeros(len(dt_boxes), bool)
    gt_ok = np.zeros(len(gt_boxes), bool)
    for d in order:
        if not len(gt_boxes):
            break
        cand = np.where(gt_ok, -1.0, iou[d])
        g = int(np.argmax(cand))
        if cand[g] >= iou_threshold:
            dt_ok[d], gt_ok[g] = True, True
    return dt_ok, gt_ok


def operating_point_cases(
    ds: DetectionSet,
    thresholds: Sequence[float],
    iou_threshold: float = 0.4,
    gallery_size: int = 8,
) -> list[ClassCases]:
    """False positives and missed lesions of every class at its operating point.

    Per image and class, the detections with ``score >= thresholds[c]`` are matched to the
    class's ground-truth boxes by the FROC rule (descending score, highest unmatched IoU,
    ``IoU >= iou_threshold``). Unmatched detections are false positives (highest score first);
    unmatched boxes are missed lesions (highest near-miss score first, then image order).

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
    fps: list[list[GalleryCase]] = [[] for _ in range(C)]
    missed: list[list[GalleryCase]] = [[] for _ in range(C)]
    keep = ds.dt_scores >= thr[ds.dt_class] if len(ds.dt_scores) else np.zeros(0, bool)
    groups = set(zip(ds.gt_image.tolist(), ds.gt_class.tolist()))
    groups |= set(zip(ds.dt_image[keep].tolist(), ds.dt_class[keep].tolist()))
    for img, c in sorted(groups):
        d_all = np.flatnonzero((ds.dt_image == img) & (ds.dt_class == c))
        d = d_all[keep[d_all]]
        g = np.flatnonzero((ds.gt_image == img) & (ds.gt_class == c))
        dt_ok, gt_ok = _match_group(ds.dt_boxes[d], ds.dt_scores[d], ds.gt_boxes[g], iou_threshold)
        for k in d[~dt_ok]:
            box = tuple(float(v) for v in ds.dt_boxes[k])
            fps[c].append(
                GalleryCase("false_positive", c, img, box, float(ds.dt_scores[k]), int(k))
            )
        if (~gt_ok).any():
            near = _iou(ds.gt_boxes[g], ds.dt_boxes[d_all]) >= iou_threshold
            best = np.where(near, ds.dt_scores[d_all][None, :], 0.0).max(1, initial=0.0)
            for j in np.flatnonzero(~gt_ok):
                box = tuple(float(v) for v in ds.gt_boxes[g[j]])
                missed[c].append(GalleryCase("missed", c, img, box, float(best[j]), int(g[j])))
    out = []
    for c in range(C):
        f = sorted(fps[c], key=lambda x: (-x.score, x.image_index, x.index))
        m = sorted(missed[c], key=lambda x: (-x.score, x.image_index, x.index))
        out.append(ClassCases(f[:gallery_size], m[:gallery_size], len(f), len(m)))
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

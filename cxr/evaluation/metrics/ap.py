"""Average precision: COCO AP (pycocotools semantics) and mAP@0.4 (PASCAL VOC 2010), numpy.

Rules (docs/evaluation.md, "Metric definitions"):

- COCO AP: pycocotools ``COCOeval`` semantics, re-implemented vectorized (:func:`coco_ap`).
- mAP@0.4: PASCAL VOC 2010 rule at IoU > 0.4 (:func:`voc_ap`, matching by
  :func:`~.matching.voc_matches`).

Both take a :class:`~cxr.evaluation.records.DetectionSet`; :func:`voc_ap` also takes bootstrap
image weights (:mod:`.bootstrap`). Values are fractions 0-1; NaN where undefined.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from ...boxes import coco_box_iou
from ..records import DetectionSet
from .matching import (
    ClassMatches,
    box_slots,
    greedy_match,
    group_detections,
    pad_rows,
    voc_matches,
)

__all__ = [
    "COCO_AREA_RANGES",
    "COCO_IOU_THRESHOLDS",
    "COCO_RECALL_THRESHOLDS",
    "coco_ap",
    "voc_ap",
]

COCO_IOU_THRESHOLDS = np.linspace(0.5, 0.95, int(np.round((0.95 - 0.5) / 0.05)) + 1, endpoint=True)
COCO_RECALL_THRESHOLDS = np.linspace(
    0.0, 1.00, int(np.round((1.00 - 0.0) / 0.01)) + 1, endpoint=True
)
# name -> [min, max] box area in pixels^2, as pycocotools.
COCO_AREA_RANGES = {
    "all": (0.0, 1e5**2),
    "small": (0.0, 32.0**2),
    "medium": (32.0**2, 96.0**2),
    "large": (96.0**2, 1e5**2),
}


def coco_ap(
    ds: DetectionSet,
    iou_thresholds: Sequence[float] = COCO_IOU_THRESHOLDS,
    area_ranges: dict[str, tuple[float, float]] | None = None,
    max_dets: int = 100,
) -> dict:
    """COCO box AP with pycocotools semantics, vectorized (equal to ``COCOeval`` to 1e-9).

    Rules, as pycocotools ``COCOeval`` (iouType "bbox", useCats=1):

    - Boxes are COCO XYWH_ABS (``ds.gt_boxes_xywh`` / ``ds.dt_boxes_xywh``); IoU is computed as
      pycocotools' ``bbIou`` (``x + w`` formed internally, no +1; crowd boxes: intersection over
      detection area).
    - Per (image, class): detections sorted by descending score (stable: ties keep results-file
      order), at most ``max_dets`` kept. For each IoU threshold t, each detection in turn takes
      the unmatched box with the highest IoU >= t (equal IoUs: the later box), preferring boxes
      that are not ignored. Ignored boxes: crowd boxes and boxes whose ``gt_area`` is outside
      the area range. A detection matched to an ignored box, or unmatched with its own area
      ``w*h`` outside the range, is ignored (neither TP nor FP). Box ids 0 never count as
      matched (a pycocotools quirk, kept).
    - Per class and area range: all detections pooled, sorted by descending score (stable:
      image-id order, then rank in image); precision = TP / (TP + FP + eps), recall = TP /
      non-ignored boxes; precision made monotone (max to the right); sampled at 101 recall
      points (first detection reaching each recall; 0 beyond the maximum recall).
    - AP = mean of those 101 x T x classes values over classes with non-ignored boxes; AP50 /
      AP75 use t = 0.5 / 0.75 only. Per-class values as detectron2 reports them.

    Args:
        ds: the set; image / class indices must follow sorted image ids / category ids for
            bit-identical tie-breaking with pycocotools.
        iou_thresholds: IoU thresholds (default 0.50:0.05:0.95).
        area_ranges: name -> (min, max) area in pixels^2 (default all/small/medium/large).
        max_dets: detections kept per image and class.

    Returns:
        dict with ``precision`` (T, 101, C, A) array (-1 where a class has no non-ignored box),
        ``AP``, ``AP50``, ``AP75`` and ``AP<area>`` for other ranges (``APs``, ``APm``, ``APl``;
        NaN when no class has a box), and ``per_class_AP`` / ``per_class_AP50`` (C,) arrays
        (NaN for a class without boxes). Values are fractions 0-1.
    """
    area_ranges = dict(COCO_AREA_RANGES if area_ranges is None else area_ranges)
    thr = np.minimum(np.asarray(iou_thresholds, np.float64), 1 - 1e-10)
    rng = np.asarray(list(area_ranges.values()), np.float64)  # (A, 2)
    tps, fps, cstarts = _coco_matches(ds, thr, rng, max_dets)
    # non-ignored boxes per class and area
    gt_ign_flat = (
        ds.gt_crowd[:, None] | (ds.gt_area[:, None] < rng[:, 0]) | (ds.gt_area[:, None] > rng[:, 1])
    )
    npig = np.zeros((ds.num_classes, len(rng)), np.int64)
    np.add.at(npig, ds.gt_class, (~gt_ign_flat).astype(np.int64))
    precision = _coco_precision(tps, fps, cstarts, npig)
    return _coco_summary(precision, list(area_ranges), iou_thresholds)


def _coco_matches(ds: DetectionSet, thr: np.ndarray, rng: np.ndarray, max_dets: int):
    """pycocotools' per-image greedy matching, pooled per class.

    Returns:
        ``(tps, fps, cstarts)``: (A, T, D) bool true / false positives (ignored detections are
        neither) in pooled order (class, then descending score, stable by image id and rank in
        image), and (C + 1,) start of each class in that order.
    """
    T, C, A = len(thr), ds.num_classes, len(rng)
    g = group_detections(ds, max_dets=max_dets)
    slot_ok, sidx = box_slots(g)
    crowd = pad_rows(ds.gt_crowd)[sidx] & slot_ok
    garea = pad_rows(ds.gt_area)[sidx]
    ign = (
        crowd[:, None, :]
        | (garea[:, None, :] < rng[None, :, 0:1])
        | (garea[:, None, :] > rng[None, :, 1:2])
    )
    dts = g.dt_order
    ious = coco_box_iou(
        ds.dt_boxes_xywh[dts], pad_rows(ds.gt_boxes_xywh)[sidx[g.dt_group]], crowd[g.dt_group]
    )
    ious = np.where(slot_ok[g.dt_group], ious, 0.0)
    match = greedy_match(g, ious, np.asarray(thr), ign, crowd, last_on_tie=True)  # (D, A, T)
    has = match >= 0
    D = len(match)
    # Only detections that matched something at some threshold need the gather below.
    mr = np.flatnonzero(has.reshape(D, A * T).any(1))
    mslot = np.where(has[mr], match[mr], 0)
    rowg = g.dt_group[mr][:, None, None]
    dtm = np.zeros((D, A, T), bool)
    dt_ig = np.zeros((D, A, T), bool)
    dtm[mr] = has[mr] & (pad_rows(ds.gt_ids)[sidx[rowg, mslot]] != 0)
    dt_ig[mr] = has[mr] & ign[rowg, np.arange(A)[None, :, None], mslot]
    darea = ds.dt_boxes_xywh[dts, 2] * ds.dt_boxes_xywh[dts, 3]
    out_rng = (darea[:, None] < rng[None, :, 0]) | (darea[:, None] > rng[None, :, 1])  # (D, A)
    # Pooled order per class: image-id order, rank in image, then stable by -score.
    dt_cls = ds.dt_class[dts]
    dt_img = ds.dt_image[dts]
    pooled = np.lexsort((g.dt_rank, dt_img, dt_cls))
    pooled = pooled[np.lexsort((-ds.dt_scores[dts][pooled], dt_cls[pooled]))]
    cstarts = np.searchsorted(dt_cls[pooled], np.arange(C + 1))
    dtm = dtm[pooled].transpose(1, 2, 0)  # (A, T, D) in pooled order
    dt_ig = dt_ig[pooled].transpose(1, 2, 0) | (~dtm & out_rng[pooled].T[:, None, :])
    tps = np.ascontiguousarray(dtm & ~dt_ig)
    fps = np.ascontiguousarray(~dtm & ~dt_ig)
    return tps, fps, cstarts


def _coco_precision(tps, fps, cstarts, npig) -> np.ndarray:
    """(T, 101, C, A) interpolated precision at COCO's recall points (-1: no box to find)."""
    A, T, _ = tps.shape
    C = len(cstarts) - 1
    precision = -np.ones((T, len(COCO_RECALL_THRESHOLDS), C, A))
    for k in range(C):
        lo, hi = cstarts[k], cstarts[k + 1]
        nd = hi - lo
        for a in range(A):
            if npig[k, a] == 0:
                continue
            if nd == 0:
                precision[:, :, k, a] = 0.0
                continue
            tp = np.cumsum(tps[a, :, lo:hi], axis=1).astype(float)  # (T, nd)
            fp = np.cumsum(fps[a, :, lo:hi], axis=1).astype(float)
            rc = tp / npig[k, a]
            pr = tp / (fp + tp + np.spacing(1))
            pr = np.maximum.accumulate(pr[:, ::-1], axis=1)[:, ::-1]
            for t in range(T):
                inds = np.searchsorted(rc[t], COCO_RECALL_THRESHOLDS, side="left")
                ok = inds < nd
                precision[t, :, k, a] = np.where(ok, pr[t, np.minimum(inds, nd - 1)], 0.0)
    return precision


def _coco_summary(precision: np.ndarray, names: list[str], iou_thresholds) -> dict:
    """AP / AP50 / AP75 / AP per area range and per class from the precision array."""
    C = precision.shape[2]
    res: dict = {"precision": precision, "area_ranges": names}

    def mean_valid(s):
        s = s[s > -1]
        return float(np.mean(s)) if s.size else float("nan")

    a_all = names.index("all") if "all" in names else 0
    res["AP"] = mean_valid(precision[:, :, :, a_all])
    thr_list = list(np.asarray(iou_thresholds, np.float64))
    for name, t in (("AP50", 0.5), ("AP75", 0.75)):
        hits = [i for i, v in enumerate(thr_list) if v == t]
        res[name] = mean_valid(precision[hits][:, :, :, a_all]) if hits else float("nan")
    for a, name in enumerate(names):
        if name != "all":
            res["AP" + name[0]] = mean_valid(precision[:, :, :, a])
    hit50 = [i for i, v in enumerate(thr_list) if v == 0.5]
    res["per_class_AP"] = np.array([mean_valid(precision[:, :, k, a_all]) for k in range(C)])
    res["per_class_AP50"] = np.array(
        [mean_valid(precision[hit50][:, :, k, a_all]) if hit50 else np.nan for k in range(C)]
    )
    return res


def _weighted_ap(m: ClassMatches, W: np.ndarray, chunk: int = 64) -> np.ndarray:
    """All-point interpolated AP (VOC 2010) of one class for each weight row of ``W`` (B, N).

    AP = sum over detections of (recall increase) x (max precision at this or any later
    detection), which equals VOC's area under the monotone precision envelope. NaN when the
    (weighted) class has no box; 0 when it has boxes but no TP.
    """
    B = W.shape[0]
    npos = W @ m.gt_per_image.astype(np.float64)
    out = np.zeros(B)
    if len(m.tp) and m.tp.any():
        tpf = m.tp.astype(np.float64)
        for b0 in range(0, B, chunk):
            w = W[b0 : b0 + chunk][:, m.image]
            tpc = np.cumsum(w * tpf, axis=1)
            allc = np.cumsum(w, axis=1)
            with np.errstate(divide="ignore", invalid="ignore"):
                prec = np.where(allc > 0, tpc / allc, 0.0)
            env = np.maximum.accumulate(prec[:, ::-1], axis=1)[:, ::-1]
            out[b0 : b0 + chunk] = (w * tpf * env).sum(1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(npos > 0, out / npos, np.nan)


def voc_ap(
    ds: DetectionSet,
    iou_threshold: float = 0.4,
    weights: np.ndarray | None = None,
    matches: list[ClassMatches] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """mAP at IoU > ``iou_threshold`` by the PASCAL VOC 2010 rule (the VinBigData metric).

    Matching: :func:`voc_matches`. AP per class: all-point interpolation (area under the
    precision envelope, every recall step counted). mAP: mean over classes that have boxes.

    Args:
        weights: (B, N) image weights (bootstrap resamples); default one row of ones.
        matches: precomputed :func:`voc_matches` (reused across calls).

    Returns:
        ``(per_class, mean)``: (B, C) AP (NaN for a class without boxes) and (B,) mAP (NaN if no
        class has boxes). Fractions 0-1.
    """
    W = np.ones((1, ds.num_images)) if weights is None else np.asarray(weights, np.float64)
    matches = voc_matches(ds, iou_threshold) if matches is None else matches
    per = np.stack([_weighted_ap(m, W) for m in matches], 1) if matches else np.zeros((len(W), 0))
    with np.errstate(all="ignore"):
        valid = ~np.isnan(per)
        mean = np.where(valid.any(1), np.nansum(per, 1) / np.maximum(valid.sum(1), 1), np.nan)
    return per, mean

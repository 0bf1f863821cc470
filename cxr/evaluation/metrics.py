"""Detection and image-level metrics for chest X-ray lesion detection, in pure numpy.

Every function works on one :class:`DetectionSet`: flat arrays of ground-truth boxes and
detections, each tagged with an image index ``0..N-1`` and a class index ``0..C-1``. Boxes are
XYXY_ABS pixels (``x1, y1, x2, y2``) except in :func:`coco_ap`, which reads COCO XYWH_ABS boxes
exactly as pycocotools does (see there why). Images without any ground-truth box are part of the
set (``num_images``) and count as negatives for every class.

Rules (docs/evaluation.md, "Metric definitions"):

- COCO AP: pycocotools ``COCOeval`` semantics, re-implemented vectorized (:func:`coco_ap`).
- mAP@0.4: PASCAL VOC 2010 rule at IoU > 0.4 (:func:`voc_ap`).
- IoBB accuracy (ChestX-ray8): :func:`iobb_accuracy`.
- FROC and CPM: :func:`froc`.
- Image-level confusion counts, sensitivity, specificity, PPV, NPV, F1, AUROC:
  :func:`image_level_metrics`, :func:`image_scores`.
- Percentile bootstrap over patients: :func:`bootstrap_weights`, :func:`percentile_ci`.

Undefined ratios (0 / 0, e.g. sensitivity of a class without positives) are NaN, never an error.

Bootstrap: every metric that has a confidence interval takes an image-weight matrix ``W``
(``B x N``; row ``b`` = how many times each image is drawn in resample ``b``). The point estimate
is the same code with ``W = ones((1, N))``. Matching of detections to boxes happens inside one
image, so it does not change under resampling; only counts are re-weighted. This keeps 1,000
resamples vectorized.
"""

from __future__ import annotations

import dataclasses
import warnings
from typing import Sequence

import numpy as np

from .operating_points import positive_findings

__all__ = [
    "COCO_AREA_RANGES",
    "COCO_IOU_THRESHOLDS",
    "COCO_RECALL_THRESHOLDS",
    "FROC_FPS_PER_IMAGE",
    "IMAGE_LEVEL_KEYS",
    "IOBB_THRESHOLDS",
    "ClassMatches",
    "DetectionSet",
    "FrocMatches",
    "auroc",
    "bootstrap_weights",
    "coco_ap",
    "froc",
    "froc_curve",
    "froc_matches",
    "image_level_metrics",
    "image_scores",
    "iobb_accuracy",
    "percentile_ci",
    "voc_ap",
    "voc_matches",
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
FROC_FPS_PER_IMAGE = (0.125, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0)
IOBB_THRESHOLDS = (0.1, 0.25, 0.5, 0.75, 0.9)


def _f64(a, shape_tail=()) -> np.ndarray:
    a = np.asarray(a, dtype=np.float64)
    if a.size == 0:
        a = a.reshape((0,) + shape_tail)
    return a


@dataclasses.dataclass
class DetectionSet:
    """Ground truth and detections of one evaluation set, as flat arrays.

    Attributes:
        num_images: N, images in the set (including images without boxes or detections).
        num_classes: C.
        gt_image, gt_class: (G,) int image / class index of each ground-truth box.
        gt_boxes: (G, 4) float64 XYXY_ABS pixels.
        dt_image, dt_class: (D,) int image / class index of each detection.
        dt_boxes: (D, 4) float64 XYXY_ABS pixels.
        dt_scores: (D,) float64 confidence.
        gt_area: (G,) area used by COCO's area ranges (default: box area, pixels^2).
        gt_crowd: (G,) bool COCO ``iscrowd`` (COCO AP only; other metrics treat them as boxes).
        gt_ids: (G,) int COCO annotation ids (COCO AP only; default 1..G).
        gt_boxes_xywh, dt_boxes_xywh: optional COCO XYWH_ABS boxes as read from COCO JSON; when
            given, :func:`coco_ap` uses them untouched so that it agrees bit for bit with
            pycocotools (which computes ``x + w`` itself).

    Order matters for COCO tie-breaking exactly as in pycocotools: image index = rank of the
    image id in sorted order, class index = rank of the category id, and detections of one image
    keep the order of the results file.
    """

    num_images: int
    num_classes: int
    gt_image: np.ndarray
    gt_class: np.ndarray
    gt_boxes: np.ndarray
    dt_image: np.ndarray
    dt_class: np.ndarray
    dt_boxes: np.ndarray
    dt_scores: np.ndarray
    gt_area: np.ndarray | None = None
    gt_crowd: np.ndarray | None = None
    gt_ids: np.ndarray | None = None
    gt_boxes_xywh: np.ndarray | None = None
    dt_boxes_xywh: np.ndarray | None = None

    def __post_init__(self):
        self.gt_image = np.asarray(self.gt_image, dtype=np.int64).reshape(-1)
        self.gt_class = np.asarray(self.gt_class, dtype=np.int64).reshape(-1)
        self.dt_image = np.asarray(self.dt_image, dtype=np.int64).reshape(-1)
        self.dt_class = np.asarray(self.dt_class, dtype=np.int64).reshape(-1)
        self.gt_boxes = _f64(self.gt_boxes, (4,)).reshape(-1, 4)
        self.dt_boxes = _f64(self.dt_boxes, (4,)).reshape(-1, 4)
        self.dt_scores = _f64(self.dt_scores).reshape(-1)
        G, D = len(self.gt_image), len(self.dt_image)
        if self.gt_boxes_xywh is None:
            b = self.gt_boxes
            self.gt_boxes_xywh = np.stack(
                [b[:, 0], b[:, 1], b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]], 1
            )
        if self.dt_boxes_xywh is None:
            b = self.dt_boxes
            self.dt_boxes_xywh = np.stack(
                [b[:, 0], b[:, 1], b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]], 1
            )
        self.gt_boxes_xywh = _f64(self.gt_boxes_xywh, (4,)).reshape(-1, 4)
        self.dt_boxes_xywh = _f64(self.dt_boxes_xywh, (4,)).reshape(-1, 4)
        if self.gt_area is None:
            self.gt_area = self.gt_boxes_xywh[:, 2] * self.gt_boxes_xywh[:, 3]
        self.gt_area = _f64(self.gt_area).reshape(-1)
        self.gt_crowd = (
            np.zeros(G, bool)
            if self.gt_crowd is None
            else np.asarray(self.gt_crowd, bool).reshape(-1)
        )
        self.gt_ids = (
            np.arange(1, G + 1) if self.gt_ids is None else np.asarray(self.gt_ids).reshape(-1)
        )
        for name, arr, n in [
            ("gt_class", self.gt_class, G),
            ("gt_boxes", self.gt_boxes, G),
            ("gt_area", self.gt_area, G),
            ("gt_crowd", self.gt_crowd, G),
            ("gt_ids", self.gt_ids, G),
            ("gt_boxes_xywh", self.gt_boxes_xywh, G),
            ("dt_class", self.dt_class, D),
            ("dt_boxes", self.dt_boxes, D),
            ("dt_scores", self.dt_scores, D),
            ("dt_boxes_xywh", self.dt_boxes_xywh, D),
        ]:
            if len(arr) != n:
                raise ValueError(f"DetectionSet: field {name} has {len(arr)} rows, expected {n}")
        for name, arr, hi in [
            ("gt_image", self.gt_image, self.num_images),
            ("dt_image", self.dt_image, self.num_images),
            ("gt_class", self.gt_class, self.num_classes),
            ("dt_class", self.dt_class, self.num_classes),
        ]:
            if len(arr) and (arr.min() < 0 or arr.max() >= hi):
                raise ValueError(f"DetectionSet: field {name} has values outside [0, {hi})")

    @property
    def gt_counts(self) -> np.ndarray:
        """(N, C) int: ground-truth boxes per image and class."""
        m = np.zeros((self.num_images, self.num_classes), np.int64)
        np.add.at(m, (self.gt_image, self.gt_class), 1)
        return m


# ----------------------------------------------------------------------------------------------
# Grouping and greedy matching (shared by COCO and FROC)
# ----------------------------------------------------------------------------------------------


@dataclasses.dataclass
class _Groups:
    """Detections and boxes grouped by (image, class); padded box slots per group."""

    dt_order: np.ndarray  # detection indices sorted by (group, -score, original order)
    dt_group: np.ndarray  # group of each sorted detection
    dt_rank: np.ndarray  # rank of each sorted detection inside its group
    gt_slot_index: np.ndarray  # (n_groups, S) index into gt arrays, -1 = empty slot
    gt_group_of: np.ndarray  # (G,) group row of each gt
    group_key: np.ndarray  # (n_groups,) image * C + class


def _group(ds: DetectionSet, max_dets: int | None = None) -> _Groups:
    C = ds.num_classes
    dkey = ds.dt_image * C + ds.dt_class
    # lexsort is stable: ties in score keep the results-file order, as pycocotools' mergesort.
    order = np.lexsort((-ds.dt_scores, dkey))
    skey = dkey[order]
    starts = np.flatnonzero(np.r_[True, skey[1:] != skey[:-1]]) if len(skey) else np.zeros(0, int)
    counts = np.diff(np.r_[starts, len(skey)])
    rank = np.arange(len(skey)) - np.repeat(starts, counts)
    if max_dets is not None:
        keep = rank < max_dets
        order, skey, rank = order[keep], skey[keep], rank[keep]
    gkey = ds.gt_image * C + ds.gt_class
    keys = np.unique(np.r_[skey, gkey])
    dt_group = np.searchsorted(keys, skey)
    gt_group = np.searchsorted(keys, gkey)
    gorder = np.argsort(gt_group, kind="stable")
    sg = gt_group[gorder]
    gstarts = np.flatnonzero(np.r_[True, sg[1:] != sg[:-1]]) if len(sg) else np.zeros(0, int)
    gcounts = np.diff(np.r_[gstarts, len(sg)])
    slot = np.arange(len(sg)) - np.repeat(gstarts, gcounts)
    S = int(gcounts.max()) if len(gcounts) else 0
    slots = np.full((len(keys), max(S, 1)), -1, np.int64)
    slots[sg, slot] = gorder
    return _Groups(order, dt_group, rank, slots, gt_group, keys)


def _pad(a: np.ndarray) -> np.ndarray:
    """``a`` with one zero row appended: empty box slots index it (row ``len(a)``)."""
    return np.concatenate([a, np.zeros((1,) + a.shape[1:], a.dtype)])


def _slots(g: _Groups) -> tuple[np.ndarray, np.ndarray]:
    """(slot_ok, sidx): which slots hold a box, and gt index per slot (G = the padding row)."""
    slot_ok = g.gt_slot_index >= 0
    return slot_ok, np.where(slot_ok, g.gt_slot_index, len(g.gt_group_of))


def _pairwise_xywh_iou(dt: np.ndarray, gt: np.ndarray, crowd: np.ndarray) -> np.ndarray:
    """IoU of detection rows ``dt`` (n, 4) against padded boxes ``gt`` (n, S, 4), COCO XYWH_ABS.

    Same arithmetic as pycocotools' ``bbIou``: ``w = min(x+w) - max(x)``, no +1; for a crowd box
    the union is the detection's area.
    """
    dx, dy, dw, dh = (dt[:, i : i + 1] for i in range(4))
    gx, gy, gw, gh = (gt[..., i] for i in range(4))
    w = np.minimum(dw + dx, gw + gx) - np.maximum(dx, gx)
    h = np.minimum(dh + dy, gh + gy) - np.maximum(dy, gy)
    inter = np.where((w > 0) & (h > 0), w * h, 0.0)
    da = dw * dh
    union = np.where(crowd, da, da + gw * gh - inter)
    with np.errstate(divide="ignore", invalid="ignore"):
        iou = np.where(inter > 0, inter / union, 0.0)
    return iou


def _pairwise_xyxy(dt: np.ndarray, gt: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Intersection, detection area and box area of rows ``dt`` (n, 4) vs padded ``gt`` (n, S, 4),
    XYXY_ABS pixels, continuous coordinates (no +1)."""
    w = np.minimum(dt[:, None, 2], gt[..., 2]) - np.maximum(dt[:, None, 0], gt[..., 0])
    h = np.minimum(dt[:, None, 3], gt[..., 3]) - np.maximum(dt[:, None, 1], gt[..., 1])
    inter = np.clip(w, 0, None) * np.clip(h, 0, None)
    da = (dt[:, 2] - dt[:, 0]) * (dt[:, 3] - dt[:, 1])
    ga = (gt[..., 2] - gt[..., 0]) * (gt[..., 3] - gt[..., 1])
    return inter, da[:, None], ga


def _xyxy_iou(dt: np.ndarray, gt: np.ndarray) -> np.ndarray:
    inter, da, ga = _pairwise_xyxy(dt, gt)
    union = da + ga - inter
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(union > 0, inter / union, 0.0)


def _greedy_match(
    g: _Groups,
    ious: np.ndarray,
    thresholds: np.ndarray,
    gt_ignore: np.ndarray,
    gt_crowd: np.ndarray,
    last_on_tie: bool,
) -> np.ndarray:
    """Greedy one-to-one matching by descending score inside each (image, class) group.

    Each detection in turn takes the still-unmatched box (crowd boxes stay available) with the
    highest IoU >= threshold; boxes not ignored are preferred over ignored ones (pycocotools).

    Args:
        ious: (n_sorted_dets, S) IoU of each sorted detection with its group's box slots.
        thresholds: (T,) IoU thresholds; a match needs IoU >= threshold.
        gt_ignore: (n_groups, A, S) bool ignore flag per slot for each of A settings.
        gt_crowd: (n_groups, S) bool.
        last_on_tie: equal IoUs go to the later slot (pycocotools) instead of the earlier.

    Returns:
        (n_sorted_dets, A, T) int slot matched by each detection, -1 if none.
    """
    n_groups, A, S = gt_ignore.shape
    T = len(thresholds)
    out = np.full((len(g.dt_group), A, T), -1, np.int64)
    if len(g.dt_group) == 0:
        return out
    has_gt = (g.gt_slot_index >= 0).any(1)
    # Only groups with both detections and boxes need matching; sort them by detection count
    # (descending) so that the groups still active at rank d form a prefix.
    dcount = np.bincount(g.dt_group, minlength=n_groups)
    active = np.flatnonzero(has_gt & (dcount > 0))
    if len(active) == 0:
        return out
    active = active[np.argsort(-dcount[active], kind="stable")]
    first = np.searchsorted(g.dt_group, active)  # sorted dets: group-major
    nd = dcount[active]
    valid = g.gt_slot_index[active] >= 0  # (K, S)
    ign = gt_ignore[active]  # (K, A, S)
    crowd = gt_crowd[active][:, None, None, :]
    matched = np.zeros((len(active), A, T, S), bool)
    thr = thresholds[None, None, :, None]
    for d in range(int(nd.max())):
        K = int(np.searchsorted(-nd, -d, side="left"))  # groups with nd > d (nd descending)
        rows = first[:K] + d
        iou = ious[rows][:, None, None, :]  # (K, 1, 1, S)
        elig = valid[:K, None, None, :] & (~matched[:K] | crowd[:K]) & (iou >= thr)
        nonig = elig & ~ign[:K, :, None, :]
        use = np.where(nonig.any(-1, keepdims=True), nonig, elig)
        masked = np.where(use, iou, -1.0)
        if last_on_tie:
            idx = S - 1 - np.argmax(masked[..., ::-1], axis=-1)
        else:
            idx = np.argmax(masked, axis=-1)
        found = use.any(-1)  # (K, A, T)
        kk, aa, tt = np.nonzero(found)
        ss = idx[kk, aa, tt]
        matched[kk, aa, tt, ss] = True
        out[rows] = np.where(found, idx, -1)
    return out


# ----------------------------------------------------------------------------------------------
# COCO AP
# ----------------------------------------------------------------------------------------------


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
    g = _group(ds, max_dets=max_dets)
    slot_ok, sidx = _slots(g)
    crowd = _pad(ds.gt_crowd)[sidx] & slot_ok
    garea = _pad(ds.gt_area)[sidx]
    ign = (
        crowd[:, None, :]
        | (garea[:, None, :] < rng[None, :, 0:1])
        | (garea[:, None, :] > rng[None, :, 1:2])
    )
    dts = g.dt_order
    ious = _pairwise_xywh_iou(
        ds.dt_boxes_xywh[dts], _pad(ds.gt_boxes_xywh)[sidx[g.dt_group]], crowd[g.dt_group]
    )
    ious = np.where(slot_ok[g.dt_group], ious, 0.0)
    match = _greedy_match(g, ious, np.asarray(thr), ign, crowd, last_on_tie=True)  # (D, A, T)
    has = match >= 0
    D = len(match)
    # Only detections that matched something at some threshold need the gather below.
    mr = np.flatnonzero(has.reshape(D, A * T).any(1))
    mslot = np.where(has[mr], match[mr], 0)
    rowg = g.dt_group[mr][:, None, None]
    dtm = np.zeros((D, A, T), bool)
    dt_ig = np.zeros((D, A, T), bool)
    dtm[mr] = has[mr] & (_pad(ds.gt_ids)[sidx[rowg, mslot]] != 0)
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


# ----------------------------------------------------------------------------------------------
# VOC mAP@0.4
# ----------------------------------------------------------------------------------------------


@dataclasses.dataclass
class ClassMatches:
    """Detections of one class sorted by descending score with their TP flag.

    Attributes:
        image: (n,) image index of each detection; tp: (n,) bool; scores: (n,) float.
        gt_per_image: (N,) boxes of this class per image (the recall denominator).
    """

    image: np.ndarray
    tp: np.ndarray
    scores: np.ndarray
    gt_per_image: np.ndarray


def _best_iou_per_det(ds: DetectionSet, g: _Groups) -> tuple[np.ndarray, np.ndarray]:
    """Highest IoU (XYXY_ABS, no +1) of each sorted detection with a box of its class in its
    image, and the gt index reaching it (first on ties); (-inf, -1) when there is none."""
    slot_ok, sidx = _slots(g)
    rows_ok = slot_ok[g.dt_group]
    iou = _xyxy_iou(ds.dt_boxes[g.dt_order], _pad(ds.gt_boxes)[sidx[g.dt_group]])
    iou = np.where(rows_ok, iou, -np.inf)
    j = np.argmax(iou, axis=1) if iou.shape[0] else np.zeros(0, np.int64)
    best = iou[np.arange(len(j)), j]
    gidx = np.where(np.isfinite(best), sidx[g.dt_group, j], -1)
    return best, gidx


def voc_matches(ds: DetectionSet, iou_threshold: float = 0.4) -> list[ClassMatches]:
    """TP/FP flags by the PASCAL VOC 2010 rule, per class.

    Rule: per class, detections sorted by descending score (stable on input order); each takes
    the box of its class in its image with the highest IoU (XYXY_ABS, continuous, no +1; first
    box on ties), whether or not that box is taken. TP if that IoU > ``iou_threshold`` (strict)
    and the box was not taken by an earlier TP, else FP (including images without boxes).

    Returns:
        one :class:`ClassMatches` per class.
    """
    g = _group(ds)
    best, gidx = _best_iou_per_det(ds, g)
    dts = g.dt_order
    scores = ds.dt_scores[dts]
    cls = ds.dt_class[dts]
    order = np.lexsort((dts, -scores, cls))  # ties: input order
    hit = best[order] > iou_threshold
    gh = np.where(hit, gidx[order], -1)
    tp = np.zeros(len(order), bool)
    hi = np.flatnonzero(hit)
    _, first = np.unique(gh[hi], return_index=True)  # first (highest-score) claim of each box
    tp[hi[first]] = True
    counts = ds.gt_counts
    cstarts = np.searchsorted(cls[order], np.arange(ds.num_classes + 1))
    out = []
    for c in range(ds.num_classes):
        s = slice(cstarts[c], cstarts[c + 1])
        o = order[s]
        out.append(ClassMatches(ds.dt_image[dts][o], tp[s], scores[o], counts[:, c]))
    return out


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


# ----------------------------------------------------------------------------------------------
# IoBB
# ----------------------------------------------------------------------------------------------


def iobb_accuracy(
    ds: DetectionSet,
    score_thresholds: np.ndarray | float,
    thresholds: Sequence[float] = IOBB_THRESHOLDS,
) -> np.ndarray:
    """Localization accuracy by intersection over predicted-box area (ChestX-ray8, Table 4).

    Rule: a box is localized at T when some detection of its class in its image with score >=
    the class's score threshold has intersection / detection area > T (strict; XYXY_ABS,
    continuous, zero-area detections never localize). Accuracy = localized boxes / boxes, per
    class.

    Args:
        score_thresholds: scalar or (C,) per-class minimum score of the detections used (the
            image-level operating points; otherwise every low-score box would localize).
        thresholds: the T values.

    Returns:
        (len(thresholds), C) accuracy; NaN for a class without boxes.
    """
    thr = np.broadcast_to(np.asarray(score_thresholds, np.float64), (ds.num_classes,))
    keep = positive_findings(ds.dt_scores, thr[ds.dt_class])
    sub = dataclasses.replace(
        ds,
        dt_image=ds.dt_image[keep],
        dt_class=ds.dt_class[keep],
        dt_boxes=ds.dt_boxes[keep],
        dt_scores=ds.dt_scores[keep],
        dt_boxes_xywh=None,
    )
    g = _group(sub)
    slot_ok, sidx = _slots(g)
    best = np.zeros(len(ds.gt_image) + 1)
    if len(g.dt_order):
        inter, da, _ = _pairwise_xyxy(sub.dt_boxes[g.dt_order], _pad(ds.gt_boxes)[sidx[g.dt_group]])
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = np.where(da > 0, inter / da, 0.0)
        ok = slot_ok[g.dt_group]
        np.maximum.at(best, sidx[g.dt_group][ok], ratio[ok])
    T = np.asarray(thresholds, np.float64)
    loc = best[None, :-1] > T[:, None]  # (T, G)
    out = np.full((len(T), ds.num_classes), np.nan)
    n = np.bincount(ds.gt_class, minlength=ds.num_classes)
    for i in range(len(T)):
        hit = np.bincount(ds.gt_class, weights=loc[i].astype(float), minlength=ds.num_classes)
        out[i] = np.where(n > 0, hit / np.maximum(n, 1), np.nan)
    return out


# ----------------------------------------------------------------------------------------------
# FROC
# ----------------------------------------------------------------------------------------------


@dataclasses.dataclass
class FrocMatches:
    """All detections pooled, sorted by descending score, with TP flags.

    Attributes:
        image, cls: (n,) image / class index; tp: (n,) bool; scores: (n,) float.
        gt_counts: (N, C) boxes per image and class.
    """

    image: np.ndarray
    cls: np.ndarray
    tp: np.ndarray
    scores: np.ndarray
    gt_counts: np.ndarray


def froc_matches(ds: DetectionSet, iou_threshold: float = 0.4) -> FrocMatches:
    """TP/FP flags for FROC.

    Rule: detections of all classes pooled and sorted by descending score (stable); each takes
    the still-unmatched box of its own class in its image with the highest IoU (XYXY_ABS,
    continuous, no +1; first box on ties) if that IoU >= ``iou_threshold``; otherwise it is a
    false positive. So a right-class box in the wrong place, and a second box on an already
    found lesion, are false positives.
    """
    g = _group(ds)
    n_groups, S = g.gt_slot_index.shape
    slot_ok, sidx = _slots(g)
    iou = _xyxy_iou(ds.dt_boxes[g.dt_order], _pad(ds.gt_boxes)[sidx[g.dt_group]])
    iou = np.where(slot_ok[g.dt_group], iou, 0.0)
    none = np.zeros((n_groups, 1, S), bool)
    m = _greedy_match(
        g, iou, np.array([iou_threshold], np.float64), none, np.zeros((n_groups, S), bool), False
    )[:, 0, 0]
    dts = g.dt_order
    order = np.lexsort((dts, -ds.dt_scores[dts]))  # ties: input order
    return FrocMatches(
        ds.dt_image[dts][order],
        ds.dt_class[dts][order],
        (m >= 0)[order],
        ds.dt_scores[dts][order],
        ds.gt_counts,
    )


def _froc_curve_weighted(
    tp: np.ndarray,
    scores: np.ndarray,
    image: np.ndarray,
    n_gt: np.ndarray,
    W: np.ndarray,
    fps_points: np.ndarray,
    chunk: int = 64,
) -> np.ndarray:
    """Sensitivity at each FP/image point, for each weight row (B, len(fps_points))."""
    B = W.shape[0]
    npos = W @ n_gt.astype(np.float64)
    nimg = W.sum(1)
    out = np.zeros((B, len(fps_points)))
    n = len(tp)
    if n:
        # Operating points exist only between different scores (a tie cannot be split).
        cut = np.flatnonzero(np.r_[scores[1:] != scores[:-1], True])
        tpf = tp.astype(np.float64)
        for b0 in range(0, B, chunk):
            w = W[b0 : b0 + chunk][:, image]
            tpc = np.cumsum(w * tpf, axis=1)[:, cut]
            fpc = np.cumsum(w * (1.0 - tpf), axis=1)[:, cut]
            rate = fpc / nimg[b0 : b0 + chunk, None]
            for j, r in enumerate(fps_points):
                # monotone: last cut with rate <= r (sensitivity 0 when none)
                k = (rate <= r).sum(1) - 1
                val = np.take_along_axis(tpc, np.maximum(k, 0)[:, None], 1)[:, 0]
                out[b0 : b0 + chunk, j] = np.where(k >= 0, val, 0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(npos[:, None] > 0, out / npos[:, None], np.nan)


def froc(
    ds: DetectionSet,
    iou_threshold: float = 0.4,
    fps_per_image: Sequence[float] = FROC_FPS_PER_IMAGE,
    weights: np.ndarray | None = None,
    matches: FrocMatches | None = None,
    per_class: bool = False,
) -> dict:
    """FROC sensitivities at fixed false-positive rates, and CPM.

    Rule: matching by :func:`froc_matches`. Over score thresholds (a detection is kept when its
    score >= threshold; thresholds between distinct scores only), sensitivity = matched boxes /
    all boxes and FP rate = false positives / number of images (images without boxes
    included). Sensitivity at rate r = the highest sensitivity over thresholds with FP rate <= r
    (a step, no interpolation; 0 when no threshold qualifies). CPM = mean over the rates.
    Per-class curves use the same rule on one class's detections and boxes.

    Args:
        weights: (B, N) bootstrap image weights; default one row of ones.
        matches: precomputed :func:`froc_matches`.
        per_class: also return per-class sensitivities.

    Returns:
        dict with ``fps_per_image`` (R,), ``sensitivity`` (B, R), ``cpm`` (B,) (NaN without
        boxes) and, if ``per_class``, ``per_class_sensitivity`` (B, C, R), ``per_class_cpm``
        (B, C).
    """
    W = np.ones((1, ds.num_images)) if weights is None else np.asarray(weights, np.float64)
    m = froc_matches(ds, iou_threshold) if matches is None else matches
    pts = np.asarray(fps_per_image, np.float64)
    sens = _froc_curve_weighted(m.tp, m.scores, m.image, m.gt_counts.sum(1), W, pts)
    out = {"fps_per_image": pts, "sensitivity": sens, "cpm": sens.mean(1)}
    if per_class:
        curves = []
        for c in range(ds.num_classes):
            k = m.cls == c
            curves.append(
                _froc_curve_weighted(m.tp[k], m.scores[k], m.image[k], m.gt_counts[:, c], W, pts)
            )
        pcs = np.stack(curves, 1) if curves else np.zeros((len(W), 0, len(pts)))
        out["per_class_sensitivity"] = pcs
        out["per_class_cpm"] = pcs.mean(2)
    return out


def froc_curve(
    m: FrocMatches, num_images: int, cls: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """The full FROC curve (for plots): FP/image and sensitivity at every score threshold.

    Args:
        cls: restrict to one class (default: all classes pooled).

    Returns:
        ``(fp_rate, sensitivity)`` arrays, starting at (0, 0).
    """
    sel = np.ones(len(m.tp), bool) if cls is None else m.cls == cls
    tp, sc = m.tp[sel], m.scores[sel]
    npos = m.gt_counts.sum() if cls is None else m.gt_counts[:, cls].sum()
    cut = np.flatnonzero(np.r_[sc[1:] != sc[:-1], True]) if len(sc) else np.zeros(0, int)
    tpc = np.cumsum(tp)[cut]
    fpc = np.cumsum(~tp)[cut]
    with np.errstate(divide="ignore", invalid="ignore"):
        sens = tpc / npos if npos else np.full(len(cut), np.nan)
    return np.r_[0.0, fpc / max(num_images, 1)], np.r_[0.0, sens]


# ----------------------------------------------------------------------------------------------
# Image level
# ----------------------------------------------------------------------------------------------


def image_scores(ds: DetectionSet) -> tuple[np.ndarray, np.ndarray]:
    """Image-level scores and labels per class.

    Rule: image score of a class = max score of that class's detections in the image (0 if
    none); the image is positive for the class when it has >= 1 box of that class (images
    without boxes are negatives for every class).

    Returns:
        ``(scores, labels)``: (N, C) float64 and (N, C) bool.
    """
    s = np.zeros((ds.num_images, ds.num_classes))
    if len(ds.dt_scores):
        np.maximum.at(s, (ds.dt_image, ds.dt_class), np.maximum(ds.dt_scores, 0.0))
    return s, ds.gt_counts > 0


def auroc(scores: np.ndarray, labels: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
    """Area under the ROC curve of image scores (Mann-Whitney, ties count 1/2).

    AUROC = P(score of a positive > score of a negative) + 1/2 P(equal), over all
    positive-negative pairs (each weighted by the product of image weights).

    Args:
        scores: (N,) float; labels: (N,) bool; weights: (B, N) image weights (default ones).

    Returns:
        (B,) AUROC; NaN when there is no positive or no negative.
    """
    W = np.ones((1, len(scores))) if weights is None else np.asarray(weights, np.float64)
    y = np.asarray(labels, bool)
    order = np.argsort(scores, kind="stable")
    s = np.asarray(scores)[order]
    yo = y[order]
    _, inv = np.unique(s, return_inverse=True)
    n_u = inv.max() + 1 if len(inv) else 0
    out = np.empty(W.shape[0])
    for b0 in range(0, W.shape[0], 256):
        w = W[b0 : b0 + 256][:, order]
        wn = w * ~yo
        wp = w * yo
        # negative weight per distinct score, then strictly-below cumulative
        neg_u = np.zeros((w.shape[0], n_u))
        pos_u = np.zeros((w.shape[0], n_u))
        if n_u:
            starts = np.flatnonzero(np.r_[True, inv[1:] != inv[:-1]])
            neg_u = np.add.reduceat(wn, starts, axis=1)
            pos_u = np.add.reduceat(wp, starts, axis=1)
        below = np.cumsum(neg_u, axis=1) - neg_u
        num = (pos_u * (below + 0.5 * neg_u)).sum(1)
        den = wp.sum(1) * wn.sum(1)
        with np.errstate(divide="ignore", invalid="ignore"):
            out[b0 : b0 + 256] = np.where(den > 0, num / den, np.nan)
    return out


IMAGE_LEVEL_KEYS = (
    "tp",
    "fp",
    "tn",
    "fn",
    "sensitivity",
    "specificity",
    "ppv",
    "npv",
    "f1",
    "auroc",
)


def image_level_metrics(
    scores: np.ndarray, labels: np.ndarray, threshold: float, weights: np.ndarray | None = None
) -> dict[str, np.ndarray]:
    """Confusion counts and rates of one binary image-level task.

    Rules: predicted positive by
    :func:`~cxr.evaluation.operating_points.positive_findings` (score >= threshold and
    score > 0: an image without a detection is never positive). sensitivity = TP/(TP+FN), specificity = TN/(TN+FP), PPV = TP/(TP+FP),
    NPV = TN/(TN+FN), F1 = 2TP/(2TP+FP+FN); each NaN when its denominator is 0. AUROC by
    :func:`auroc` (threshold-free).

    Args:
        scores: (N,) image scores; labels: (N,) bool ground truth.
        threshold: operating point.
        weights: (B, N) bootstrap image weights (default one row of ones).

    Returns:
        dict key -> (B,) array for the keys in ``IMAGE_LEVEL_KEYS`` (counts are weighted sums).
    """
    W = np.ones((1, len(scores))) if weights is None else np.asarray(weights, np.float64)
    y = np.asarray(labels, bool)
    p = positive_findings(scores, threshold)
    M = np.stack([y & p, ~y & p, ~y & ~p, y & ~p], 1).astype(np.float64)  # (N, 4)
    tp, fp, tn, fn = (W @ M).T
    with np.errstate(divide="ignore", invalid="ignore"):

        def ratio(a, b):
            return np.where(b > 0, a / np.where(b > 0, b, 1), np.nan)

        return {
            "tp": tp,
            "fp": fp,
            "tn": tn,
            "fn": fn,
            "sensitivity": ratio(tp, tp + fn),
            "specificity": ratio(tn, tn + fp),
            "ppv": ratio(tp, tp + fp),
            "npv": ratio(tn, tn + fn),
            "f1": ratio(2 * tp, 2 * tp + fp + fn),
            "auroc": auroc(scores, y, W),
        }


# ----------------------------------------------------------------------------------------------
# Bootstrap
# ----------------------------------------------------------------------------------------------


def bootstrap_weights(groups: Sequence | np.ndarray, n_resamples: int, seed: int = 0) -> np.ndarray:
    """Image weights of a seeded percentile bootstrap that resamples patients.

    Rule: each resample draws as many units as there are distinct ``groups`` (patients; pass
    image indices when patient ids are unknown), uniformly with replacement, with
    ``numpy.random.default_rng(seed)``; an image's weight is the number of times its unit was
    drawn. The same seed gives the same weights.

    Args:
        groups: (N,) unit id of each image (any hashable values).
        n_resamples: B.

    Returns:
        (B, N) float64 weights.
    """
    _, unit = np.unique(np.asarray(groups).astype(str), return_inverse=True)
    P = int(unit.max()) + 1 if len(unit) else 0
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, max(P, 1), size=(n_resamples, P))
    counts = np.bincount(
        (draws + P * np.arange(n_resamples)[:, None]).ravel(), minlength=n_resamples * P
    ).reshape(n_resamples, P)
    return counts[:, unit].astype(np.float64)


def percentile_ci(samples: np.ndarray, level: float = 0.95) -> np.ndarray:
    """Percentile interval of bootstrap ``samples`` along axis 0, NaN resamples ignored.

    Returns:
        (2, ...) lower and upper bounds (linear interpolation between order statistics, numpy's
        default); NaN where every resample is NaN.
    """
    a = (1 - level) / 2 * 100
    s = np.asarray(samples, np.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN slices give NaN, as documented
        return np.nanpercentile(s, [a, 100 - a], axis=0)

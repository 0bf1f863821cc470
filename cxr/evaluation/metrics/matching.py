"""Matching detections to ground-truth boxes, inside each (image, class), in pure numpy.

One grouping (:func:`group`: detections by image and class, sorted by descending score, with
padded box slots) and one greedy one-to-one matcher (:func:`greedy_match`) serve COCO AP
(:mod:`.ap`), FROC (:mod:`.froc`) and the report's gallery of false positives and missed lesions.
The rules that return flags:

- :func:`froc_matches`: the FROC rule; TP flags of the detections AND matched flags of the
  ground-truth boxes.
- :func:`voc_matches`: the PASCAL VOC 2010 rule of mAP@0.4.

Boxes are XYXY_ABS pixels; IoU is :func:`cxr.boxes.box_iou` (COCO's XYWH IoU:
:func:`cxr.boxes.coco_box_iou`).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from ...boxes import box_iou
from ..records import DetectionSet

__all__ = [
    "ClassMatches",
    "FrocMatches",
    "Groups",
    "froc_matches",
    "greedy_match",
    "group_detections",
    "pad_rows",
    "box_slots",
    "voc_matches",
]


@dataclasses.dataclass
class Groups:
    """Detections and boxes grouped by (image, class); padded box slots per group."""

    dt_order: np.ndarray  # detection indices sorted by (group, -score, original order)
    dt_group: np.ndarray  # group of each sorted detection
    dt_rank: np.ndarray  # rank of each sorted detection inside its group
    gt_slot_index: np.ndarray  # (n_groups, S) index into gt arrays, -1 = empty slot
    gt_group_of: np.ndarray  # (G,) group row of each gt
    group_key: np.ndarray  # (n_groups,) image * C + class


def group_detections(ds: DetectionSet, max_dets: int | None = None) -> Groups:
    """Detections grouped by (image, class), each group sorted by descending score (stable:
    ties keep input order), at most ``max_dets`` per group; boxes in padded slots per group."""
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
    return Groups(order, dt_group, rank, slots, gt_group, keys)


def pad_rows(a: np.ndarray) -> np.ndarray:
    """``a`` with one zero row appended: empty box slots index it (row ``len(a)``)."""
    return np.concatenate([a, np.zeros((1,) + a.shape[1:], a.dtype)])


def box_slots(g: Groups) -> tuple[np.ndarray, np.ndarray]:
    """(slot_ok, sidx): which slots hold a box, and gt index per slot (G = the padding row)."""
    slot_ok = g.gt_slot_index >= 0
    return slot_ok, np.where(slot_ok, g.gt_slot_index, len(g.gt_group_of))


def greedy_match(
    g: Groups,
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


def _best_iou_per_det(ds: DetectionSet, g: Groups) -> tuple[np.ndarray, np.ndarray]:
    """Highest IoU (XYXY_ABS, no +1) of each sorted detection with a box of its class in its
    image, and the gt index reaching it (first on ties); (-inf, -1) when there is none."""
    slot_ok, sidx = box_slots(g)
    rows_ok = slot_ok[g.dt_group]
    iou = box_iou(ds.dt_boxes[g.dt_order][:, None, :], pad_rows(ds.gt_boxes)[sidx[g.dt_group]])
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
    g = group_detections(ds)
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


@dataclasses.dataclass
class FrocMatches:
    """All detections pooled, sorted by descending score, with TP flags, and the matched flag of
    every ground-truth box.

    Attributes:
        image, cls: (n,) image / class index; tp: (n,) bool; scores: (n,) float.
        gt_counts: (N, C) boxes per image and class.
        dt_index: (n,) index of each sorted detection in the set's detection arrays.
        gt_matched: (G,) bool, in the set's box order: the box was found by a detection.
    """

    image: np.ndarray
    cls: np.ndarray
    tp: np.ndarray
    scores: np.ndarray
    gt_counts: np.ndarray
    dt_index: np.ndarray | None = None
    gt_matched: np.ndarray | None = None


def froc_matches(ds: DetectionSet, iou_threshold: float = 0.4) -> FrocMatches:
    """TP/FP flags for FROC.

    Rule: detections of all classes pooled and sorted by descending score (stable); each takes
    the still-unmatched box of its own class in its image with the highest IoU (XYXY_ABS,
    continuous, no +1; first box on ties) if that IoU >= ``iou_threshold``; otherwise it is a
    false positive. So a right-class box in the wrong place, and a second box on an already
    found lesion, are false positives. A box is matched when a detection took it.

    Returns:
        :class:`FrocMatches` with both the detections' TP flags and the boxes' matched flags.
    """
    g = group_detections(ds)
    n_groups, S = g.gt_slot_index.shape
    slot_ok, sidx = box_slots(g)
    iou = box_iou(ds.dt_boxes[g.dt_order][:, None, :], pad_rows(ds.gt_boxes)[sidx[g.dt_group]])
    iou = np.where(slot_ok[g.dt_group], iou, 0.0)
    none = np.zeros((n_groups, 1, S), bool)
    m = greedy_match(
        g, iou, np.array([iou_threshold], np.float64), none, np.zeros((n_groups, S), bool), False
    )[:, 0, 0]
    dts = g.dt_order
    order = np.lexsort((dts, -ds.dt_scores[dts]))  # ties: input order
    gt_matched = np.zeros(len(ds.gt_image), bool)
    hit = m >= 0
    gt_matched[sidx[g.dt_group[hit], m[hit]]] = True
    return FrocMatches(
        ds.dt_image[dts][order],
        ds.dt_class[dts][order],
        hit[order],
        ds.dt_scores[dts][order],
        ds.gt_counts,
        dts[order],
        gt_matched,
    )

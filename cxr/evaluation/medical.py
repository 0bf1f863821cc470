"""The full medical metric set of one :class:`~cxr.evaluation.records.DetectionSet`.

:func:`compute_medical_metrics` applies every rule of :mod:`cxr.evaluation.metrics` and returns
the ``metrics.json`` content (schema in docs/evaluation.md) plus the arrays the
report needs for plots. Pure numpy; no detectron2 state.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Sequence

import numpy as np
from tqdm import tqdm

from .metrics.ap import coco_ap, voc_ap
from .metrics.bootstrap import bootstrap_weights, percentile_ci
from .metrics.froc import FROC_FPS_PER_IMAGE, froc
from .metrics.image_level import IMAGE_LEVEL_KEYS, auroc, image_level_metrics, image_scores
from .metrics.iobb import IOBB_THRESHOLDS, iobb_accuracy
from .metrics.matching import froc_matches, voc_matches
from .records import DetectionSet
from .operating_points import class_thresholds, positive_findings, select_thresholds

__all__ = [
    "MedicalResult",
    "compute_medical_metrics",
    "flat_results",
]

logger = logging.getLogger(__name__)

CI_KEYS = ("sensitivity", "specificity", "ppv", "npv", "f1", "auroc")
MACRO_KEYS = ("sensitivity", "specificity", "auroc")


@dataclasses.dataclass
class MedicalResult:
    """Output of :func:`compute_medical_metrics`.

    Attributes:
        metrics: the ``metrics.json`` dict (floats, lists, NaN for undefined values).
        selected_thresholds: class name -> threshold chosen on this set by the operating-point
            rule (for ``thresholds.json``); selected_meta: how they were chosen.
        coco: :func:`~cxr.evaluation.metrics.ap.coco_ap` output (precision array for PR plots).
        voc: per-class :class:`~cxr.evaluation.metrics.matching.ClassMatches` (PR curves at IoU > 0.4).
        froc: :class:`~cxr.evaluation.metrics.matching.FrocMatches`.
        scores, labels: (N, C) image-level scores and labels.
        thresholds: (C,) thresholds used for the image-level metrics.
    """

    metrics: dict
    selected_thresholds: dict
    selected_meta: dict
    coco: dict
    voc: list
    froc: object
    scores: np.ndarray
    labels: np.ndarray
    thresholds: np.ndarray


def nanmean_rows(x: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Mean over axis 1 of the entries where ``valid``; NaN where none is valid."""
    x = np.where(valid, x, 0.0)
    n = valid.sum(1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(n > 0, np.nan_to_num(x).sum(1) / np.maximum(n, 1), np.nan)


def _image_level(scores, labels, thr, W, class_names):
    """Per-class, any-finding and macro image-level metrics for each weight row of W."""
    per = {}
    for c, name in enumerate(class_names):
        per[name] = image_level_metrics(scores[:, c], labels[:, c], thr[c], W)
    # "any finding": score = max over classes; predicted positive = some class positive at its
    # own threshold (the same as max score >= threshold when every class shares one threshold).
    any_scores = scores.max(1) if scores.shape[1] else np.zeros(len(scores))
    any_pred = (
        positive_findings(scores, thr[None, :]).any(1)
        if scores.shape[1]
        else np.zeros(len(scores), bool)
    )
    any_lab = labels.any(1) if labels.shape[1] else np.zeros(len(labels), bool)
    # encode the any-class decision as a 0/1 score with threshold 0.5 for the counts
    anyd = image_level_metrics(any_pred.astype(float), any_lab, 0.5, W)
    anyd["auroc"] = auroc(any_scores, any_lab, W)
    macro = {}
    if class_names:
        has_pos = np.stack([per[n]["tp"] + per[n]["fn"] > 0 for n in class_names], 1)
        for k in MACRO_KEYS:
            macro[k] = nanmean_rows(np.stack([per[n][k] for n in class_names], 1), has_pos)
    else:
        macro = {k: np.full(W.shape[0], np.nan) for k in MACRO_KEYS}
    return per, anyd, macro


@dataclasses.dataclass
class _Options:
    """The rule parameters of one :func:`compute_medical_metrics` call."""

    cm_threshold: float
    thresholds: dict
    iou_froc: float
    iou_voc: float
    fps_per_image: Sequence[float]
    iobb_thresholds: Sequence[float]
    bootstrap: int
    seed: int
    operating_point: str
    target_sensitivity: float
    max_dets: int


def _threshold_vector(class_names: Sequence[str], thresholds: dict, cm_threshold: float):
    """(C,) image-level thresholds; refuses thresholds of unknown classes."""
    unknown = sorted(set(thresholds) - set(class_names))
    if unknown:
        raise ValueError(f"thresholds given for unknown classes {unknown}; classes: {class_names}")
    missing = [n for n in class_names if n not in thresholds]
    if thresholds and missing:
        logger.warning("No threshold for %s: using cm_threshold=%s", missing, cm_threshold)
    return class_thresholds(class_names, thresholds, cm_threshold)


def _image_level_json(per, anyd, macro, thr, class_names, o: _Options) -> dict:
    def il_dict(d):
        counts = ("tp", "fp", "tn", "fn")
        return {k: int(d[k][0]) if k in counts else float(d[k][0]) for k in IMAGE_LEVEL_KEYS}

    return {
        "threshold": float(o.cm_threshold) if not o.thresholds else float("nan"),
        "per_class": {
            n: {**il_dict(per[n]), "threshold": float(thr[c])} for c, n in enumerate(class_names)
        },
        "any_finding": il_dict(anyd),
        "macro": {k: float(v[0]) for k, v in macro.items()},
    }


def _point_estimates(ds, class_names, thr, o: _Options, m) -> dict:
    """The ``metrics.json`` content without ``ci95`` and ``settings`` (one weight row)."""
    C = len(class_names)
    coco = m["coco"]
    ones = np.ones((1, ds.num_images))
    voc_per, voc_mean = voc_ap(ds, o.iou_voc, ones, m["voc"])
    fr = froc(ds, o.iou_froc, o.fps_per_image, ones, m["froc"], per_class=True)
    per, anyd, macro = _image_level(m["scores"], m["labels"], thr, ones, class_names)
    iobb = iobb_accuracy(ds, thr, o.iobb_thresholds)
    names = list(enumerate(class_names))
    return {
        "coco": {
            **{k: coco[k] for k in ("AP", "AP50", "AP75", "APs", "APm", "APl") if k in coco},
            "per_class": {
                n: {"AP": float(coco["per_class_AP"][c]), "AP50": float(coco["per_class_AP50"][c])}
                for c, n in names
            },
        },
        "voc_map40": float(voc_mean[0]),
        "voc_ap40": {n: float(voc_per[0, c]) for c, n in names},
        "iobb_accuracy": {
            f"{t:g}": {n: float(iobb[i, c]) for c, n in names}
            for i, t in enumerate(o.iobb_thresholds)
        },
        "froc": {
            "fps_per_image": [float(x) for x in fr["fps_per_image"]],
            "sensitivity": [float(x) for x in fr["sensitivity"][0]],
            "cpm": float(fr["cpm"][0]),
            "per_class": {
                n: {
                    "sensitivity": [float(x) for x in fr["per_class_sensitivity"][0, c]],
                    "cpm": float(fr["per_class_cpm"][0, c]),
                }
                for c, n in names
            },
        },
        "image_level": _image_level_json(per, anyd, macro, thr, class_names, o),
        "ci95": {},
        "num_images": int(ds.num_images),
        "num_gt_boxes": int(len(ds.gt_image)),
        "num_gt_boxes_per_class": {
            n: int(v) for n, v in zip(class_names, np.bincount(ds.gt_class, minlength=C))
        },
        "num_detections": int(len(ds.dt_image)),
    }


def _resampled_metrics(ds, class_names, thr, o: _Options, m, W: np.ndarray, block: int = 50):
    """VOC AP, FROC CPM and image-level metrics of each resample (weight row of ``W``), computed
    ``block`` resamples at a time (each row is independent) behind a progress bar on a terminal.

    Returns:
        ``(voc_ap (B, C), voc_map (B,), froc_cpm (B,), per_class, any_finding, macro)``, the last
        three as :func:`_image_level` returns them.
    """
    parts = []
    with tqdm(total=len(W), desc="bootstrap", unit="resample", disable=None, leave=False) as bar:
        for b in range(0, len(W), block):
            w = W[b : b + block]
            vp, vm = voc_ap(ds, o.iou_voc, w, m["voc"])
            cpm = froc(ds, o.iou_froc, o.fps_per_image, w, m["froc"])["cpm"]
            parts.append(
                (vp, vm, cpm, *_image_level(m["scores"], m["labels"], thr, w, class_names))
            )
            bar.update(len(w))
    cat = lambda i: np.concatenate([p[i] for p in parts])  # noqa: E731
    dcat = lambda i: {k: np.concatenate([p[i][k] for p in parts]) for k in parts[0][i]}  # noqa
    per = {
        n: {k: np.concatenate([p[3][n][k] for p in parts]) for k in parts[0][3][n]}
        for n in class_names
    }
    return cat(0), cat(1), cat(2), per, dcat(4), dcat(5)


def _bootstrap_ci(ds, class_names, thr, o: _Options, m, patient_ids) -> dict:
    """95% percentile-bootstrap CIs (``ci95``: dotted metric path -> ``[low, high]``)."""
    groups = patient_ids if patient_ids is not None else np.arange(ds.num_images)
    W = bootstrap_weights(groups, o.bootstrap, o.seed)
    bvp, bvm, bcpm, bper, bany, bmacro = _resampled_metrics(ds, class_names, thr, o, m, W)
    ci = {}

    def put(name, samples):
        lo, hi = percentile_ci(samples)
        ci[name] = [float(lo), float(hi)]

    put("voc_map40", bvm)
    for c, n in enumerate(class_names):
        put(f"voc_ap40.{n}", bvp[:, c])
    put("froc.cpm", bcpm)
    for n in class_names:
        for k in CI_KEYS:
            put(f"image_level.per_class.{n}.{k}", bper[n][k])
    for k in CI_KEYS:
        put(f"image_level.any_finding.{k}", bany[k])
    for k in MACRO_KEYS:
        put(f"image_level.macro.{k}", bmacro[k])
    return ci


def _settings(class_names, thr, o: _Options, unit: str) -> dict:
    """``metrics.json``'s ``settings``: every rule and parameter, in words and numbers."""
    return {
        "box_format": "XYXY_ABS pixels (COCO AP: XYWH_ABS as in the COCO files)",
        "coco": "pycocotools COCOeval bbox semantics: IoU >= t for t in 0.50:0.05:0.95, greedy "
        f"by score, 101-point interpolation, maxDets={o.max_dets}, areas all/small/medium/large",
        "voc": f"PASCAL VOC 2010: highest-IoU box of the class, TP if IoU > {o.iou_voc} and not "
        "taken, all-point interpolation, mean over classes with boxes",
        "voc_iou_threshold": float(o.iou_voc),
        "iobb": "box localized at T if a detection of its class with score >= the class threshold "
        "has intersection / detection area > T",
        "iobb_thresholds": [float(t) for t in o.iobb_thresholds],
        "froc": f"all classes pooled by score; match = unmatched same-class box with IoU >= "
        f"{o.iou_froc} (highest IoU); FP rate = FP / images; step sensitivity at each rate",
        "froc_iou_threshold": float(o.iou_froc),
        "froc_fps_per_image": [float(x) for x in o.fps_per_image],
        "image_level": "image score = max class score (0 if none); positive if score >= threshold"
        " and score > 0; images without boxes are negatives for every class; any_finding = any "
        "class positive",
        "cm_threshold": float(o.cm_threshold),
        "thresholds": {n: float(thr[c]) for c, n in enumerate(class_names)},
        "thresholds_source": "per-class thresholds" if o.thresholds else "cm_threshold",
        "bootstrap": int(o.bootstrap),
        "bootstrap_seed": int(o.seed),
        "bootstrap_unit": unit,
        "ci": "95% percentile bootstrap (2.5th, 97.5th percentiles; NaN resamples dropped)",
        "operating_point": o.operating_point,
        "target_sensitivity": float(o.target_sensitivity),
        "undefined_values": "null (0/0, e.g. sensitivity of a class without positives)",
    }


def compute_medical_metrics(
    ds: DetectionSet,
    class_names: Sequence[str],
    *,
    cm_threshold: float = 0.3,
    thresholds: dict[str, float] | None = None,
    iou_froc: float = 0.4,
    iou_voc: float = 0.4,
    fps_per_image: Sequence[float] = FROC_FPS_PER_IMAGE,
    iobb_thresholds: Sequence[float] = IOBB_THRESHOLDS,
    bootstrap: int = 0,
    seed: int = 0,
    patient_ids: Sequence | None = None,
    operating_point: str = "youden",
    target_sensitivity: float = 0.9,
    max_dets: int = 100,
) -> MedicalResult:
    """Every metric of the metric definitions (docs/evaluation.md) on one set.

    Args:
        ds: boxes and detections (XYXY_ABS; COCO XYWH copies for COCO AP).
        class_names: C names, index = class index.
        cm_threshold: image-level score threshold for every class unless ``thresholds`` gives
            one for the class (decision: :func:`~cxr.evaluation.operating_points.positive_findings`).
        thresholds: class name -> threshold (operating points from a validation set).
        iou_froc: FROC match needs IoU >= this. iou_voc: VOC match needs IoU > this.
        bootstrap: number of percentile-bootstrap resamples for 95% CIs (0 = none).
        seed: bootstrap seed (``numpy.random.default_rng``).
        patient_ids: (N,) resampling unit per image; None = images.
        operating_point, target_sensitivity: rule for the thresholds chosen on this set
            (:func:`~cxr.evaluation.operating_points.select_thresholds`).
        max_dets: COCO detections kept per image and class.

    Returns:
        :class:`MedicalResult`.
    """
    if len(class_names) != ds.num_classes:
        raise ValueError(f"{len(class_names)} class names for a set with {ds.num_classes} classes")
    o = _Options(
        cm_threshold,
        dict(thresholds or {}),
        iou_froc,
        iou_voc,
        fps_per_image,
        iobb_thresholds,
        bootstrap,
        seed,
        operating_point,
        target_sensitivity,
        max_dets,
    )
    thr = _threshold_vector(class_names, o.thresholds, cm_threshold)
    scores, labels = image_scores(ds)
    m = {
        "coco": coco_ap(ds, max_dets=max_dets),
        "voc": voc_matches(ds, iou_voc),
        "froc": froc_matches(ds, iou_froc),
        "scores": scores,
        "labels": labels,
    }
    out = _point_estimates(ds, class_names, thr, o, m)
    unit = "image"
    if bootstrap > 0:
        unit = "patient" if patient_ids is not None else "image"
        out["ci95"] = _bootstrap_ci(ds, class_names, thr, o, m, patient_ids)
    selected, sel_meta = select_thresholds(
        scores, labels, class_names, operating_point, target_sensitivity, cm_threshold
    )
    out["settings"] = _settings(class_names, thr, o, unit)
    return MedicalResult(
        out, selected, sel_meta, m["coco"], m["voc"], m["froc"], scores, labels, thr
    )


def flat_results(metrics: dict, class_names: Sequence[str]) -> dict[str, float]:
    """The float-only dict ``CXREvaluator.evaluate()`` returns under ``"cxr"``.

    Summary keys have no ``-`` (detectron2 prints those); per-class keys are ``<metric>-<class>``
    (detectron2's ``AP-<class>`` convention). Undefined values are NaN.
    """
    c, il = metrics["coco"], metrics["image_level"]
    r = {k: float(c.get(k, float("nan"))) for k in ("AP", "AP50", "AP75", "APs", "APm", "APl")}
    r["voc_map40"] = float(metrics["voc_map40"])
    r["froc_cpm"] = float(metrics["froc"]["cpm"])
    for x, s in zip(metrics["froc"]["fps_per_image"], metrics["froc"]["sensitivity"]):
        r[f"froc_sens@{x:g}fp"] = float(s)
    for k in MACRO_KEYS:
        r[f"{k}_macro"] = float(il["macro"][k])
    for k in ("sensitivity", "specificity", "auroc"):
        r[f"{k}_any"] = float(il["any_finding"][k])
    for n in class_names:
        r[f"AP-{n}"] = float(c["per_class"][n]["AP"])
        r[f"AP50-{n}"] = float(c["per_class"][n]["AP50"])
        r[f"voc_ap40-{n}"] = float(metrics["voc_ap40"][n])
        r[f"froc_cpm-{n}"] = float(metrics["froc"]["per_class"][n]["cpm"])
        for k in ("sensitivity", "specificity", "auroc"):
            r[f"{k}-{n}"] = float(il["per_class"][n][k])
    return r

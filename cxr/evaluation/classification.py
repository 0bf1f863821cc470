"""Multi-label image classification metrics and ``CXRClassificationEvaluator``
(``evaluator_type="cxr_cls"``).

Rules (fractions 0-1; undefined values NaN, written as null):

- Per class: AUROC and TP/FP/TN/FN, sensitivity, specificity, PPV, NPV, F1 at the class's
  operating point, by the detection evaluator's image-level code
  (:func:`cxr.evaluation.metrics.image_level_metrics`: score >= threshold is positive; AUROC by
  Mann-Whitney with ties 1/2). Average precision (AP) = sum over distinct score thresholds,
  descending, of (recall step) x precision, no interpolation (scikit-learn's definition).
- Macro = mean over classes with both positives and negatives; micro = the metric of all
  (image, class) pairs pooled.
- Operating points: ``thresholds`` (class -> score, e.g. chosen on validation) when given, else
  ``cm_threshold`` for every class; the thresholds chosen on this set (Youden's J or a target
  sensitivity, :func:`~cxr.evaluation.operating_points.select_thresholds`) go to
  ``thresholds.json``, as for the detector.
- 95% CIs: percentile bootstrap resampling patients (images without a patient id), seeded
  (:func:`~cxr.evaluation.metrics.bootstrap_weights`).

The evaluator writes ``metrics.json``, ``per_class.csv``, ``thresholds.json``,
``predictions.json`` (re-scorable by ``tools/eval.py --dataset D --predictions F``) and the
plots ``roc_curves.png`` and ``tsne.png`` (pooled trunk embeddings, scikit-learn t-SNE,
coloured by finding).
"""

from __future__ import annotations

import csv
import dataclasses
import io
import itertools
import json
import logging
import math
import os
from typing import Sequence

import numpy as np
from detectron2.config import configurable
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.evaluation import DatasetEvaluator
from detectron2.utils import comm

from ..fileio import json_safe, read_json, write_json_atomic, write_text_atomic
from . import metrics as M
from .build import EVALUATOR_REGISTRY
from .config import eval_kwargs_from_cfg

from .medical import nanmean_rows
from .operating_points import load_thresholds, save_thresholds, select_thresholds
from .report import new_figure, save_figure

__all__ = [
    "ClassificationResult",
    "CXRClassificationEvaluator",
    "PREDICTIONS_FORMAT",
    "average_precision",
    "compute_classification_metrics",
    "evaluate_classification_files",
    "flat_classification_results",
]

logger = logging.getLogger(__name__)

PREDICTIONS_FORMAT = "cxr-cls-predictions/1"
CI_KEYS = ("auroc", "ap", "sensitivity", "specificity", "ppv", "npv", "f1")
SUMMARY_KEYS = ("auroc", "ap", "sensitivity", "specificity", "f1")


def average_precision(
    scores: np.ndarray, labels: np.ndarray, weights: np.ndarray | None = None
) -> np.ndarray:
    """Average precision of one binary task: ``sum_k (R_k - R_{k-1}) P_k`` over the distinct
    scores in descending order (tied scores form one step; no interpolation).

    Args:
        scores: (N,); labels: (N,) bool; weights: (B, N) image weights (default ones).

    Returns:
        (B,) AP; NaN when a row has no positive weight.
    """
    W = np.ones((1, len(scores))) if weights is None else np.asarray(weights, np.float64)
    order = np.argsort(-np.asarray(scores, np.float64), kind="stable")
    s = np.asarray(scores, np.float64)[order]
    y = np.asarray(labels, bool)[order]
    if len(s) == 0:
        return np.full(W.shape[0], np.nan)
    last = np.r_[s[1:] != s[:-1], True]  # the last index of each run of tied scores
    w = W[:, order]
    tp = np.cumsum(w * y, 1)[:, last]
    fp = np.cumsum(w * ~y, 1)[:, last]
    npos = tp[:, -1:]
    with np.errstate(divide="ignore", invalid="ignore"):
        prec = np.where(tp + fp > 0, tp / (tp + fp), 0.0)
        rec = tp / npos
    step = np.diff(np.concatenate([np.zeros((len(rec), 1)), rec], 1), axis=1)
    out = (step * prec).sum(1)
    return np.where(npos[:, 0] > 0, out, np.nan)


@dataclasses.dataclass
class ClassificationResult:
    """Output of :func:`compute_classification_metrics`: the ``metrics.json`` dict, the
    thresholds chosen on this set (+ how), and the (N, C) scores / labels / (C,) thresholds."""

    metrics: dict
    selected_thresholds: dict
    selected_meta: dict
    scores: np.ndarray
    labels: np.ndarray
    thresholds: np.ndarray


def _per_class(scores, labels, thr, W) -> dict[str, np.ndarray]:
    """(B, C) arrays per key: image-level counts/rates + AUROC + AP of every class."""
    cols = []
    for c in range(scores.shape[1]):
        d = M.image_level_metrics(scores[:, c], labels[:, c], thr[c], W)
        d["ap"] = average_precision(scores[:, c], labels[:, c], W)
        cols.append(d)
    return {k: np.stack([d[k] for d in cols], 1) for k in cols[0]}


def _micro(scores, labels, W) -> dict[str, np.ndarray]:
    Wc = np.repeat(W, scores.shape[1], axis=1)  # (image, class) pairs, image-major like ravel()
    return {
        "auroc": M.auroc(scores.ravel(), labels.ravel(), Wc),
        "ap": average_precision(scores.ravel(), labels.ravel(), Wc),
    }


def _macro(per: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    valid = (per["tp"] + per["fn"] > 0) & (per["tn"] + per["fp"] > 0)
    return {k: nanmean_rows(per[k], valid) for k in SUMMARY_KEYS}


def _bootstrap_ci(
    scores: np.ndarray,
    labels: np.ndarray,
    thr: np.ndarray,
    class_names: Sequence[str],
    bootstrap: int,
    seed: int,
    patient_ids: Sequence | None,
) -> dict[str, list[float]]:
    """Percentile 95% CIs of the per-class, macro and micro metrics over ``bootstrap`` seeded
    resamples of patients (images when ``patient_ids`` is None)."""
    units = patient_ids if patient_ids is not None else np.arange(len(scores))
    W = M.bootstrap_weights(units, bootstrap, seed)
    bper = _per_class(scores, labels, thr, W)
    ci = {}
    for c, n in enumerate(class_names):
        for k in CI_KEYS:
            ci[f"per_class.{n}.{k}"] = M.percentile_ci(bper[k][:, c]).tolist()
    for g, d in (("macro", _macro(bper)), ("micro", _micro(scores, labels, W))):
        for k, v in d.items():
            ci[f"{g}.{k}"] = M.percentile_ci(v).tolist()
    return ci


def compute_classification_metrics(
    scores: np.ndarray,
    labels: np.ndarray,
    class_names: Sequence[str],
    *,
    cm_threshold: float = 0.5,
    thresholds: dict[str, float] | None = None,
    bootstrap: int = 0,
    seed: int = 0,
    patient_ids: Sequence | None = None,
    operating_point: str = "youden",
    target_sensitivity: float = 0.9,
) -> ClassificationResult:
    """Every metric of the module docstring on one set.

    Args:
        scores: (N, C) probabilities; labels: (N, C) 0/1.
        class_names: C names.
        cm_threshold: threshold of classes without an entry in ``thresholds``.
        thresholds: class name -> operating point (e.g. from a validation thresholds.json).
        bootstrap: resamples for 95% CIs (0 = none); seed: their seed.
        patient_ids: (N,) resampling unit; None = images.
        operating_point, target_sensitivity: rule of the thresholds chosen on this set.

    Returns:
        :class:`ClassificationResult`.
    """
    scores = np.asarray(scores, np.float64).reshape(len(scores), -1)
    labels = np.asarray(labels).astype(bool).reshape(scores.shape)
    C, N = len(class_names), len(scores)
    if scores.shape[1] != C:
        raise ValueError(f"{C} class names for scores with {scores.shape[1]} columns")
    thresholds = dict(thresholds or {})
    unknown = sorted(set(thresholds) - set(class_names))
    if unknown:
        raise ValueError(f"thresholds given for unknown classes {unknown}; classes: {class_names}")
    thr = np.array([thresholds.get(n, cm_threshold) for n in class_names], np.float64)
    ones = np.ones((1, N))
    per, micro = _per_class(scores, labels, thr, ones), _micro(scores, labels, ones)
    macro = _macro(per)
    counts = ("tp", "fp", "tn", "fn")
    out = {
        "per_class": {
            n: {**{k: (int(v[0, c]) if k in counts else float(v[0, c])) for k, v in per.items()},
                "threshold": float(thr[c]), "positives": int(labels[:, c].sum())}
            for c, n in enumerate(class_names)
        },
        "macro": {k: float(v[0]) for k, v in macro.items()},
        "micro": {k: float(v[0]) for k, v in micro.items()},
        "num_images": int(N),
        "ci95": {},
    }  # fmt: skip
    unit = "patient" if bootstrap > 0 and patient_ids is not None else "image"
    if bootstrap > 0:
        out["ci95"] = _bootstrap_ci(scores, labels, thr, class_names, bootstrap, seed, patient_ids)
    selected, meta = select_thresholds(scores, labels, class_names, operating_point,
                                       target_sensitivity, cm_threshold)  # fmt: skip
    out["settings"] = {
        "positive": "score >= threshold",
        "thresholds_source": "per-class thresholds" if thresholds else "cm_threshold",
        "cm_threshold": float(cm_threshold),
        "ap": "sum of recall steps x precision over distinct scores (no interpolation)",
        "macro": "mean over classes with positives and negatives",
        "micro": "all (image, class) pairs pooled",
        "bootstrap": int(bootstrap),
        "bootstrap_seed": int(seed),
        "bootstrap_unit": unit,
        "operating_point": operating_point,
        "target_sensitivity": float(target_sensitivity),
    }
    return ClassificationResult(out, selected, meta, scores, labels, thr)


def flat_classification_results(metrics: dict, class_names: Sequence[str]) -> dict[str, float]:
    """Float-only dict returned under ``"cls"``: ``auroc_macro``, ``auroc_micro``,
    ``ap_macro``, ``ap_micro``, ``<key>_macro`` and ``<key>-<class>`` (NaN when undefined)."""
    r = {f"{k}_macro": float(v) for k, v in metrics["macro"].items()}
    r.update({f"{k}_micro": float(v) for k, v in metrics["micro"].items()})
    for n in class_names:
        for k in SUMMARY_KEYS:
            r[f"{k}-{n}"] = float(metrics["per_class"][n][k])
    return r


def format_classification_table(res: ClassificationResult, class_names: Sequence[str]) -> str:
    """Per-class table (percent) with the 95% CI of AUROC when computed."""
    from tabulate import tabulate

    m, ci = res.metrics, res.metrics["ci95"]

    def pct(v):
        return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{100 * v:.1f}"

    def auc_ci(key):
        lo_hi = ci.get(key)
        return f"[{pct(lo_hi[0])}, {pct(lo_hi[1])}]" if lo_hi else ""

    rows = []
    for n in class_names:
        d = m["per_class"][n]
        rows.append([n, d["positives"], pct(d["auroc"]), auc_ci(f"per_class.{n}.auroc"),
                     pct(d["ap"]), pct(d["sensitivity"]), pct(d["specificity"]),
                     f"{d['threshold']:.3f}"])  # fmt: skip
    for g in ("macro", "micro"):
        rows.append([g, "", pct(m[g]["auroc"]), auc_ci(f"{g}.auroc"), pct(m[g]["ap"]),
                     pct(m[g].get("sensitivity")), pct(m[g].get("specificity")), ""])  # fmt: skip
    head = ["finding", "pos", "AUROC", "95% CI", "AP", "sens", "spec", "threshold"]
    return tabulate(rows, headers=head, tablefmt="github")


def write_roc_curves(res: ClassificationResult, class_names: Sequence[str], path: str) -> None:
    """Per-class ROC curves (sensitivity vs 1 - specificity) with AUROC in the legend."""
    from sklearn.metrics import roc_curve

    fig = new_figure()
    ax = fig.add_subplot(111)
    for c, n in enumerate(class_names):
        y = res.labels[:, c]
        if y.all() or not y.any():
            continue
        fpr, tpr, _ = roc_curve(y, res.scores[:, c])
        ax.plot(fpr, tpr, label=f"{n} {res.metrics['per_class'][n]['auroc']:.3f}")
    ax.plot([0, 1], [0, 1], "k:", lw=0.8)
    ax.set_xlabel("1 - specificity")
    ax.set_ylabel("sensitivity")
    ax.legend(fontsize=7, loc="lower right")
    save_figure(fig, path)


def write_tsne(
    embeddings: np.ndarray, labels: np.ndarray, class_names: Sequence[str], path: str, seed: int = 0
) -> np.ndarray:
    """t-SNE (scikit-learn, 2-D, PCA init, seeded) of pooled trunk embeddings, one point per
    image coloured by its rarest positive finding (grey: no finding). Returns the 2-D points."""
    from sklearn.manifold import TSNE

    n = len(embeddings)
    pts = TSNE(2, perplexity=float(min(30, max(2, (n - 1) / 3))), init="pca",
               random_state=seed).fit_transform(np.asarray(embeddings, np.float32))  # fmt: skip
    freq = labels.sum(0)
    fig = new_figure(6.4, 6.4)
    ax = fig.add_subplot(111)
    colour = np.full(n, -1)
    for i in range(n):
        pos = np.flatnonzero(labels[i])
        if len(pos):
            colour[i] = pos[np.argmin(freq[pos])]
    ax.scatter(*pts[colour < 0].T, s=6, c="lightgrey", label="No Finding")
    cmap = __import__("matplotlib").colormaps["tab20"]
    for c, name in enumerate(class_names):
        if (colour == c).any():
            ax.scatter(*pts[colour == c].T, s=8, color=cmap(c % 20), label=name)
    ax.legend(fontsize=7, markerscale=2)
    ax.set_xticks([])
    ax.set_yticks([])
    save_figure(fig, path)
    return pts


def write_classification_report(
    res: ClassificationResult,
    class_names: Sequence[str],
    output_dir: str,
    predictions: dict | None = None,
    embeddings: np.ndarray | None = None,
    plots: bool = True,
    threshold_meta: dict | None = None,
) -> list[str]:
    """Write ``metrics.json``, ``per_class.csv``, ``thresholds.json``, ``predictions.json``
    (when given) and, with ``plots``, ``roc_curves.png`` and ``tsne.png`` (when embeddings are
    given, >= 5 images). Returns the written paths."""
    os.makedirs(output_dir, exist_ok=True)
    paths = [
        os.path.join(output_dir, f) for f in ("metrics.json", "per_class.csv", "thresholds.json")
    ]
    write_json_atomic(paths[0], json_safe(res.metrics))
    buf = io.StringIO()
    w = csv.writer(buf)
    keys = ["positives", *CI_KEYS, "tp", "fp", "tn", "fn", "threshold"]
    w.writerow(["finding", *keys])
    for n in class_names:
        d = res.metrics["per_class"][n]
        w.writerow(
            [n] + ["" if isinstance(d[k], float) and math.isnan(d[k]) else d[k] for k in keys]
        )
    write_text_atomic(paths[1], buf.getvalue())
    save_thresholds(
        paths[2], res.selected_thresholds, {**res.selected_meta, **(threshold_meta or {})}
    )
    if predictions is not None:
        paths.append(os.path.join(output_dir, "predictions.json"))
        write_text_atomic(paths[-1], json.dumps(predictions))
    if plots:
        paths.append(os.path.join(output_dir, "roc_curves.png"))
        write_roc_curves(res, class_names, paths[-1])
        if embeddings is not None and len(embeddings) >= 5:
            paths.append(os.path.join(output_dir, "tsne.png"))
            write_tsne(embeddings, res.labels, class_names, paths[-1])
    return paths


def _labels_by_id(dicts: Sequence[dict], num_classes: int, dataset_name: str) -> dict:
    out = {}
    for i, d in enumerate(dicts):
        lab = d.get("labels")
        if lab is None or len(lab) != num_classes:
            raise ValueError(f"{dataset_name}: record {i} ({d.get('file_name')}): field labels "
                             f"must have {num_classes} entries, got {lab!r}")  # fmt: skip
        out[d["image_id"]] = (
            np.asarray(lab, bool),
            str(d.get("patient_id", f"image:{d['image_id']}")),
        )
    return out


class CXRClassificationEvaluator(DatasetEvaluator):
    """Classification metrics of a registered ``evaluator_type="cxr_cls"`` dataset.

    Ground truth: the ``labels`` of ``DatasetCatalog.get(dataset_name)`` (class names from
    ``thing_classes``; ``patient_id`` = bootstrap unit). Predictions: model outputs with
    ``scores`` ((C,) probabilities) and optionally ``embedding`` (pooled features, for t-SNE).
    ``evaluate()`` returns ``{"cls": flat metrics}`` (:func:`flat_classification_results`) and
    writes the report files (see the module docstring) into ``output_dir``.
    """

    #: The flat metric that names the best checkpoint unless the user picks another.
    DEFAULT_BEST_METRIC = "auroc_macro"
    #: The flat metrics of a checkpoint's summary line and of ``checkpoints.csv``.
    SUMMARY_METRICS = ("auroc_macro", "auroc_micro", "ap_macro", "ap_micro",
                       "sensitivity_macro", "specificity_macro", "f1_macro")  # fmt: skip

    @configurable
    def __init__(
        self,
        dataset_name: str,
        output_dir: str | None = None,
        *,
        cm_threshold: float = 0.5,
        thresholds: dict[str, float] | str | None = None,
        bootstrap: int = 0,
        seed: int = 0,
        operating_point: str = "youden",
        target_sensitivity: float = 0.9,
        plots: bool = True,
        max_tsne: int = 2000,
        distributed: bool = True,
    ):
        """
        Args:
            dataset_name: a registered classification dataset.
            output_dir: folder of the report files (None: write nothing).
            thresholds: class name -> threshold, or a thresholds.json path.
            max_tsne: embeddings of at most this many images enter the t-SNE (0 = no t-SNE).
            Other arguments: see :func:`compute_classification_metrics`.
        """
        self._dataset_name = dataset_name
        self._output_dir = output_dir
        self._class_names = list(MetadataCatalog.get(dataset_name).thing_classes)
        if isinstance(thresholds, str):
            thresholds = load_thresholds(thresholds)
        self._kw = {"cm_threshold": cm_threshold, "thresholds": thresholds, "bootstrap": bootstrap,
                    "seed": seed, "operating_point": operating_point,
                    "target_sensitivity": target_sensitivity}  # fmt: skip
        self._plots = plots
        self._max_tsne = max_tsne
        self._distributed = distributed
        self.last_result: ClassificationResult | None = None
        self.reset()

    @classmethod
    def from_config(cls, cfg, dataset_name: str, output_dir: str | None = None) -> dict:
        kw = eval_kwargs_from_cfg(cfg)
        keys = ("cm_threshold", "thresholds", "bootstrap", "seed", "operating_point",
                "target_sensitivity")  # fmt: skip
        return {"dataset_name": dataset_name, "output_dir": output_dir,
                **{k: kw[k] for k in keys}, "plots": cfg.CXR.EVAL.PLOTS}  # fmt: skip

    @property
    def class_names(self) -> list[str]:
        return list(self._class_names)

    def reset(self) -> None:
        self._predictions: list[dict] = []
        self._embeddings: list[np.ndarray] = []

    def process(self, inputs, outputs) -> None:
        for inp, out in zip(inputs, outputs):
            self._predictions.append(
                {"image_id": inp["image_id"], "scores": out["scores"].detach().cpu().tolist()}
            )
            emb = out.get("embedding")
            if emb is not None and len(self._embeddings) < self._max_tsne:
                self._embeddings.append(emb.detach().float().cpu().numpy())

    def evaluate(self) -> dict:
        preds, embs = self._predictions, self._embeddings
        if self._distributed and comm.get_world_size() > 1:
            comm.synchronize()
            preds = list(itertools.chain(*comm.gather(preds)))
            embs = list(itertools.chain(*comm.gather(embs)))
            if not comm.is_main_process():
                return {}
        res, payload = score_predictions(self._dataset_name, self._class_names, preds, **self._kw)
        self.last_result = res
        logger.info("Classification metrics on %s:\n%s", self._dataset_name,
                    format_classification_table(res, self._class_names))  # fmt: skip
        if self._output_dir:
            n = min(len(embs), self._max_tsne)
            write_classification_report(
                res, self._class_names, self._output_dir, payload,
                np.stack(embs[:n]) if n else None, self._plots, {"dataset": self._dataset_name},
            )  # fmt: skip
        return {"cls": flat_classification_results(res.metrics, self._class_names)}


def score_predictions(
    dataset_name: str, class_names: Sequence[str], predictions: Sequence[dict], **kwargs
) -> tuple[ClassificationResult, dict]:
    """Match ``[{"image_id", "scores"}]`` to the dataset's labels (dataset order) and compute
    the metrics; also returns the ``predictions.json`` payload.

    Raises:
        ValueError: a prediction for an unknown image, a missing image, or a wrong score count.
    """
    C = len(class_names)
    dicts = DatasetCatalog.get(dataset_name)
    truth = _labels_by_id(dicts, C, dataset_name)
    by_id = {}
    for j, p in enumerate(predictions):
        iid = p.get("image_id")
        if iid not in truth:
            raise ValueError(
                f"{dataset_name}: prediction {j}: field image_id={iid!r} is not in the dataset"
            )
        if len(p.get("scores", ())) != C:
            raise ValueError(f"{dataset_name}: prediction {j}: field scores must have {C} entries")
        by_id[iid] = np.asarray(p["scores"], np.float64)
    missing = [d["image_id"] for d in dicts if d["image_id"] not in by_id]
    if missing:
        raise ValueError(
            f"{dataset_name}: no prediction for {len(missing)} image(s), e.g. {missing[:3]}"
        )
    ids = [d["image_id"] for d in dicts]
    scores = np.stack([by_id[i] for i in ids]) if ids else np.zeros((0, C))
    labels = np.stack([truth[i][0] for i in ids]) if ids else np.zeros((0, C), bool)
    patients = [truth[i][1] for i in ids]
    res = compute_classification_metrics(
        scores, labels, class_names, patient_ids=patients, **kwargs
    )
    payload = {
        "format": PREDICTIONS_FORMAT, "dataset": dataset_name, "classes": list(class_names),
        "predictions": [{"image_id": i, "patient_id": p, "scores": s.tolist()}
                        for i, p, s in zip(ids, patients, scores)],
    }  # fmt: skip
    return res, payload


def evaluate_classification_files(
    dataset_name: str, predictions_json: str, output_dir: str, *, plots: bool = True, **kwargs
) -> ClassificationResult:
    """Score a ``predictions.json`` (format ``cxr-cls-predictions/1``: ``classes`` and
    ``predictions`` = ``[{"image_id", "scores"}]``) against a registered classification set;
    writes the report (no t-SNE: files carry no embeddings) into ``output_dir``.

    Raises:
        ValueError naming the file and field when the file is not in that format or its classes
        differ from the dataset's.
    """
    data = read_json(predictions_json, "classification predictions")
    if not isinstance(data, dict) or data.get("format") != PREDICTIONS_FORMAT:
        raise ValueError(f"{predictions_json}: field format must be {PREDICTIONS_FORMAT!r}")
    names = list(MetadataCatalog.get(dataset_name).thing_classes)
    if list(data.get("classes", [])) != names:
        raise ValueError(f"{predictions_json}: field classes {data.get('classes')} differs from "
                         f"{dataset_name}'s {names}")  # fmt: skip
    res, payload = score_predictions(dataset_name, names, data.get("predictions", []), **kwargs)
    print(format_classification_table(res, names))
    write_classification_report(
        res, names, output_dir, None, None, plots, {"dataset": dataset_name}
    )
    return res


@EVALUATOR_REGISTRY.register_as("cxr_cls")
def build_classification_evaluator(dataset_name: str, cfg, output_dir: str | None):
    """``evaluator_type="cxr_cls"`` -> :class:`CXRClassificationEvaluator` from ``cfg.CXR.EVAL``."""
    return CXRClassificationEvaluator(cfg, dataset_name, output_dir)

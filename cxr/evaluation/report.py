"""Report files of one evaluation: metrics.json, per_class.csv, predictions.json, PNG plots,
thresholds.json, a printable per-class table, and TensorBoard / EventStorage output.

Plots use matplotlib's Agg canvas directly (no pyplot global state, no display needed).
"""

from __future__ import annotations

import csv
import io
import json
import logging
import math
import os
from typing import Sequence

import numpy as np

from .metrics.ap import COCO_RECALL_THRESHOLDS
from .metrics.froc import froc_curve
from .metrics.image_level import IMAGE_LEVEL_KEYS, roc_curve
from .medical import MedicalResult, flat_results
from ..fileio import json_safe, write_bytes_atomic, write_json_atomic, write_text_atomic
from .operating_points import save_thresholds

__all__ = [
    "FIGURES",
    "format_table",
    "log_to_event_storage",
    "render_pr_curves",
    "write_csv",
    "write_pr_curves_tensorboard",
    "write_report",
]

logger = logging.getLogger(__name__)


def _fmt(v, pct=False) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    return f"{100 * v:.1f}" if pct else f"{v:g}"


def per_class_rows(res: MedicalResult, class_names: Sequence[str]) -> list[dict]:
    """One dict per class plus ``any_finding`` (the per_class.csv rows; fractions 0-1)."""
    m = res.metrics
    pos = res.labels.sum(0) if res.labels.size else np.zeros(len(class_names), int)
    ci = m.get("ci95", {})
    rows = []
    for c, n in enumerate(class_names):
        il = m["image_level"]["per_class"][n]
        row = {
            "class": n,
            "gt_boxes": m["num_gt_boxes_per_class"][n],
            "positive_images": int(pos[c]),
            "coco_AP": m["coco"]["per_class"][n]["AP"],
            "coco_AP50": m["coco"]["per_class"][n]["AP50"],
            "voc_ap40": m["voc_ap40"][n],
            "froc_cpm": m["froc"]["per_class"][n]["cpm"],
        }
        row.update({k: il[k] for k in ("threshold",) + IMAGE_LEVEL_KEYS})
        for k in ("sensitivity", "specificity", "auroc"):
            lo, hi = ci.get(f"image_level.per_class.{n}.{k}", [float("nan")] * 2)
            row[f"{k}_ci_low"], row[f"{k}_ci_high"] = lo, hi
        rows.append(row)
    il = m["image_level"]["any_finding"]
    row = {
        "class": "any_finding",
        "gt_boxes": m["num_gt_boxes"],
        "positive_images": int(res.labels.any(1).sum()) if res.labels.size else 0,
        "coco_AP": m["coco"]["AP"],
        "coco_AP50": m["coco"]["AP50"],
        "voc_ap40": m["voc_map40"],
        "froc_cpm": m["froc"]["cpm"],
        "threshold": float("nan"),
    }
    row.update({k: il[k] for k in IMAGE_LEVEL_KEYS})
    for k in ("sensitivity", "specificity", "auroc"):
        lo, hi = ci.get(f"image_level.any_finding.{k}", [float("nan")] * 2)
        row[f"{k}_ci_low"], row[f"{k}_ci_high"] = lo, hi
    rows.append(row)
    return rows


def format_table(res: MedicalResult, class_names: Sequence[str]) -> str:
    """A readable per-class table (percent) with the summary metrics above it."""
    from tabulate import tabulate

    m = res.metrics
    head = (
        f"COCO AP {_fmt(m['coco']['AP'], 1)}  AP50 {_fmt(m['coco']['AP50'], 1)}  "
        f"AP75 {_fmt(m['coco']['AP75'], 1)}  mAP@0.4(VOC) {_fmt(m['voc_map40'], 1)}  "
        f"FROC CPM {_fmt(m['froc']['cpm'], 1)}  images {m['num_images']}  "
        f"boxes {m['num_gt_boxes']}"
    )
    cols = [
        "class",
        "coco_AP",
        "coco_AP50",
        "voc_ap40",
        "froc_cpm",
        "threshold",
        "tp",
        "fp",
        "tn",
        "fn",
        "sensitivity",
        "specificity",
        "auroc",
    ]
    pct = {"coco_AP", "coco_AP50", "voc_ap40", "froc_cpm", "sensitivity", "specificity", "auroc"}
    table = []
    for r in per_class_rows(res, class_names):
        line = []
        for k in cols:
            v = r[k]
            if k in pct:
                s = _fmt(v, True)
                lo, hi = r.get(f"{k}_ci_low"), r.get(f"{k}_ci_high")
                if lo is not None and not math.isnan(lo):
                    s += f" [{100 * lo:.1f}, {100 * hi:.1f}]"
                line.append(s)
            elif k in ("tp", "fp", "tn", "fn"):
                line.append(f"{v:g}")
            else:
                line.append(_fmt(v) if not isinstance(v, str) else v)
        table.append(line)
    macro = m["image_level"]["macro"]
    foot = "macro over classes with positives: " + ", ".join(
        f"{k} {_fmt(macro[k], True)}" for k in ("sensitivity", "specificity", "auroc")
    )
    return "\n".join([head, tabulate(table, headers=cols, tablefmt="github"), foot])


def new_figure(w=6.4, h=4.8):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(w, h), dpi=100)
    FigureCanvasAgg(fig)
    return fig


def save_figure(fig, path: str) -> None:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", bbox_inches="tight")
    write_bytes_atomic(path, buf.getvalue())


def _pr_figure(res: MedicalResult, class_names: Sequence[str]):
    """Per-class precision-recall curves: COCO interpolated precision at IoU 0.5, all areas."""
    fig = new_figure()
    ax = fig.add_subplot(111)
    prec = res.coco["precision"]
    for c, n in enumerate(class_names):
        p = prec[0, :, c, 0]
        if (p > -1).any():
            ax.plot(COCO_RECALL_THRESHOLDS, p, label=f"{n} (AP50 {100 * np.mean(p):.1f})")
    ax.set(
        xlabel="recall",
        ylabel="precision",
        xlim=(0, 1),
        ylim=(0, 1.02),
        title="Per-class PR at IoU 0.5 (COCO interpolation)",
    )
    if class_names:
        ax.legend(fontsize=7, loc="upper right")
    return fig


def render_pr_curves(res: MedicalResult, class_names: Sequence[str]) -> np.ndarray:
    """The per-class PR figure as an (3, H, W) float32 RGB array in [0, 1] (for EventStorage)."""
    fig = _pr_figure(res, class_names)
    fig.canvas.draw()
    rgba = np.asarray(fig.canvas.buffer_rgba())
    return (rgba[..., :3].transpose(2, 0, 1).astype(np.float32) / 255.0).copy()


def _froc_figure(res: MedicalResult, class_names: Sequence[str]):
    """FROC: pooled (black) and per-class step curves, dots at the reported FP rates."""
    n_img = res.metrics["num_images"]
    fig = new_figure()
    ax = fig.add_subplot(111)
    x, y = froc_curve(res.froc, n_img)
    cpm = res.metrics["froc"]["cpm"]
    label = f"all (CPM {100 * cpm:.1f})" if not math.isnan(cpm) else "all"
    ax.step(x, y, where="post", lw=2, color="k", label=label)
    for c, n in enumerate(class_names):
        x, y = froc_curve(res.froc, n_img, c)
        if not np.isnan(y[1:]).all() or len(y) == 1:
            ax.step(x, y, where="post", lw=1, label=n)
    pts = res.metrics["froc"]["fps_per_image"]
    ax.plot(pts, res.metrics["froc"]["sensitivity"], "o", color="k")
    ax.set(
        xscale="log",
        xlim=(pts[0] / 2, pts[-1] * 2),
        ylim=(0, 1.02),
        xlabel="false positives per image",
        ylabel="sensitivity",
        title="FROC",
    )
    ax.legend(fontsize=7, loc="upper left")
    return fig


def _roc_figure(res: MedicalResult, class_names: Sequence[str]):
    """Image-level ROC per class and for "any finding" (classes without both labels skipped)."""
    fig = new_figure()
    ax = fig.add_subplot(111)
    il = res.metrics["image_level"]
    curves = [
        (res.scores[:, c], res.labels[:, c], il["per_class"][n]["auroc"], n, 1)
        for c, n in enumerate(class_names)
    ]
    any_s = res.scores.max(1) if res.scores.shape[1] else np.zeros(len(res.scores))
    any_y = res.labels.any(1) if res.labels.shape[1] else np.zeros(len(res.labels), bool)
    curves.append((any_s, any_y, il["any_finding"]["auroc"], "any_finding", 2))
    for s, y, au, name, lw in curves:
        if y.all() or not y.any():
            continue
        fpr, tpr = roc_curve(s, y)
        ax.plot(fpr, tpr, lw=lw, label=f"{name} (AUROC {au:.3f})")
    ax.plot([0, 1], [0, 1], ":", color="gray")
    ax.set(
        xlabel="1 - specificity",
        ylabel="sensitivity",
        title="Image-level ROC",
        xlim=(0, 1),
        ylim=(0, 1.02),
    )
    ax.legend(fontsize=7, loc="lower right")
    return fig


def _confusion_figure(res: MedicalResult, class_names: Sequence[str]):
    """Image-level TP / FP / TN / FN per class and "any finding", as an annotated heat map."""
    rows = per_class_rows(res, class_names)
    mat = np.array([[r[k] for k in ("tp", "fp", "tn", "fn")] for r in rows], float)
    fig = new_figure(6.4, 0.45 * len(rows) + 1.5)
    ax = fig.add_subplot(111)
    ax.imshow(mat / max(mat.max(), 1), cmap="Blues", aspect="auto", vmin=0, vmax=1.5)
    for i in range(mat.shape[0]):
        for j in range(4):
            ax.text(j, i, f"{mat[i, j]:g}", ha="center", va="center", fontsize=8)
    ax.set_xticks(range(4), ["TP", "FP", "TN", "FN"])
    ax.set_yticks(range(len(rows)), [f"{r['class']} (t={_fmt(r['threshold'])})" for r in rows])
    ax.set_title("Image-level confusion counts")
    return fig


#: Plot file name -> figure function ``(result, class_names) -> matplotlib Figure``.
FIGURES = {
    "froc.png": _froc_figure,
    "pr_curves.png": _pr_figure,
    "roc_curves.png": _roc_figure,
    "confusion_counts.png": _confusion_figure,
}
PLOTS = tuple(FIGURES)


def write_plots(res: MedicalResult, class_names: Sequence[str], out: str) -> list[str]:
    """Write the FROC, PR, ROC and confusion-count PNGs into ``out``; returns their paths."""
    paths = []
    for name, figure in FIGURES.items():
        paths.append(os.path.join(out, name))
        save_figure(figure(res, class_names), paths[-1])
    return paths


def write_csv(path: str, rows: Sequence[dict]) -> None:
    """``rows`` (dicts with the same keys) as a CSV written atomically; NaN is written empty."""
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(rows[0]))
    w.writeheader()
    for r in rows:
        w.writerow({k: ("" if isinstance(v, float) and math.isnan(v) else v) for k, v in r.items()})
    write_text_atomic(path, buf.getvalue())


_REPORT_FILES = (
    "metrics.json",
    "per_class.csv",
    "thresholds.json",
    "predictions.json",
    "report.html",
)


def _remove_stale_temporaries(output_dir: str) -> None:
    """Delete the partial temp files (``.<name>.*.tmp``, see :mod:`cxr.fileio`) that a killed
    report write left beside the report files; the complete files are never touched."""
    for f in os.listdir(output_dir):
        if f.endswith(".tmp") and any(f.startswith(f".{n}.") for n in _REPORT_FILES):
            os.unlink(os.path.join(output_dir, f))
            logger.info("Removed %s, left by an interrupted report write", f)


def write_report(
    res: MedicalResult,
    class_names: Sequence[str],
    output_dir: str,
    predictions: list[dict] | None = None,
    plots: bool = True,
    threshold_meta: dict | None = None,
    html: dict | None = None,
) -> list[str]:
    """Write every report file of one evaluation into ``output_dir`` (each atomically).

    Files: ``metrics.json`` (NaN written as null), ``per_class.csv``, ``thresholds.json``
    (operating points chosen on this set), ``predictions.json`` (COCO results, when given),
    if ``plots``, ``froc.png``, ``pr_curves.png``, ``roc_curves.png``, ``confusion_counts.png``
    and, when ``html`` is given, ``report.html``.

    Args:
        html: keywords of :func:`~cxr.evaluation.html_report.render_html_report` after
            ``res`` and ``class_names``: at least ``ds`` (the evaluated
            :class:`~cxr.evaluation.records.DetectionSet`) and ``file_names`` (one per image).

    Returns:
        the written paths.
    """
    os.makedirs(output_dir, exist_ok=True)
    _remove_stale_temporaries(output_dir)
    paths = []
    p = os.path.join(output_dir, "metrics.json")
    write_json_atomic(p, json_safe(res.metrics))
    paths.append(p)
    p = os.path.join(output_dir, "per_class.csv")
    write_csv(p, per_class_rows(res, class_names))
    paths.append(p)
    p = os.path.join(output_dir, "thresholds.json")
    save_thresholds(p, res.selected_thresholds, {**res.selected_meta, **(threshold_meta or {})})
    paths.append(p)
    if predictions is not None:
        p = os.path.join(output_dir, "predictions.json")
        write_text_atomic(p, json.dumps(predictions))
        paths.append(p)
    if plots:
        paths += write_plots(res, class_names, output_dir)
    if html is not None:
        from .html_report import write_html_report

        p = os.path.join(output_dir, "report.html")
        plot_dir = output_dir if plots else None
        paths.append(write_html_report(p, res, class_names, plot_dir=plot_dir, **html))
    return paths


def log_to_event_storage(
    res: MedicalResult, class_names: Sequence[str], prefix: str = "cxr", storage=None
) -> bool:
    """Put the scalars (``<prefix>/<key>``) and a per-class PR-curve image
    (``<prefix>/pr_curves``) into ``storage`` (default: detectron2's current EventStorage, if
    one is active, as during training).

    Returns:
        True if a storage was written to.
    """
    if storage is None:
        from detectron2.utils.events import get_event_storage

        try:
            storage = get_event_storage()
        except AssertionError:  # detectron2's way of saying "no storage is active"
            return False
    flat = flat_results(res.metrics, class_names)
    storage.put_scalars(**{f"{prefix}/{k}": v for k, v in flat.items()}, smoothing_hint=False)
    try:
        storage.put_image(f"{prefix}/pr_curves", render_pr_curves(res, class_names))
    except Exception as e:  # a plot failure must not stop training
        logger.warning("Could not render PR curves for the event storage: %s", e)
    return True


def write_pr_curves_tensorboard(
    writer, res: MedicalResult, class_names: Sequence[str], step: int, prefix: str = "cxr"
) -> None:
    """Native TensorBoard PR curves (``add_pr_curve_raw``), one per class, COCO precision at
    IoU 0.5 over the 101 recall points. ``writer`` is a ``torch.utils.tensorboard.SummaryWriter``.
    """
    prec = res.coco["precision"]
    rc = COCO_RECALL_THRESHOLDS
    for c, n in enumerate(class_names):
        p = prec[0, :, c, 0]
        if not (p > -1).any():
            continue
        npos = max(int(res.metrics["num_gt_boxes_per_class"][n]), 1)
        tp = rc * npos
        with np.errstate(divide="ignore", invalid="ignore"):
            fp = np.where(p > 0, tp / p - tp, 0.0)
        writer.add_pr_curve_raw(
            f"{prefix}/pr_{n}",
            tp[::-1],
            fp[::-1],
            np.zeros(len(rc)),
            (npos - tp)[::-1],
            p[::-1],
            rc[::-1],
            global_step=step,
            num_thresholds=len(rc),
        )

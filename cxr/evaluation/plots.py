"""PNG plots of one detection evaluation: FROC, per-class PR, image-level ROC and confusion
counts, plus the Agg figure helpers the classification report shares.

Plots use matplotlib's Agg canvas directly (no pyplot global state, no display needed).
"""

from __future__ import annotations

import io
import math
import os
from typing import Sequence

import numpy as np

from ..fileio import write_bytes_atomic
from .medical import MedicalResult
from .metrics.ap import COCO_RECALL_THRESHOLDS
from .metrics.froc import froc_curve
from .metrics.image_level import roc_curve
from .tables import fmt, per_class_rows

__all__ = ["FIGURES", "PLOTS", "new_figure", "render_pr_curves", "save_figure", "write_plots"]


def new_figure(w=6.4, h=4.8):
    """A matplotlib Figure on its own Agg canvas (``w`` x ``h`` inches, 100 dpi)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(w, h), dpi=100)
    FigureCanvasAgg(fig)
    return fig


def save_figure(fig, path: str) -> None:
    """``fig`` as a PNG at ``path``, written atomically."""
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
    ax.set_yticks(range(len(rows)), [f"{r['class']} (t={fmt(r['threshold'])})" for r in rows])
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

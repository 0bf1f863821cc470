"""The report of one classification evaluation: ``metrics.json``, ``per_class.csv``,
``thresholds.json``, ``predictions.json`` (re-scorable by ``tools/eval.py --dataset D
--predictions F``), the plots ``roc_curves.png`` and ``tsne.png`` (pooled trunk embeddings,
scikit-learn t-SNE, coloured by finding), and the printable per-class table.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from typing import Sequence

import numpy as np

from ...fileio import json_safe, write_json_atomic, write_text_atomic
from ..metrics.image_level import roc_curve
from ..operating_points import save_thresholds
from ..plots import new_figure, save_figure
from .metrics import CI_KEYS, ClassificationResult

__all__ = [
    "format_classification_table",
    "write_classification_report",
    "write_roc_curves",
    "write_tsne",
]


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
    fig = new_figure()
    ax = fig.add_subplot(111)
    for c, n in enumerate(class_names):
        y = res.labels[:, c]
        if y.all() or not y.any():
            continue
        fpr, tpr = roc_curve(res.scores[:, c], y)
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

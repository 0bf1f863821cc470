"""Tables of one detection evaluation: the per-class rows (``per_class.csv``), the printable
per-class table of the log, and the CSV writer. Values are fractions 0-1 (the printed table
shows percent)."""

from __future__ import annotations

import csv
import io
import math
from typing import Sequence

import numpy as np

from ..fileio import write_text_atomic
from .medical import MedicalResult
from .metrics.image_level import IMAGE_LEVEL_KEYS

__all__ = ["fmt", "format_table", "per_class_rows", "write_csv"]


def fmt(v, pct=False) -> str:
    """A table cell: ``-`` for missing / NaN, percent with one decimal when ``pct``."""
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
        f"COCO AP {fmt(m['coco']['AP'], 1)}  AP50 {fmt(m['coco']['AP50'], 1)}  "
        f"AP75 {fmt(m['coco']['AP75'], 1)}  mAP@0.4(VOC) {fmt(m['voc_map40'], 1)}  "
        f"FROC CPM {fmt(m['froc']['cpm'], 1)}  images {m['num_images']}  "
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
                s = fmt(v, True)
                lo, hi = r.get(f"{k}_ci_low"), r.get(f"{k}_ci_high")
                if lo is not None and not math.isnan(lo):
                    s += f" [{100 * lo:.1f}, {100 * hi:.1f}]"
                line.append(s)
            elif k in ("tp", "fp", "tn", "fn"):
                line.append(f"{v:g}")
            else:
                line.append(fmt(v) if not isinstance(v, str) else v)
        table.append(line)
    macro = m["image_level"]["macro"]
    foot = "macro over classes with positives: " + ", ".join(
        f"{k} {fmt(macro[k], True)}" for k in ("sensitivity", "specificity", "auroc")
    )
    return "\n".join([head, tabulate(table, headers=cols, tablefmt="github"), foot])


def write_csv(path: str, rows: Sequence[dict]) -> None:
    """``rows`` (dicts with the same keys) as a CSV written atomically; NaN is written empty."""
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(rows[0]))
    w.writeheader()
    for r in rows:
        w.writerow({k: ("" if isinstance(v, float) and math.isnan(v) else v) for k, v in r.items()})
    write_text_atomic(path, buf.getvalue())

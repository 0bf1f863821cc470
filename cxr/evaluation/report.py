"""The report of one detection evaluation, its entry point :func:`write_report`: metrics.json,
per_class.csv (:mod:`.tables`), thresholds.json, predictions.json, PNG plots (:mod:`.plots`)
and report.html (:mod:`.html_report`); plus TensorBoard / EventStorage output.

Imports point one way: this module uses :mod:`.html_report`, :mod:`.plots` and :mod:`.tables`;
none of them imports it.
"""

from __future__ import annotations

import json
import logging
import os
from typing import Sequence

import numpy as np

from ..fileio import json_safe, write_json_atomic, write_text_atomic
from .html_report import write_html_report
from .medical import MedicalResult, flat_results
from .metrics.ap import COCO_RECALL_THRESHOLDS
from .operating_points import save_thresholds
from .plots import render_pr_curves, write_plots
from .tables import per_class_rows, write_csv

__all__ = ["log_to_event_storage", "write_pr_curves_tensorboard", "write_report"]

logger = logging.getLogger(__name__)


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

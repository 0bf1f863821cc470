"""Evaluation runs (what ``tools/eval.py`` drives): score a COCO results file, or evaluate
checkpoints.

- files: :func:`evaluate_files` scores any model's COCO results against a COCO GT file.
- checkpoints: :func:`evaluate_checkpoints` builds the model of a config, loads each checkpoint,
  runs inference on a data set and evaluates it with the data set's evaluator
  (:func:`~cxr.evaluation.build_evaluator`, as ``train_net --eval-only`` does);
  checkpoints holding the same weights are scored once. With several, it writes a
  metric-vs-iteration table and TensorBoard curves and names the best.

Every report folder is written by :func:`~cxr.evaluation.report.write_report` (files listed
there); with ``CXR.VIS.GRADCAM_IMAGES > 0`` a checkpoint's folder also gets ``gradcam/``
(:func:`write_gradcam_images`). Outputs never overwrite inputs: :func:`check_output_dir`
refuses an output folder that is an input file or contains one.
"""

from __future__ import annotations

import logging
import math
import os
import re
from typing import Sequence

import numpy as np
import torch
from detectron2.data import MetadataCatalog
from tqdm import tqdm

from ..engine.inference import load_inference_model, weights_digest
from ..evaluation.build import build_evaluator, evaluator_metrics
from ..evaluation.config import eval_kwargs_from_cfg
from ..evaluation.medical import MedicalResult, compute_medical_metrics, flat_results
from ..evaluation.operating_points import load_thresholds
from ..evaluation.report import write_pr_curves_tensorboard, write_report
from ..evaluation.tables import format_table, write_csv
from ..fileio import write_json_atomic, write_png_atomic
from .coco_json import coco_file_names, load_coco_files
from .paths import check_output_dir, input_not_found

__all__ = [
    "check_output_dir",
    "evaluate_checkpoints",
    "evaluate_files",
    "find_checkpoints",
    "write_gradcam_images",
]

logger = logging.getLogger(__name__)

def write_tensorboard(output_dir: str, results: list[tuple[int, MedicalResult]], names) -> str:
    """Scalars ``cxr/<key>`` (per step) and PR curves into ``output_dir/tensorboard``."""
    from torch.utils.tensorboard import SummaryWriter

    tb = os.path.join(output_dir, "tensorboard")
    with SummaryWriter(tb) as w:
        for step, res in results:
            for k, v in flat_results(res.metrics, names).items():
                if math.isfinite(v):
                    w.add_scalar(f"cxr/{k}", v, step)
            write_pr_curves_tensorboard(w, res, names, step)
    return tb


def evaluate_files(
    gt_json: str,
    detections_json: str,
    output_dir: str,
    *,
    plots: bool = True,
    tensorboard: bool = True,
    thresholds_file: str | None = None,
    gallery_size: int = 8,
    image_root: str | None = None,
    **kwargs,
) -> MedicalResult:
    """Score a COCO results file against a COCO GT file; write the report into ``output_dir``.

    Args:
        thresholds_file: a ``thresholds.json`` (operating points) to use.
        gallery_size: ``report.html`` gallery cases per class and kind.
        image_root: folder of the GT images' ``file_name`` (default: the GT file's folder); the
            report's thumbnails are read from there (an unreadable image is named, not shown).
        kwargs: :func:`~cxr.evaluation.medical.compute_medical_metrics` options
            (``cm_threshold``, ``thresholds``, ``bootstrap``, ``seed``, ...).

    Returns:
        the :class:`~cxr.evaluation.medical.MedicalResult`.
    """
    check_output_dir(output_dir, [gt_json, detections_json, thresholds_file])
    if thresholds_file:
        kwargs["thresholds"] = load_thresholds(thresholds_file)
    elif isinstance(kwargs.get("thresholds"), str):
        kwargs["thresholds"] = load_thresholds(kwargs["thresholds"])
    dset, names, image_ids, patients, kept = load_coco_files(gt_json, detections_json)
    res = compute_medical_metrics(dset, names, patient_ids=patients, **kwargs)
    res.metrics["settings"].update(
        {"gt_json": os.path.abspath(gt_json), "detections": os.path.abspath(detections_json)}
    )
    write_report(
        res,
        names,
        output_dir,
        predictions=kept,
        plots=plots,
        threshold_meta={"gt_json": os.path.abspath(gt_json)},
        html={
            "ds": dset,
            "file_names": coco_file_names(gt_json, image_ids, image_root),
            "gallery_size": gallery_size,
            "subtitle": f"{os.path.basename(detections_json)} on {os.path.basename(gt_json)}",
            "missing_hint": "; pass --image-root FOLDER, the folder of the GT file's file_name "
            "entries",
        },
    )
    if tensorboard:
        write_tensorboard(output_dir, [(0, res)], names)
    logger.info("\n%s", format_table(res, names))
    return res


_ITER_RE = re.compile(r"model_(\d+)\.pth$")


def _checkpoint_order(path: str) -> tuple:
    m = _ITER_RE.search(path)
    base = os.path.basename(path)
    if m:
        return (0, int(m.group(1)), base)
    return (1 if base == "model_final.pth" else 2, 0, base)


def find_checkpoints(paths: Sequence[str]) -> list[str]:
    """Expand folders (training output folders) into their ``*.pth`` files.

    Order: by iteration in the name (``model_0004999.pth``), then ``model_final.pth``, then
    other names alphabetically; ``model_best.pth`` is included when present.

    Raises:
        FileNotFoundError for a missing path or a folder without checkpoints.
    """
    out = []
    for p in paths:
        if os.path.isdir(p):
            found = [os.path.join(p, f) for f in os.listdir(p) if f.endswith(".pth")]
            if not found:
                raise FileNotFoundError(f"no *.pth checkpoint in folder {p}")
            out += sorted(found, key=_checkpoint_order)
        elif os.path.isfile(p):
            out.append(p)
        else:
            raise input_not_found("checkpoint", p, "--checkpoint")
    return out


def _report_dir(output_dir: str, path: str, several: bool) -> str:
    return (
        os.path.join(output_dir, os.path.splitext(os.path.basename(path))[0])
        if several
        else output_dir
    )


def _evaluate_model(cfg, model, dataset_name: str, report_dir: str, evaluator_kwargs: dict):
    """Inference of ``model`` on ``dataset_name``, scored by the data set's evaluator
    (:func:`~cxr.evaluation.build_evaluator`, the one ``train_net --eval-only`` and training
    use) into ``report_dir``.

    Returns:
        ``(flat metrics, MedicalResult or None (not the detection evaluator), class names)``.
    """
    from detectron2.evaluation import inference_on_dataset

    from ..engine import Trainer

    ev = build_evaluator(cfg, dataset_name, report_dir, **(evaluator_kwargs or {}))
    with torch.no_grad():
        res = inference_on_dataset(model, Trainer.build_test_loader(cfg, dataset_name), ev)
    flat = next(iter(res.values()), {}) if len(res) == 1 else res
    last = getattr(ev, "last_result", None)
    result = last if isinstance(last, MedicalResult) else None
    names = getattr(ev, "class_names", None)
    if names is None:
        names = list(MetadataCatalog.get(dataset_name).thing_classes)
    return flat, result, names


def _check_best_metric(metric: str, flat: dict) -> None:
    """Refuse a ``--best-metric`` the evaluation does not compute (nothing to rank by)."""
    if metric not in flat:
        raise ValueError(
            f"--best-metric {metric!r} is not a metric of this evaluation; available: "
            + ", ".join(sorted(flat))
        )


def write_gradcam_images(cfg, model, dataset_name: str, out_dir: str, evaluator_kwargs=None):
    """The Grad-CAM overlays of the first ``CXR.VIS.GRADCAM_IMAGES`` records of
    ``dataset_name`` (:class:`~cxr.engine.gradcam_hook.GradCAMRenderer`) as
    ``out_dir/<i>_<image name>.png``, plus ``out_dir/gradcam.csv`` (``png, file, explained,
    map_in_boxes``: the share of a detector's map inside the explained boxes, empty for a
    classifier or an empty map).

    Detector boxes are chosen at the evaluation's operating points (``evaluator_kwargs``
    ``thresholds`` / ``cm_threshold``, else the config's). A model Grad-CAM cannot explain
    (Faster R-CNN, ONNX Runtime) is logged and skipped.

    Returns:
        the PNG paths written.
    """
    from ..engine.gradcam_hook import GradCAMRenderer, explained_model

    n = cfg.CXR.VIS.GRADCAM_IMAGES
    if n <= 0:
        return []
    if explained_model(model) is None:
        logger.warning("Grad-CAM images skipped: not a CXRClassifier or RetinaNet-family model")
        return []
    kw = evaluator_kwargs or {}
    renderer = GradCAMRenderer(cfg, dataset_name, n, thresholds=kw.get("thresholds"),
                               cm_threshold=kw.get("cm_threshold"))  # fmt: skip
    rows, paths = [], []
    for pic in renderer(model):
        file_name = pic.record.get("file_name", "")
        stem = os.path.splitext(os.path.basename(file_name))[0]
        paths.append(os.path.join(out_dir, f"{pic.index:05d}_{stem}.png"))
        write_png_atomic(paths[-1], pic.image[:, :, ::-1])
        rows.append({"png": os.path.basename(paths[-1]), "file": file_name,
                     "explained": pic.caption, "map_in_boxes": round(pic.in_boxes, 4)})  # fmt: skip
    if rows:
        write_csv(os.path.join(out_dir, "gradcam.csv"), rows)
    logger.info("Grad-CAM images of %d records written to %s", len(paths), out_dir)
    return paths


def _summary_row(path: str, step: int, flat: dict, keys: Sequence[str]) -> dict:
    return {
        "checkpoint": path,
        "iteration": step,
        "same_weights": "",
        **{k: flat.get(k, float("nan")) for k in keys},
    }


def _best(rows: list[dict], metric: str) -> dict | None:
    valid = [r for r in rows if isinstance(r.get(metric), float) and not math.isnan(r[metric])]
    return max(valid, key=lambda r: r[metric]) if valid else None


def _write_summary(output_dir: str, rows: list[dict], best: dict | None, metric: str) -> None:
    """``checkpoints.csv``, the table in the log and ``best.json`` of a several-checkpoint run."""
    from tabulate import tabulate

    keys = [k for k in rows[0] if k not in ("checkpoint", "iteration", "same_weights")]

    write_csv(os.path.join(output_dir, "checkpoints.csv"), rows)
    table = [
        [os.path.basename(r["checkpoint"]), r["iteration"]]
        + [f"{100 * r[k]:.1f}" for k in keys]
        for r in rows
    ]
    logger.info("\n%s", tabulate(table, headers=["checkpoint", "iter", *keys]))
    if best is not None:
        write_json_atomic(
            os.path.join(output_dir, "best.json"),
            {
                "checkpoint": best["checkpoint"],
                "iteration": best["iteration"],
                "metric": metric,
                "value": best[metric],
                "report": _report_dir(output_dir, best["checkpoint"], True),
            },
        )


def evaluate_checkpoints(
    cfg,
    checkpoints: Sequence[str],
    dataset_name: str,
    output_dir: str,
    *,
    best_metric: str | None = None,
    evaluator_kwargs: dict | None = None,
    backend: str = "torch",
) -> dict:
    """Evaluate each distinct set of weights among ``checkpoints`` on ``dataset_name``.

    One checkpoint: the report goes into ``output_dir``. Several: each goes into
    ``output_dir/<checkpoint name>/``, plus ``checkpoints.csv`` (metrics vs iteration),
    ``best.json`` (the best checkpoint by ``best_metric``, higher is better) and TensorBoard
    scalars / PR curves in ``output_dir/tensorboard``. Checkpoints whose loaded weights are
    identical (:func:`~cxr.engine.inference.weights_digest`; e.g. ``model_best.pth`` and
    ``model_final.pth`` of one run) are scored once: one row, the others named in its
    ``same_weights`` column.

    Args:
        best_metric: a flat metric of the evaluation (default: the evaluator's
            ``DEFAULT_BEST_METRIC``: ``AP50`` for detectors, ``auroc_macro`` for classifiers;
            :func:`~cxr.evaluation.build.evaluator_metrics`).
        evaluator_kwargs: options of the data set's evaluator replacing the config's
            (:func:`~cxr.evaluation.build_evaluator`; an unknown one raises ``ValueError``).
        backend: inference backend (:func:`~cxr.engine.inference.load_inference_model`).

    Returns:
        ``{"checkpoints": [{"checkpoint", "iteration", "same_weights", <summary metrics>}],
        "best", "metrics": [every metric the evaluator returned, per row]}``.

    Raises:
        ValueError: ``best_metric`` is not one the evaluation computes (the message lists them).
    """
    default_best, summary = evaluator_metrics(dataset_name)
    best_metric = best_metric or default_best
    keys = list(dict.fromkeys([*summary, best_metric]))
    ckpts = find_checkpoints(checkpoints)
    check_output_dir(output_dir, list(ckpts))
    rows, tb_results, seen, metrics = [], [], {}, []
    names = None
    bar = tqdm(ckpts, desc="checkpoints", unit="ckpt", disable=None if len(ckpts) > 1 else True)
    for i, path in enumerate(bar):
        model, extra = load_inference_model(cfg, path, backend=backend)
        digest = weights_digest(model, path)
        if digest in seen:
            row = seen[digest]
            row["same_weights"] = ";".join(filter(None, [row["same_weights"], path]))
            logger.info("%s holds the weights of %s: not scored again", path, row["checkpoint"])
            continue
        it = extra.get("iteration")
        step = int(it) if isinstance(it, (int, np.integer)) else i
        sub = _report_dir(output_dir, path, len(ckpts) > 1)
        flat, result, names = _evaluate_model(cfg, model, dataset_name, sub, evaluator_kwargs)
        _check_best_metric(best_metric, flat)
        write_gradcam_images(cfg, model, dataset_name, os.path.join(sub, "gradcam"),
                             evaluator_kwargs)  # fmt: skip
        rows.append(_summary_row(path, step, flat, keys))
        metrics.append(flat)
        seen[digest] = rows[-1]
        if result is not None:
            tb_results.append((step, result))
        logger.info(
            "%s (iteration %s): %s",
            path,
            step,
            ", ".join(f"{k} {flat.get(k, float('nan')):.4f}" for k in keys),
        )
        del model
    if tb_results:
        write_tensorboard(output_dir, tb_results, names)
    best = _best(rows, best_metric)
    if len(ckpts) > 1:
        _write_summary(output_dir, rows, best, best_metric)
    if best is not None:
        logger.info(
            "Best checkpoint by %s: %s (%.4f)", best_metric, best["checkpoint"], best[best_metric]
        )
    return {"checkpoints": rows, "best": best, "metrics": metrics}


def evaluation_overrides(args) -> dict:
    """:func:`~cxr.evaluation.config.eval_kwargs_from_cfg` overrides from ``tools/eval.py``'s
    flags (unset flags keep the config's values)."""
    return {
        "cm_threshold": args.cm_threshold,
        "thresholds": args.thresholds or None,
        "bootstrap": args.bootstrap,
        "seed": args.seed,
    }


def resolved_eval_kwargs(cfg, args) -> dict:
    """``cfg.CXR.EVAL`` with ``tools/eval.py``'s flags applied (thresholds loaded)."""
    kw = eval_kwargs_from_cfg(cfg, **evaluation_overrides(args))
    if kw["thresholds"]:
        kw["thresholds"] = load_thresholds(kw["thresholds"])
    return kw

"""The logic behind ``tools/eval.py``: score a COCO results file, or evaluate checkpoints.

Two modes:

- files: :func:`evaluate_files` scores any model's COCO results against a COCO GT file.
- checkpoints: :func:`evaluate_checkpoints` builds the model of a config, loads each checkpoint,
  runs inference on a dataset and evaluates it with :class:`~cxr.evaluation.CXREvaluator`; with
  several checkpoints it writes a metric-vs-iteration table and TensorBoard curves and names
  the best.

Outputs never overwrite inputs: :func:`check_output_dir` refuses an output folder that is an
input file or contains one.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import math
import os
import re
from typing import Sequence

import numpy as np

from ..fileio import write_json_atomic, write_text_atomic
from .medical import MedicalResult, compute_medical_metrics, flat_results
from .metrics import DetectionSet
from .report import format_table, write_pr_curves_tensorboard, write_report

__all__ = [
    "check_output_dir",
    "evaluate_checkpoints",
    "evaluate_files",
    "find_checkpoints",
    "load_coco_files",
    "run_cli",
]

logger = logging.getLogger(__name__)

SUMMARY_KEYS = (
    "AP",
    "AP50",
    "AP75",
    "voc_map40",
    "froc_cpm",
    "sensitivity_macro",
    "specificity_macro",
    "auroc_macro",
    "auroc_any",
)


def check_output_dir(output_dir: str, inputs: Sequence[str]) -> None:
    """Refuse an output folder that is, or contains, one of the input paths.

    Raises:
        ValueError naming the clashing input.
    """
    out = os.path.realpath(output_dir)
    for p in inputs:
        if not p:
            continue
        rp = os.path.realpath(p)
        if rp == out or os.path.commonpath([out, rp]) == out:
            raise ValueError(
                f"--output {output_dir!r} would write over or beside the input {p!r}; "
                "choose a folder that contains no input"
            )


def _load_json(path: str, what: str):
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        raise FileNotFoundError(f"{what} file not found: {path}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{path}: not valid JSON ({e})") from None


def _box(v, path: str, where: str, positive: bool = False) -> list[float]:
    """``[x, y, w, h]`` floats; ``w, h >= 0`` (``> 0`` when ``positive``, for GT boxes)."""
    if not isinstance(v, (list, tuple)) or len(v) != 4:
        raise ValueError(f"{path}: {where}: field bbox must be [x, y, w, h], got {v!r}")
    try:
        b = [float(x) for x in v]
    except (TypeError, ValueError):
        raise ValueError(f"{path}: {where}: field bbox has a non-number: {v!r}") from None
    if not all(math.isfinite(x) for x in b) or b[2] < 0 or b[3] < 0:
        raise ValueError(f"{path}: {where}: field bbox is not a valid box: {v!r}")
    if positive and (b[2] == 0 or b[3] == 0):
        raise ValueError(f"{path}: {where}: field bbox has zero width or height: {v!r}")
    return b


def _hashable(v, path: str, where: str, field: str):
    try:
        hash(v)
    except TypeError:
        raise ValueError(f"{path}: {where}: field {field}={v!r} is not a valid id") from None
    return v


def load_coco_files(
    gt_json: str, detections_json: str
) -> tuple[DetectionSet, list[str], list, list, list[dict]]:
    """Read a COCO GT file and a COCO results file into a :class:`DetectionSet`.

    Images are ordered by sorted image id and classes by sorted category id (pycocotools'
    order); GT boxes keep their ``area`` and ``iscrowd``; detections of categories absent from
    the GT are dropped with a warning (pycocotools ignores them too). An image's optional
    ``patient_id`` field is the bootstrap unit.

    Returns:
        ``(set, class_names, image_ids, patient_ids_or_None, results)``.

    Raises:
        ValueError naming the file, entry and field at fault.
    """
    gt = _load_json(gt_json, "ground-truth")
    if not isinstance(gt, dict) or not isinstance(gt.get("images"), list):
        raise ValueError(f"{gt_json}: field images (a list) is missing: not a COCO GT file")
    if not isinstance(gt.get("categories"), list) or not gt["categories"]:
        raise ValueError(f"{gt_json}: field categories (a non-empty list) is missing")
    try:
        img_ids = sorted({im["id"] for im in gt["images"]})
        cats = sorted(gt["categories"], key=lambda c: c["id"])
        by_id = {im["id"]: im for im in gt["images"]}
    except (KeyError, TypeError, IndexError) as e:
        raise ValueError(f"{gt_json}: images / categories need an 'id' field ({e})") from None
    im_index = {v: i for i, v in enumerate(img_ids)}
    cat_index = {c["id"]: k for k, c in enumerate(cats)}
    names = [str(c.get("name", c["id"])) for c in cats]
    gi, gc, gb, ga, gcr, gid = [], [], [], [], [], []
    annotations = gt.get("annotations", [])
    if not isinstance(annotations, list):
        raise ValueError(f"{gt_json}: field annotations must be a list")
    for j, a in enumerate(annotations):
        where = f"annotations[{j}]"
        if not isinstance(a, dict):
            raise ValueError(f"{gt_json}: {where} is not an object")
        _hashable(a.get("image_id"), gt_json, where, "image_id")
        _hashable(a.get("category_id"), gt_json, where, "category_id")
        if a.get("image_id") not in im_index:
            raise ValueError(
                f"{gt_json}: {where}: field image_id={a.get('image_id')!r} is not an image"
            )
        if a.get("category_id") not in cat_index:
            raise ValueError(
                f"{gt_json}: {where}: field category_id={a.get('category_id')!r} "
                "is not a category"
            )
        b = _box(a.get("bbox"), gt_json, where, positive=True)
        gi.append(im_index[a["image_id"]]), gc.append(cat_index[a["category_id"]]), gb.append(b)
        area = a.get("area", b[2] * b[3])
        if isinstance(area, bool) or not isinstance(area, (int, float)) or not area >= 0:
            raise ValueError(f"{gt_json}: {where}: field area must be a number >= 0, got {area!r}")
        ga.append(float(area))
        gcr.append(bool(a.get("iscrowd", 0))), gid.append(a.get("id", j + 1))
    res = _load_json(detections_json, "detections")
    if isinstance(res, dict) and isinstance(res.get("annotations"), list):
        res = res["annotations"]
    if not isinstance(res, list):
        raise ValueError(
            f"{detections_json}: expected a list of COCO results "
            "({image_id, category_id, bbox, score})"
        )
    di, dc, db, ds_ = [], [], [], []
    dropped = 0
    kept = []
    for j, d in enumerate(res):
        where = f"entry {j}"
        if not isinstance(d, dict):
            raise ValueError(f"{detections_json}: {where} is not an object")
        _hashable(d.get("image_id"), detections_json, where, "image_id")
        _hashable(d.get("category_id"), detections_json, where, "category_id")
        if d.get("image_id") not in im_index:
            raise ValueError(
                f"{detections_json}: {where}: field image_id={d.get('image_id')!r} "
                f"is not an image of {gt_json}"
            )
        if d.get("category_id") not in cat_index:
            dropped += 1
            continue
        s = d.get("score")
        if isinstance(s, bool) or not isinstance(s, (int, float)) or not math.isfinite(s):
            raise ValueError(f"{detections_json}: {where}: field score must be a number, got {s!r}")
        b = _box(d.get("bbox"), detections_json, where)
        di.append(im_index[d["image_id"]]), dc.append(cat_index[d["category_id"]])
        db.append(b), ds_.append(float(s))
        kept.append(
            {
                "image_id": d["image_id"],
                "category_id": d["category_id"],
                "bbox": b,
                "score": float(s),
            }
        )
    if dropped:
        logger.warning(
            "%s: %d detections of categories not in %s were ignored",
            detections_json,
            dropped,
            gt_json,
        )
    gxywh = np.asarray(gb, np.float64).reshape(-1, 4)
    dxywh = np.asarray(db, np.float64).reshape(-1, 4)
    dset = DetectionSet(
        num_images=len(img_ids),
        num_classes=len(cats),
        gt_image=gi,
        gt_class=gc,
        gt_boxes=np.c_[gxywh[:, :2], gxywh[:, :2] + gxywh[:, 2:]],
        gt_boxes_xywh=gxywh,
        gt_area=ga,
        gt_crowd=gcr,
        gt_ids=np.asarray(gid),
        dt_image=di,
        dt_class=dc,
        dt_boxes=np.c_[dxywh[:, :2], dxywh[:, :2] + dxywh[:, 2:]],
        dt_boxes_xywh=dxywh,
        dt_scores=ds_,
    )
    patients = [by_id[i].get("patient_id") for i in img_ids]
    if all(p is None for p in patients):
        patients = None
    else:
        patients = [str(p) if p is not None else f"image:{i}" for p, i in zip(patients, img_ids)]
    return dset, names, img_ids, patients, kept


def _write_tensorboard(output_dir: str, results: list[tuple[int, MedicalResult]], names) -> str:
    """Scalars ``cxr/<key>`` (per iteration) and PR curves into ``output_dir/tensorboard``."""
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
    **kwargs,
) -> MedicalResult:
    """Score a COCO results file against a COCO GT file; write the report into ``output_dir``.

    Args:
        kwargs: :func:`~cxr.evaluation.medical.compute_medical_metrics` options
            (``cm_threshold``, ``thresholds``, ``bootstrap``, ``seed``, ...).

    Returns:
        the :class:`~cxr.evaluation.medical.MedicalResult`.
    """
    check_output_dir(output_dir, [gt_json, detections_json, kwargs.pop("thresholds_file", None)])
    dset, names, _, patients, kept = load_coco_files(gt_json, detections_json)
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
    )
    if tensorboard:
        _write_tensorboard(output_dir, [(0, res)], names)
    logger.info("\n%s", format_table(res, names))
    return res


_ITER_RE = re.compile(r"model_(\d+)\.pth$")


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

            def key(f):
                m = _ITER_RE.search(f)
                base = os.path.basename(f)
                return (
                    (0, int(m.group(1)), base)
                    if m
                    else (1 if base == "model_final.pth" else 2, 0, base)
                )

            out += sorted(found, key=key)
        elif os.path.isfile(p):
            out.append(p)
        else:
            hint = " (KEY VALUE overrides go after another flag, not after --checkpoint)"
            raise FileNotFoundError(
                f"checkpoint not found: {p}" + (hint if p.split(".")[0].isupper() else "")
            )
    return out


def evaluate_checkpoints(
    cfg,
    checkpoints: Sequence[str],
    dataset_name: str,
    output_dir: str,
    *,
    best_metric: str = "AP50",
    evaluator_kwargs: dict | None = None,
) -> dict:
    """Evaluate each checkpoint on ``dataset_name`` with :class:`CXREvaluator`.

    One checkpoint: the report goes into ``output_dir``. Several: each goes into
    ``output_dir/<checkpoint name>/``, plus ``checkpoints.csv`` (metrics vs iteration),
    ``best.json`` (the best checkpoint by ``best_metric``, higher is better) and TensorBoard
    scalars / PR curves in ``output_dir/tensorboard``.

    Returns:
        ``{"checkpoints": [{"checkpoint", "iteration", <metrics>}], "best": {...}}``.
    """
    import torch
    from detectron2.evaluation import inference_on_dataset

    from ..engine import Trainer
    from ..engine.checkpoint import load_model_weights
    from .evaluator import CXREvaluator

    ckpts = find_checkpoints(checkpoints)
    check_output_dir(output_dir, list(ckpts))
    rows, tb_results = [], []
    names = None
    for i, path in enumerate(ckpts):
        model = Trainer.build_model(cfg)
        extra = load_model_weights(model, path)
        it = extra.get("iteration")
        step = int(it) if isinstance(it, (int, np.integer)) else i
        sub = (
            output_dir
            if len(ckpts) == 1
            else os.path.join(output_dir, os.path.splitext(os.path.basename(path))[0])
        )
        kw = dict(CXREvaluator.from_config(cfg, dataset_name, sub))
        kw.update(evaluator_kwargs or {})
        ev = CXREvaluator(**kw)
        names = ev._class_names
        model.eval()
        with torch.no_grad():
            res = inference_on_dataset(model, Trainer.build_test_loader(cfg, dataset_name), ev)
        flat = res.get("cxr", {})
        rows.append(
            {
                "checkpoint": path,
                "iteration": step,
                **{k: flat.get(k, float("nan")) for k in SUMMARY_KEYS},
            }
        )
        if ev.last_result is not None:
            tb_results.append((step, ev.last_result))
        logger.info(
            "%s (iteration %s): %s",
            path,
            step,
            ", ".join(f"{k} {flat.get(k, float('nan')):.4f}" for k in SUMMARY_KEYS),
        )
        del model
    if tb_results:
        _write_tensorboard(output_dir, tb_results, names)
    valid = [
        r for r in rows if isinstance(r.get(best_metric), float) and not math.isnan(r[best_metric])
    ]
    best = max(valid, key=lambda r: r[best_metric]) if valid else None
    if len(ckpts) > 1:
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=list(rows[0]))
        w.writeheader()
        for r in rows:
            w.writerow(
                {k: ("" if isinstance(v, float) and math.isnan(v) else v) for k, v in r.items()}
            )
        write_text_atomic(os.path.join(output_dir, "checkpoints.csv"), buf.getvalue())
        from tabulate import tabulate

        logger.info(
            "\n%s",
            tabulate(
                [
                    [os.path.basename(r["checkpoint"]), r["iteration"]]
                    + [f"{100 * r[k]:.1f}" for k in SUMMARY_KEYS]
                    for r in rows
                ],
                headers=["checkpoint", "iter", *SUMMARY_KEYS],
            ),
        )
        if best is not None:
            write_json_atomic(
                os.path.join(output_dir, "best.json"),
                {
                    "checkpoint": best["checkpoint"],
                    "iteration": best["iteration"],
                    "metric": best_metric,
                    "value": best[best_metric],
                    "report": os.path.join(
                        output_dir, os.path.splitext(os.path.basename(best["checkpoint"]))[0]
                    ),
                },
            )
    if best is not None:
        logger.info(
            "Best checkpoint by %s: %s (%.4f)", best_metric, best["checkpoint"], best[best_metric]
        )
    return {"checkpoints": rows, "best": best}


def _register_nih_folder(image_folder: str, annotations: str, data_entry: str = "") -> str:
    """Register an NIH-format CSV + image folder as a temporary ``evaluator_type="cxr"`` set.

    With ``data_entry`` (``Data_Entry_2017*.csv``), every ``No Finding`` image of the same
    patients found in the folder is added as a negative."""
    import hashlib

    from detectron2.data import DatasetCatalog, MetadataCatalog

    from ..data.datasets.nih import load_nih, nih_class_names

    paths = [os.path.abspath(p) if p else "" for p in (image_folder, annotations, data_entry)]
    key = hashlib.sha1("|".join(paths).encode())
    name = f"cxr_eval_folder_{key.hexdigest()[:10]}"
    if name not in DatasetCatalog.list():
        DatasetCatalog.register(
            name,
            lambda: load_nih(
                annotations, image_folder, data_entry or None, num_negatives=-1 if data_entry else 0
            ),
        )
        MetadataCatalog.get(name).set(thing_classes=nih_class_names(), evaluator_type="cxr")
    return name


def run_cli(args) -> dict | MedicalResult:
    """``tools/eval.py``'s body: pick the mode from the arguments and run it.

    Raises:
        SystemExit with a usage message for an invalid combination of arguments.
    """
    files_mode = bool(args.gt_json or args.detections)
    if files_mode:
        if not (args.gt_json and args.detections):
            raise SystemExit("files mode needs both --gt-json and --detections")
        if args.checkpoint or args.config_file:
            raise SystemExit("give either --gt-json/--detections or --config-file/--checkpoint")
        from ..config import get_cfg

        e = get_cfg().CXR.EVAL
        kw = _eval_kwargs(args, e)
        return evaluate_files(
            args.gt_json,
            args.detections,
            args.output,
            plots=not args.no_plots,
            thresholds_file=args.thresholds or None,
            **kw,
        )
    if not (args.config_file and args.checkpoint):
        raise SystemExit(
            "checkpoints mode needs --config-file and --checkpoint "
            "(or use --gt-json/--detections)"
        )
    if bool(args.image_folder) != bool(args.annotations):
        raise SystemExit("--image-folder and --annotations go together")
    import torch

    from ..config import load_config

    cfg = load_config(args.config_file, args.opts)
    if cfg.MODEL.DEVICE.startswith("cuda") and not torch.cuda.is_available():
        cfg.MODEL.DEVICE = "cpu"
    cfg.OUTPUT_DIR = args.output
    cfg.freeze()
    if args.image_folder:
        dataset = _register_nih_folder(args.image_folder, args.annotations, args.data_entry)
    else:
        dataset = args.dataset or (cfg.DATASETS.TEST[0] if cfg.DATASETS.TEST else "")
        if not dataset:
            raise SystemExit(
                "no dataset: give --dataset, --image-folder/--annotations, or set "
                "DATASETS.TEST in the config"
            )
    inputs = [
        args.config_file,
        args.thresholds,
        args.annotations,
        args.image_folder,
        args.data_entry,
    ]
    check_output_dir(args.output, inputs)
    kw = _eval_kwargs(args, cfg.CXR.EVAL)
    ev_kw = {
        "cm_threshold": kw["cm_threshold"],
        "bootstrap": kw["bootstrap"],
        "seed": kw["seed"],
        "plots": not args.no_plots,
    }
    if kw.get("thresholds") is not None:
        ev_kw["thresholds"] = kw["thresholds"]
    return evaluate_checkpoints(
        cfg,
        args.checkpoint,
        dataset,
        args.output,
        best_metric=args.best_metric,
        evaluator_kwargs=ev_kw,
    )


def _eval_kwargs(args, e) -> dict:
    """compute_medical_metrics options from CLI flags, falling back to ``cfg.CXR.EVAL`` ``e``."""
    from .operating_points import load_thresholds

    thr_file = args.thresholds or e.THRESHOLDS_FILE
    return {
        "cm_threshold": e.CM_THRESHOLD if args.cm_threshold is None else args.cm_threshold,
        "thresholds": load_thresholds(thr_file) if thr_file else None,
        "bootstrap": e.BOOTSTRAP if args.bootstrap is None else args.bootstrap,
        "seed": e.BOOTSTRAP_SEED if args.seed is None else args.seed,
        "iou_froc": e.IOU_FROC,
        "iou_voc": e.IOU_VOC,
        "operating_point": e.OPERATING_POINT,
        "target_sensitivity": e.TARGET_SENSITIVITY,
        "max_dets": e.MAX_DETS,
    }

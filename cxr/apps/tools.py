"""The bodies of ``tools/eval.py``, ``tools/predict.py`` and ``tools/export_coco.py``: from
parsed arguments to results. Each sets up logging with :func:`cxr.engine.setup_logging` (console
+ ``<output>/log.txt``) and its config with :func:`cxr.engine.setup_config`.
"""

from __future__ import annotations

import hashlib
import logging
import os

from cxr_runtime.predict import add_backend_argument
from detectron2.data import DatasetCatalog, MetadataCatalog

from ..config import get_cfg
from ..engine.defaults import setup_config, setup_logging
from ..engine.inference import load_inference_model
from ..evaluation.config import eval_kwargs_from_cfg
from ..evaluation.medical import MedicalResult
from ..evaluation.operating_points import load_thresholds
from .coco_json import export_coco
from .evaluate import evaluate_checkpoints, evaluate_files, resolved_eval_kwargs
from .exported import config_for_exported
from .paths import check_output_dir, check_predict_output
from .predictor import XrayPredictor, class_names_from_cfg, predict_files

__all__ = [
    "add_backend_argument",
    "register_nih_folder",
    "run_eval",
    "run_export_coco",
    "run_predict",
]

logger = logging.getLogger(__name__)


def register_nih_folder(image_folder: str, annotations: str, data_entry: str = "") -> str:
    """Register an NIH-format CSV + image folder as a temporary ``evaluator_type="cxr"`` set.

    With ``data_entry`` (``Data_Entry_2017*.csv``), every ``No Finding`` image of the same
    patients found in the folder is added as a negative.

    Returns:
        the registered name (stable for the same three paths).
    """
    from ..data.datasets.nih import load_nih, nih_class_names

    paths = [os.path.abspath(p) if p else "" for p in (image_folder, annotations, data_entry)]
    name = f"cxr_eval_folder_{hashlib.sha1('|'.join(paths).encode()).hexdigest()[:10]}"
    if name not in DatasetCatalog.list():
        DatasetCatalog.register(
            name,
            lambda: load_nih(
                annotations, image_folder, data_entry or None, num_negatives=-1 if data_entry else 0
            ),
        )
        MetadataCatalog.get(name).set(thing_classes=nih_class_names(), evaluator_type="cxr")
    return name


#: ``tools/eval.py`` options that only the checkpoints mode uses: (attribute, flag, unset value).
CHECKPOINT_MODE_ONLY = (
    ("gradcam", "--gradcam", None),
    ("best_metric", "--best-metric", None),
    ("backend", "--backend", "torch"),
    ("image_folder", "--image-folder", ""),
    ("annotations", "--annotations", ""),
    ("data_entry", "--data-entry", ""),
    ("opts", "KEY VALUE overrides", []),
)


def _refuse_unused(args, mode: str, unused=CHECKPOINT_MODE_ONLY) -> None:
    """Refuse options ``mode`` would silently ignore.

    Raises:
        SystemExit naming them.
    """
    given = [flag for attr, flag, unset in unused if getattr(args, attr, unset) not in (unset, ())]
    if given:
        raise SystemExit(
            f"{', '.join(given)} {'has' if len(given) == 1 else 'have'} no effect in {mode} "
            "(they apply to checkpoints mode: --config-file and --checkpoint); leave them out"
        )


def _eval_files_mode(args) -> MedicalResult:
    if not (args.gt_json and args.detections):
        raise SystemExit("files mode needs both --gt-json and --detections")
    if args.checkpoint or args.config_file:
        raise SystemExit("give either --gt-json/--detections or --config-file/--checkpoint")
    _refuse_unused(args, "files mode (--gt-json/--detections)")
    check_output_dir(args.output, [args.gt_json, args.detections, args.thresholds])
    setup_logging(args.output)
    cfg = get_cfg()
    return evaluate_files(
        args.gt_json,
        args.detections,
        args.output,
        plots=not args.no_plots,
        gallery_size=(
            cfg.CXR.EVAL.GALLERY_SIZE if args.gallery_size is None else args.gallery_size
        ),
        image_root=args.image_root or None,
        **resolved_eval_kwargs(cfg, args),
    )


def _eval_classification_files(args):
    """Files mode of a classifier: ``--predictions`` (a classifier's predictions.json) scored
    against the labels of the registered classification set ``--dataset``."""
    from ..evaluation.classification.evaluator import evaluate_classification_files

    if not args.dataset or args.checkpoint or args.config_file:
        raise SystemExit("--predictions goes with --dataset (a registered classification set) only")
    _refuse_unused(args, "files mode (--dataset/--predictions)")
    check_output_dir(args.output, [args.predictions, args.thresholds])
    setup_logging(args.output)
    kw = resolved_eval_kwargs(get_cfg(), args)
    keys = ("cm_threshold", "thresholds", "bootstrap", "seed", "operating_point",
            "target_sensitivity")  # fmt: skip
    return evaluate_classification_files(
        args.dataset, args.predictions, args.output, plots=not args.no_plots,
        **{k: kw[k] for k in keys},
    )  # fmt: skip


def _eval_dataset(args, cfg) -> str:
    if args.image_folder:
        return register_nih_folder(args.image_folder, args.annotations, args.data_entry)
    dataset = args.dataset or (cfg.DATASETS.TEST[0] if cfg.DATASETS.TEST else "")
    if not dataset:
        raise SystemExit(
            "no dataset: give --dataset, --image-folder/--annotations, or set "
            "DATASETS.TEST in the config"
        )
    return dataset


def run_eval(args) -> dict | MedicalResult:
    """``tools/eval.py``: pick the mode from the arguments and run it.

    Raises:
        SystemExit with a usage message for an invalid combination of arguments.
    """
    if args.gt_json or args.detections:
        return _eval_files_mode(args)
    if getattr(args, "predictions", ""):
        return _eval_classification_files(args)
    if not (args.config_file and args.checkpoint):
        raise SystemExit(
            "checkpoints mode needs --config-file and --checkpoint "
            "(or use --gt-json/--detections)"
        )
    if bool(args.image_folder) != bool(args.annotations):
        raise SystemExit("--image-folder and --annotations go together")
    inputs = [
        args.config_file,
        args.thresholds,
        args.annotations,
        args.image_folder,
        args.data_entry,
    ]
    check_output_dir(args.output, inputs)
    setup_logging(args.output)
    opts = list(args.opts)
    if getattr(args, "gradcam", None) is not None:
        opts += ["CXR.VIS.GRADCAM_IMAGES", str(args.gradcam)]
    cfg = setup_config(args.config_file, opts, output_dir=args.output)
    if args.backend != "torch":
        cfg = config_for_exported(cfg, args.checkpoint, args.opts)
    dataset = _eval_dataset(args, cfg)
    return evaluate_checkpoints(
        _with_eval_flags(cfg, args),
        args.checkpoint,
        dataset,
        args.output,
        best_metric=args.best_metric,
        backend=args.backend,
    )


def _with_eval_flags(cfg, args):
    """``cfg`` with ``tools/eval.py``'s evaluation flags written into ``cfg.CXR.EVAL`` (unset
    flags keep the config's values), so that the data set's evaluator is built from the config
    exactly as ``train_net --eval-only`` builds it."""
    flags = {
        "CM_THRESHOLD": None if args.cm_threshold is None else float(args.cm_threshold),
        "THRESHOLDS_FILE": args.thresholds or None,
        "BOOTSTRAP": args.bootstrap,
        "BOOTSTRAP_SEED": args.seed,
        "PLOTS": False if args.no_plots else None,
        "GALLERY_SIZE": args.gallery_size,
    }
    if flags["THRESHOLDS_FILE"]:
        load_thresholds(flags["THRESHOLDS_FILE"])  # a bad file fails before any inference
    cfg = cfg.clone()
    cfg.defrost()
    for key, value in flags.items():
        if value is not None:
            setattr(cfg.CXR.EVAL, key, value)
    cfg.freeze()
    return cfg


def _check_exported_class_names(model, names: list[str], args) -> None:
    """An exported model (``--backend onnxruntime``) stores its class names: the config's must
    be the same list; ``--classes`` may rename them, one name per class."""
    stored = getattr(getattr(model, "detector", None), "class_names", None)
    if stored is None or list(stored) == list(names):
        return
    if args.classes and len(names) == len(stored):
        return
    source = "--classes" if args.classes else args.config_file
    raise SystemExit(
        f"the class names of {source} ({names}) differ from those stored in "
        f"{model.detector.path} ({list(stored)}); leave out --config-file to use the model's "
        "own, or pass --classes"
    )


def run_predict(args) -> dict:
    """``tools/predict.py``: predict every input image; returns :func:`predict_files`' counts.

    Raises:
        SystemExit when class names are unknown, or when no input image could be read.
    """
    check_predict_output(args.output, args.input)
    setup_logging(args.output)
    cfg = setup_config(args.config_file, args.opts)
    if args.backend != "torch":
        cfg = config_for_exported(cfg, [args.checkpoint], args.opts)
    names = [c.strip() for c in args.classes.split(",") if c.strip()] or class_names_from_cfg(cfg)
    if not names:
        raise SystemExit(
            "class names unknown: pass --classes A,B,... or a config whose "
            "DATASETS.TEST is registered"
        )
    kw = eval_kwargs_from_cfg(
        cfg, cm_threshold=args.cm_threshold, thresholds=args.thresholds or None
    )
    model = load_inference_model(cfg, args.checkpoint, backend=args.backend)[0]
    _check_exported_class_names(model, names, args)
    stats = predict_files(
        XrayPredictor(cfg, model=model),
        args.input,
        args.output,
        names,
        load_thresholds(kw["thresholds"]) if kw["thresholds"] else None,
        kw["cm_threshold"],
        len(cfg.MODEL.PIXEL_MEAN),
        not args.no_overlays,
        getattr(args, "gradcam", False),
        cfg.CXR.VIS.GRADCAM_METHOD,
    )
    return stats


def run_export_coco(args) -> dict:
    """``tools/export_coco.py``: write a registered data set as COCO ground truth."""
    setup_logging(None)
    if args.dataset not in DatasetCatalog.list():
        raise SystemExit(f"data set {args.dataset!r} is not registered")
    counts = export_coco(args.dataset, args.output)
    logger.info("Wrote %s (%s)", args.output, ", ".join(f"{v} {k}" for k, v in counts.items()))
    return counts

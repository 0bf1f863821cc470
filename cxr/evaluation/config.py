"""Config keys read by :mod:`cxr.evaluation`; each with a comment."""

from detectron2.config import CfgNode as CN

from ..config import CONFIG_REGISTRY


@CONFIG_REGISTRY.register_as("evaluation")
def add_evaluation_config(cfg) -> None:
    """Add the :mod:`cxr.evaluation` keys to ``cfg`` in place."""
    cfg.CXR.EVAL = CN()
    # Image-level score threshold for every class (score >= threshold is positive), used
    # when THRESHOLDS_FILE is empty or lacks a class.
    cfg.CXR.EVAL.CM_THRESHOLD = 0.3
    # thresholds.json with per-class operating points (from a validation set); "" = none.
    cfg.CXR.EVAL.THRESHOLDS_FILE = ""
    # FROC: a detection hits a lesion when IoU >= this.
    cfg.CXR.EVAL.IOU_FROC = 0.4
    # VOC-style mAP: a detection is a TP when IoU > this (the VinBigData mAP@0.4).
    cfg.CXR.EVAL.IOU_VOC = 0.4
    # Percentile-bootstrap resamples for 95% CIs (patients, else images); 0 = no CIs.
    cfg.CXR.EVAL.BOOTSTRAP = 0
    # Seed of the bootstrap (numpy default_rng): same seed, same CIs.
    cfg.CXR.EVAL.BOOTSTRAP_SEED = 0
    # Rule for the per-class thresholds written to thresholds.json: "youden" or "sensitivity".
    cfg.CXR.EVAL.OPERATING_POINT = "youden"
    # Target sensitivity of the "sensitivity" rule (highest threshold reaching it).
    cfg.CXR.EVAL.TARGET_SENSITIVITY = 0.9
    # COCO AP: detections kept per image and class (pycocotools maxDets).
    cfg.CXR.EVAL.MAX_DETS = 100
    # Write the PNG plots (FROC, PR, ROC, confusion counts) into the output folder.
    cfg.CXR.EVAL.PLOTS = True
    # Write report.html (one self-contained page: metrics, plots and per-class galleries of
    # false positives and missed lesions at the operating point) into the output folder.
    cfg.CXR.EVAL.HTML_REPORT = True
    # Gallery cases per class and kind (false positives, missed lesions) in report.html.
    cfg.CXR.EVAL.GALLERY_SIZE = 8


def eval_kwargs_from_cfg(cfg, **overrides) -> dict:
    """The :func:`~cxr.evaluation.medical.compute_medical_metrics` keywords of ``cfg.CXR.EVAL``.

    The one mapping from config keys to evaluation options (the evaluator, ``tools/eval.py``
    and ``tools/predict.py`` use it). ``thresholds`` is the ``THRESHOLDS_FILE`` path (None when
    empty); load it with :func:`~cxr.evaluation.operating_points.load_thresholds`.

    Args:
        overrides: keyword -> value replacing the config's; None values are ignored (an unset
            command-line flag).

    Returns:
        dict with ``cm_threshold``, ``thresholds``, ``bootstrap``, ``seed``, ``iou_froc``,
        ``iou_voc``, ``operating_point``, ``target_sensitivity``, ``max_dets``.
    """
    e = cfg.CXR.EVAL
    kw = {
        "cm_threshold": e.CM_THRESHOLD,
        "thresholds": e.THRESHOLDS_FILE or None,
        "bootstrap": e.BOOTSTRAP,
        "seed": e.BOOTSTRAP_SEED,
        "iou_froc": e.IOU_FROC,
        "iou_voc": e.IOU_VOC,
        "operating_point": e.OPERATING_POINT,
        "target_sensitivity": e.TARGET_SENSITIVITY,
        "max_dets": e.MAX_DETS,
    }
    unknown = set(overrides) - set(kw)
    if unknown:
        raise TypeError(f"unknown evaluation options {sorted(unknown)}; known: {sorted(kw)}")
    kw.update({k: v for k, v in overrides.items() if v is not None})
    return kw

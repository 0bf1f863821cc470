"""Detection and image-level metrics for chest X-ray lesion detection, in pure numpy.

One module per family, each applied to a :class:`~cxr.evaluation.records.DetectionSet` (flat
arrays of ground-truth boxes and detections, each tagged with an image index ``0..N-1`` and a
class index ``0..C-1``; boxes XYXY_ABS pixels, COCO AP reads the XYWH_ABS copies; images without
any box count as negatives for every class):

- :mod:`.matching`: grouping by (image, class) and greedy matching; FROC flags of detections and
  boxes, PASCAL VOC flags.
- :mod:`.ap`: COCO AP (pycocotools semantics) and mAP@0.4 (VOC 2010).
- :mod:`.froc`: FROC sensitivities and CPM.
- :mod:`.iobb`: IoBB localization accuracy (ChestX-ray8).
- :mod:`.image_level`: image scores, confusion counts and rates, AUROC, the ROC curve.
- :mod:`.bootstrap`: seeded patient bootstrap weights and percentile intervals.

Box geometry (the one IoU) is :mod:`cxr.boxes`. Rules: docs/evaluation.md, "Metric
definitions". Undefined ratios (0 / 0) are NaN, never an error. This package lists the public
names of its modules.
"""

from ..records import DetectionSet
from .ap import COCO_AREA_RANGES, COCO_IOU_THRESHOLDS, COCO_RECALL_THRESHOLDS, coco_ap, voc_ap
from .bootstrap import bootstrap_weights, percentile_ci
from .froc import FROC_FPS_PER_IMAGE, froc, froc_curve
from .image_level import IMAGE_LEVEL_KEYS, auroc, image_level_metrics, image_scores, roc_curve
from .iobb import IOBB_THRESHOLDS, iobb_accuracy
from .matching import ClassMatches, FrocMatches, froc_matches, voc_matches

__all__ = [
    "COCO_AREA_RANGES",
    "COCO_IOU_THRESHOLDS",
    "COCO_RECALL_THRESHOLDS",
    "FROC_FPS_PER_IMAGE",
    "IMAGE_LEVEL_KEYS",
    "IOBB_THRESHOLDS",
    "ClassMatches",
    "DetectionSet",
    "FrocMatches",
    "auroc",
    "bootstrap_weights",
    "coco_ap",
    "froc",
    "froc_curve",
    "froc_matches",
    "image_level_metrics",
    "image_scores",
    "iobb_accuracy",
    "percentile_ci",
    "roc_curve",
    "voc_ap",
    "voc_matches",
]

"""``CXREvaluator``: detectron2 ``DatasetEvaluator`` for the medical metric set."""

from __future__ import annotations

import itertools
import logging
import time

import numpy as np
from detectron2.config import configurable
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.evaluation import DatasetEvaluator
from detectron2.utils import comm

from .build import EVALUATOR_REGISTRY, configured_evaluator
from .config import eval_kwargs_from_cfg
from .frames import to_original_frame
from .medical import MedicalResult, compute_medical_metrics, flat_results
from .operating_points import load_thresholds
from .records import coco_category_ids, dataset_to_detection_set
from .report import log_to_event_storage, write_report
from .tables import format_table

__all__ = ["CXREvaluator", "dataset_to_detection_set"]  # the builder lives in .records

logger = logging.getLogger(__name__)


class CXREvaluator(DatasetEvaluator):
    """Medical detection metrics of a registered dataset (``evaluator_type="cxr"``).

    Computes, by the rules of :mod:`cxr.evaluation.metrics` (docs/evaluation.md, "Metric definitions"):
    COCO AP/AP50/AP75 (pycocotools semantics), mAP@0.4 (VOC 2010), IoBB accuracy, FROC + CPM,
    and per-class / any-finding / macro image-level TP/FP/TN/FN, sensitivity, specificity, PPV,
    NPV, F1, AUROC at the operating points, with optional patient-level bootstrap 95% CIs.

    Ground truth: ``DatasetCatalog.get(dataset_name)`` (boxes in any BoxMode, contiguous
    ``category_id``; ``patient_id`` = bootstrap unit when present); images without boxes are
    negatives for every class. Class names: ``MetadataCatalog.get(name).thing_classes``.
    Predictions: ``Instances`` with ``pred_boxes`` (XYXY_ABS in the record's image pixels),
    ``scores``, ``pred_classes``. Records of prepared films (a ``scale`` field, see
    :mod:`cxr.evaluation.frames`) are scored in the original films' pixels: ground truth and
    detections are divided by ``scale`` first, so metrics and ``predictions.json`` match an
    evaluation on the originals. Gathered from every rank with detectron2's ``comm``; only the
    main process computes and writes.

    ``evaluate()`` returns ``{"cxr": {name: float}}`` (see
    :func:`~cxr.evaluation.medical.flat_results`; NaN for undefined values) and, with an
    ``output_dir``, writes ``metrics.json``, ``per_class.csv``, ``predictions.json``,
    ``thresholds.json`` (operating points chosen on this set), PNG plots and ``report.html``. When a detectron2
    EventStorage is active (training), it also puts the scalars under ``cxr/`` and the per-class
    PR curves as the image ``cxr/pr_curves`` (TensorBoard shows them under Images).
    """

    #: The flat metric that names the best checkpoint unless the user picks another.
    DEFAULT_BEST_METRIC = "AP50"
    #: The flat metrics of a checkpoint's summary line and of ``checkpoints.csv``.
    SUMMARY_METRICS = ("AP", "AP50", "AP75", "voc_map40", "froc_cpm", "sensitivity_macro",
                       "specificity_macro", "auroc_macro", "auroc_any")  # fmt: skip

    @configurable
    def __init__(
        self,
        dataset_name: str,
        output_dir: str | None = None,
        *,
        cm_threshold: float = 0.3,
        thresholds: dict[str, float] | str | None = None,
        bootstrap: int = 0,
        seed: int = 0,
        iou_froc: float = 0.4,
        iou_voc: float = 0.4,
        operating_point: str = "youden",
        target_sensitivity: float = 0.9,
        max_dets: int = 100,
        plots: bool = True,
        html_report: bool = True,
        gallery_size: int = 8,
        distributed: bool = True,
    ):
        """
        Args:
            dataset_name: a registered dataset.
            output_dir: folder for the report files (None: write nothing).
            cm_threshold: image-level threshold for classes without an operating point.
            thresholds: class name -> threshold, or a thresholds.json path.
            bootstrap: resamples for 95% CIs (0 = none); seed: their seed.
            iou_froc: FROC match IoU (>=); iou_voc: VOC match IoU (>).
            operating_point, target_sensitivity: rule for thresholds.json chosen on this set.
            max_dets: COCO detections per image and class.
            plots: write PNG plots.
            html_report: write ``report.html`` (:mod:`cxr.evaluation.html_report`).
            gallery_size: its gallery cases per class and kind.
            distributed: gather predictions from all ranks.
        """
        self._dataset_name = dataset_name
        self._output_dir = output_dir
        if isinstance(thresholds, str):
            thresholds = load_thresholds(thresholds)
        self._kw = dict(
            cm_threshold=float(cm_threshold),
            thresholds=thresholds,
            bootstrap=int(bootstrap),
            seed=int(seed),
            iou_froc=float(iou_froc),
            iou_voc=float(iou_voc),
            operating_point=operating_point,
            target_sensitivity=float(target_sensitivity),
            max_dets=int(max_dets),
        )
        self._plots = plots
        self._html = {"gallery_size": int(gallery_size)} if html_report else None
        self._distributed = distributed
        meta = MetadataCatalog.get(dataset_name)
        self._class_names = list(meta.thing_classes)
        self._contiguous_to_dataset = coco_category_ids(meta, len(self._class_names))
        self.last_result: MedicalResult | None = None
        self.reset()

    @classmethod
    def from_config(cls, cfg, dataset_name: str, output_dir: str | None = None) -> dict:
        return {
            "dataset_name": dataset_name,
            "output_dir": output_dir,
            **eval_kwargs_from_cfg(cfg),
            "plots": cfg.CXR.EVAL.PLOTS,
            "html_report": cfg.CXR.EVAL.HTML_REPORT,
            "gallery_size": cfg.CXR.EVAL.GALLERY_SIZE,
        }

    @property
    def class_names(self) -> list[str]:
        """Class names by contiguous class index (the dataset's ``thing_classes``)."""
        return list(self._class_names)

    def reset(self) -> None:
        self._predictions: list[dict] = []

    def process(self, inputs, outputs) -> None:
        """Keep each image's boxes (XYXY_ABS), scores and classes as small numpy arrays."""
        for inp, out in zip(inputs, outputs):
            rec = {
                "image_id": inp["image_id"],
                "boxes": np.zeros((0, 4)),
                "scores": np.zeros(0),
                "classes": np.zeros(0, np.int64),
            }
            if "instances" in out:
                inst = out["instances"].to("cpu")
                rec["boxes"] = inst.pred_boxes.tensor.numpy().astype(np.float64)
                rec["scores"] = inst.scores.numpy().astype(np.float64)
                rec["classes"] = inst.pred_classes.numpy().astype(np.int64)
            self._predictions.append(rec)

    def add_predictions(self, predictions: list[dict]) -> None:
        """Add records ``{"image_id", "boxes" (XYXY_ABS), "scores", "classes"}`` directly."""
        self._predictions.extend(predictions)

    def coco_results(self, predictions: list[dict]) -> list[dict]:
        """Predictions in COCO results format: XYWH_ABS boxes, the dataset's image ids, COCO
        category ids (see ``__init__``) and the class name as ``category_name``."""
        out = []
        for p in predictions:
            b = np.asarray(p["boxes"], np.float64).reshape(-1, 4)
            for box, s, c in zip(b, p["scores"], p["classes"]):
                out.append(
                    {
                        "image_id": p["image_id"],
                        "category_id": int(self._contiguous_to_dataset[int(c)]),
                        "category_name": self._class_names[int(c)],
                        "bbox": [
                            float(box[0]),
                            float(box[1]),
                            float(box[2] - box[0]),
                            float(box[3] - box[1]),
                        ],
                        "score": float(s),
                    }
                )
        return out

    def evaluate(self) -> dict:
        if self._distributed:
            comm.synchronize()
            preds = list(itertools.chain(*comm.gather(self._predictions, dst=0)))
            if not comm.is_main_process():
                return {}
        else:
            preds = self._predictions
        if not preds:
            logger.warning("[CXREvaluator] no predictions received: every image has none")
        t0 = time.perf_counter()
        # prepared films (records with ``scale``): boxes and metrics in the originals' pixels
        dicts, preds = to_original_frame(DatasetCatalog.get(self._dataset_name), preds)
        dset, order, patients = dataset_to_detection_set(
            dicts, len(self._class_names), preds, self._dataset_name
        )
        res = compute_medical_metrics(dset, self._class_names, patient_ids=patients, **self._kw)
        res.metrics["settings"]["dataset"] = self._dataset_name
        self.last_result = res
        logger.info(
            "[CXREvaluator] metrics of %s computed in %.2f s",
            self._dataset_name,
            time.perf_counter() - t0,
        )
        if self._output_dir:
            html = None
            if self._html is not None:
                files = {d["image_id"]: d.get("file_name", "") for d in dicts}
                html = {
                    **self._html,
                    "ds": dset,
                    "file_names": [files[i] for i in order],
                    "subtitle": f"{self._dataset_name}: {dset.num_images} images",
                }
            write_report(
                res,
                self._class_names,
                self._output_dir,
                predictions=self.coco_results(preds),
                plots=self._plots,
                threshold_meta={"dataset": self._dataset_name},
                html=html,
            )
        logger.info(
            "Evaluation of %s:\n%s", self._dataset_name, format_table(res, self._class_names)
        )
        log_to_event_storage(res, self._class_names)
        return {"cxr": flat_results(res.metrics, self._class_names)}


@EVALUATOR_REGISTRY.register_as("cxr")
def build_cxr_evaluator(dataset_name: str, cfg, output_dir: str | None, **options) -> CXREvaluator:
    """The registry entry for ``evaluator_type="cxr"``: a :class:`CXREvaluator` from ``cfg``,
    ``options`` (its ``from_config`` keys) replacing the config's values."""
    return configured_evaluator(CXREvaluator, cfg, dataset_name, output_dir, options)


build_cxr_evaluator.evaluator_class = CXREvaluator

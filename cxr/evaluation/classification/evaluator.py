"""``CXRClassificationEvaluator`` (``evaluator_type="cxr_cls"``): the detectron2
``DatasetEvaluator`` of multi-label classifiers, and the scoring of a classifier's
``predictions.json`` file against a registered classification set.

Metrics: :mod:`.metrics`; report files: :mod:`.report`.
"""

from __future__ import annotations

import itertools
import logging
from typing import Sequence

import numpy as np
from detectron2.config import configurable
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.evaluation import DatasetEvaluator
from detectron2.utils import comm

from ...fileio import read_json
from ..build import EVALUATOR_REGISTRY, configured_evaluator
from ..config import eval_kwargs_from_cfg
from ..operating_points import load_thresholds
from .metrics import (
    ClassificationResult,
    compute_classification_metrics,
    flat_classification_results,
)
from .report import format_classification_table, write_classification_report

__all__ = [
    "CXRClassificationEvaluator",
    "PREDICTIONS_FORMAT",
    "evaluate_classification_files",
    "score_predictions",
]

logger = logging.getLogger(__name__)

PREDICTIONS_FORMAT = "cxr-cls-predictions/1"


def _labels_by_id(dicts: Sequence[dict], num_classes: int, dataset_name: str) -> dict:
    out = {}
    for i, d in enumerate(dicts):
        lab = d.get("labels")
        if lab is None or len(lab) != num_classes:
            raise ValueError(f"{dataset_name}: record {i} ({d.get('file_name')}): field labels "
                             f"must have {num_classes} entries, got {lab!r}")  # fmt: skip
        out[d["image_id"]] = (
            np.asarray(lab, bool),
            str(d.get("patient_id", f"image:{d['image_id']}")),
        )
    return out


class CXRClassificationEvaluator(DatasetEvaluator):
    """Classification metrics of a registered ``evaluator_type="cxr_cls"`` dataset.

    Ground truth: the ``labels`` of ``DatasetCatalog.get(dataset_name)`` (class names from
    ``thing_classes``; ``patient_id`` = bootstrap unit). Predictions: model outputs with
    ``scores`` ((C,) probabilities) and optionally ``embedding`` (pooled features, for t-SNE).
    ``evaluate()`` returns ``{"cls": flat metrics}`` (:func:`flat_classification_results`) and
    writes the report files (see the module docstring) into ``output_dir``.
    """

    #: The flat metric that names the best checkpoint unless the user picks another.
    DEFAULT_BEST_METRIC = "auroc_macro"
    #: The flat metrics of a checkpoint's summary line and of ``checkpoints.csv``.
    SUMMARY_METRICS = ("auroc_macro", "auroc_micro", "ap_macro", "ap_micro",
                       "sensitivity_macro", "specificity_macro", "f1_macro")  # fmt: skip

    @configurable
    def __init__(
        self,
        dataset_name: str,
        output_dir: str | None = None,
        *,
        cm_threshold: float = 0.5,
        thresholds: dict[str, float] | str | None = None,
        bootstrap: int = 0,
        seed: int = 0,
        operating_point: str = "youden",
        target_sensitivity: float = 0.9,
        plots: bool = True,
        max_tsne: int = 2000,
        distributed: bool = True,
    ):
        """
        Args:
            dataset_name: a registered classification dataset.
            output_dir: folder of the report files (None: write nothing).
            thresholds: class name -> threshold, or a thresholds.json path.
            max_tsne: embeddings of at most this many images enter the t-SNE (0 = no t-SNE).
            Other arguments: see :func:`compute_classification_metrics`.
        """
        self._dataset_name = dataset_name
        self._output_dir = output_dir
        self._class_names = list(MetadataCatalog.get(dataset_name).thing_classes)
        if isinstance(thresholds, str):
            thresholds = load_thresholds(thresholds)
        self._kw = {"cm_threshold": cm_threshold, "thresholds": thresholds, "bootstrap": bootstrap,
                    "seed": seed, "operating_point": operating_point,
                    "target_sensitivity": target_sensitivity}  # fmt: skip
        self._plots = plots
        self._max_tsne = max_tsne
        self._distributed = distributed
        self.last_result: ClassificationResult | None = None
        self.reset()

    @classmethod
    def from_config(cls, cfg, dataset_name: str, output_dir: str | None = None) -> dict:
        kw = eval_kwargs_from_cfg(cfg)
        keys = ("cm_threshold", "thresholds", "bootstrap", "seed", "operating_point",
                "target_sensitivity")  # fmt: skip
        return {"dataset_name": dataset_name, "output_dir": output_dir,
                **{k: kw[k] for k in keys}, "plots": cfg.CXR.EVAL.PLOTS}  # fmt: skip

    @property
    def class_names(self) -> list[str]:
        return list(self._class_names)

    def reset(self) -> None:
        self._predictions: list[dict] = []
        self._embeddings: list[np.ndarray] = []

    def process(self, inputs, outputs) -> None:
        for inp, out in zip(inputs, outputs):
            self._predictions.append(
                {"image_id": inp["image_id"], "scores": out["scores"].detach().cpu().tolist()}
            )
            emb = out.get("embedding")
            if emb is not None and len(self._embeddings) < self._max_tsne:
                self._embeddings.append(emb.detach().float().cpu().numpy())

    def evaluate(self) -> dict:
        preds, embs = self._predictions, self._embeddings
        if self._distributed and comm.get_world_size() > 1:
            comm.synchronize()
            preds = list(itertools.chain(*comm.gather(preds)))
            embs = list(itertools.chain(*comm.gather(embs)))
            if not comm.is_main_process():
                return {}
        res, payload = score_predictions(self._dataset_name, self._class_names, preds, **self._kw)
        self.last_result = res
        logger.info("Classification metrics on %s:\n%s", self._dataset_name,
                    format_classification_table(res, self._class_names))  # fmt: skip
        if self._output_dir:
            n = min(len(embs), self._max_tsne)
            write_classification_report(
                res, self._class_names, self._output_dir, payload,
                np.stack(embs[:n]) if n else None, self._plots, {"dataset": self._dataset_name},
            )  # fmt: skip
        return {"cls": flat_classification_results(res.metrics, self._class_names)}


def score_predictions(
    dataset_name: str, class_names: Sequence[str], predictions: Sequence[dict], **kwargs
) -> tuple[ClassificationResult, dict]:
    """Match ``[{"image_id", "scores"}]`` to the dataset's labels (dataset order) and compute
    the metrics; also returns the ``predictions.json`` payload.

    Raises:
        ValueError: a prediction for an unknown image, a missing image, or a wrong score count.
    """
    C = len(class_names)
    dicts = DatasetCatalog.get(dataset_name)
    truth = _labels_by_id(dicts, C, dataset_name)
    by_id = {}
    for j, p in enumerate(predictions):
        iid = p.get("image_id")
        if iid not in truth:
            raise ValueError(
                f"{dataset_name}: prediction {j}: field image_id={iid!r} is not in the dataset"
            )
        if len(p.get("scores", ())) != C:
            raise ValueError(f"{dataset_name}: prediction {j}: field scores must have {C} entries")
        by_id[iid] = np.asarray(p["scores"], np.float64)
    missing = [d["image_id"] for d in dicts if d["image_id"] not in by_id]
    if missing:
        raise ValueError(
            f"{dataset_name}: no prediction for {len(missing)} image(s), e.g. {missing[:3]}"
        )
    ids = [d["image_id"] for d in dicts]
    scores = np.stack([by_id[i] for i in ids]) if ids else np.zeros((0, C))
    labels = np.stack([truth[i][0] for i in ids]) if ids else np.zeros((0, C), bool)
    patients = [truth[i][1] for i in ids]
    res = compute_classification_metrics(
        scores, labels, class_names, patient_ids=patients, **kwargs
    )
    payload = {
        "format": PREDICTIONS_FORMAT, "dataset": dataset_name, "classes": list(class_names),
        "predictions": [{"image_id": i, "patient_id": p, "scores": s.tolist()}
                        for i, p, s in zip(ids, patients, scores)],
    }  # fmt: skip
    return res, payload


def evaluate_classification_files(
    dataset_name: str, predictions_json: str, output_dir: str, *, plots: bool = True, **kwargs
) -> ClassificationResult:
    """Score a ``predictions.json`` (format ``cxr-cls-predictions/1``: ``classes`` and
    ``predictions`` = ``[{"image_id", "scores"}]``) against a registered classification set;
    writes the report (no t-SNE: files carry no embeddings) into ``output_dir``.

    Raises:
        ValueError naming the file and field when the file is not in that format or its classes
        differ from the dataset's.
    """
    data = read_json(predictions_json, "classification predictions")
    if not isinstance(data, dict) or data.get("format") != PREDICTIONS_FORMAT:
        raise ValueError(f"{predictions_json}: field format must be {PREDICTIONS_FORMAT!r}")
    names = list(MetadataCatalog.get(dataset_name).thing_classes)
    if list(data.get("classes", [])) != names:
        raise ValueError(f"{predictions_json}: field classes {data.get('classes')} differs from "
                         f"{dataset_name}'s {names}")  # fmt: skip
    res, payload = score_predictions(dataset_name, names, data.get("predictions", []), **kwargs)
    print(format_classification_table(res, names))
    write_classification_report(
        res, names, output_dir, None, None, plots, {"dataset": dataset_name}
    )
    return res


@EVALUATOR_REGISTRY.register_as("cxr_cls")
def build_classification_evaluator(dataset_name: str, cfg, output_dir: str | None, **options):
    """``evaluator_type="cxr_cls"`` -> :class:`CXRClassificationEvaluator` from ``cfg.CXR.EVAL``,
    ``options`` (its ``from_config`` keys) replacing the config's values."""
    return configured_evaluator(CXRClassificationEvaluator, cfg, dataset_name, output_dir, options)


build_classification_evaluator.evaluator_class = CXRClassificationEvaluator

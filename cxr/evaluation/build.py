"""The one choice of a dataset evaluator: a registry keyed by a dataset's ``evaluator_type``.

``tools/eval.py`` (:mod:`cxr.apps.evaluate`), ``tools/train_net.py --eval-only`` and the
evaluations during training all call :func:`build_evaluator`, so one data set gets one evaluator
and the same metrics from every tool. A data set without ``evaluator_type`` metadata gets
:data:`DEFAULT_EVALUATOR_TYPE`.

Entries are builders ``(dataset_name, cfg, output_dir, **options) -> DatasetEvaluator``;
``options`` replace values the builder otherwise takes from ``cfg`` (``cfg.CXR.EVAL``), and an
option the builder does not know raises ``ValueError`` naming the ones it accepts.
"""

from __future__ import annotations

from typing import Any

from detectron2.data import MetadataCatalog
from detectron2.evaluation import COCOEvaluator, DatasetEvaluator

from ..registry import NamedRegistry

__all__ = [
    "DEFAULT_EVALUATOR_TYPE",
    "EVALUATOR_REGISTRY",
    "build_evaluator",
    "configured_evaluator",
    "evaluator_metrics",
    "evaluator_type_of",
]

#: ``evaluator_type`` of a data set registered without one: cxr's medical metric set (COCO AP
#: included), :class:`~cxr.evaluation.evaluator.CXREvaluator`.
DEFAULT_EVALUATOR_TYPE = "cxr"

EVALUATOR_REGISTRY = NamedRegistry("CXR_EVALUATOR")
EVALUATOR_REGISTRY.__doc__ = "Evaluators keyed by MetadataCatalog.get(name).evaluator_type."


def _check_options(what: str, options: dict, valid) -> None:
    unknown = sorted(set(options) - set(valid))
    if unknown:
        raise ValueError(
            f"{what}: unknown evaluator option(s) {unknown}; valid options: {sorted(valid)}"
        )


def configured_evaluator(cls, cfg, dataset_name: str, output_dir: str | None, options: dict):
    """``cls(**cls.from_config(cfg, dataset_name, output_dir))`` with ``options`` replacing the
    config's values; the valid options are the keys ``from_config`` reads from ``cfg``.

    Raises:
        ValueError: an option that is not one of them (named with the valid ones).
    """
    kw = dict(cls.from_config(cfg, dataset_name, output_dir))
    valid = set(kw) - {"dataset_name", "output_dir"}
    _check_options(f"{cls.__name__} of data set {dataset_name}", options, valid)
    kw.update(options)
    return cls(**kw)


@EVALUATOR_REGISTRY.register_as("coco")
def build_coco_evaluator(
    dataset_name: str, cfg, output_dir: str | None, **options: Any
) -> DatasetEvaluator:
    """detectron2's COCOEvaluator on the pure-Python pycocotools path (no compiled COCOeval);
    it takes no options (its settings are detectron2's)."""
    _check_options(f"COCOEvaluator of data set {dataset_name}", options, ())
    return COCOEvaluator(dataset_name, output_dir=output_dir, use_fast_impl=False)


def evaluator_type_of(dataset_name: str) -> str:
    """The ``evaluator_type`` metadata of ``dataset_name`` (default :data:`DEFAULT_EVALUATOR_TYPE`).

    Raises:
        KeyError: a type no evaluator is registered for (named with the registered ones).
    """
    kind = MetadataCatalog.get(dataset_name).get("evaluator_type", DEFAULT_EVALUATOR_TYPE)
    if kind not in EVALUATOR_REGISTRY.names():
        raise KeyError(
            f"data set {dataset_name}: evaluator_type {kind!r} has no evaluator; "
            f"registered: {EVALUATOR_REGISTRY.names()}"
        )
    return kind


def evaluator_metrics(dataset_name: str) -> tuple[str, tuple[str, ...]]:
    """(the metric that names the best checkpoint by default, the metrics of a checkpoint's
    summary line) of the data set's evaluator: the ``DEFAULT_BEST_METRIC`` / ``SUMMARY_METRICS``
    of the class its registry entry builds (``evaluator_class``), COCO's AP50 / AP, AP50, AP75
    for an evaluator without them (detectron2's COCOEvaluator)."""
    builder = EVALUATOR_REGISTRY.get(evaluator_type_of(dataset_name))
    cls = getattr(builder, "evaluator_class", None)
    return (
        getattr(cls, "DEFAULT_BEST_METRIC", "AP50"),
        tuple(getattr(cls, "SUMMARY_METRICS", ("AP", "AP50", "AP75"))),
    )


def build_evaluator(
    cfg, dataset_name: str, output_dir: str | None, **options: Any
) -> DatasetEvaluator:
    """The evaluator of ``dataset_name``, chosen by its ``evaluator_type``.

    Args:
        cfg: the config (``cfg.CXR.EVAL`` holds the evaluation options).
        dataset_name: a registered data set.
        output_dir: folder of the evaluator's files (None: write none).
        options: evaluator options replacing the config's (``cm_threshold``, ``bootstrap``,
            ...); which are valid depends on the evaluator.

    Raises:
        KeyError: no evaluator for the data set's ``evaluator_type``.
        ValueError: an option the evaluator does not take.
    """
    return EVALUATOR_REGISTRY.get(evaluator_type_of(dataset_name))(
        dataset_name, cfg, output_dir, **options
    )

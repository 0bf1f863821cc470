"""Registry of dataset evaluators keyed by a dataset's ``evaluator_type`` metadata.

Entries are callables ``(dataset_name, cfg, output_dir) -> DatasetEvaluator``.
"""

from __future__ import annotations

from detectron2.data import MetadataCatalog
from detectron2.evaluation import COCOEvaluator, DatasetEvaluator

from ..registry import NamedRegistry

__all__ = ["EVALUATOR_REGISTRY", "build_evaluator"]


EVALUATOR_REGISTRY = NamedRegistry("CXR_EVALUATOR")
EVALUATOR_REGISTRY.__doc__ = "Evaluators keyed by MetadataCatalog.get(name).evaluator_type."


@EVALUATOR_REGISTRY.register_as("coco")
def build_coco_evaluator(dataset_name: str, cfg, output_dir: str) -> DatasetEvaluator:
    """detectron2's COCOEvaluator on the pure-Python pycocotools path (no compiled COCOeval)."""
    return COCOEvaluator(dataset_name, output_dir=output_dir, use_fast_impl=False)


def build_evaluator(cfg, dataset_name: str, output_dir: str) -> DatasetEvaluator:
    """Evaluator for ``dataset_name`` chosen by its ``evaluator_type`` (default ``coco``)."""
    evaluator_type = MetadataCatalog.get(dataset_name).get("evaluator_type", "coco")
    return EVALUATOR_REGISTRY.get(evaluator_type)(dataset_name, cfg, output_dir)

"""Classification evaluation, split as the detection side is: :mod:`.metrics` (numpy
metrics), :mod:`.evaluator` (``CXRClassificationEvaluator``, ``evaluator_type="cxr_cls"``, and
file scoring) and :mod:`.report` (report files, plots, table). This package lists their public
names."""

from .evaluator import (
    PREDICTIONS_FORMAT,
    CXRClassificationEvaluator,
    evaluate_classification_files,
    score_predictions,
)
from .metrics import (
    ClassificationResult,
    average_precision,
    compute_classification_metrics,
    flat_classification_results,
)
from .report import format_classification_table, write_classification_report

__all__ = [
    "CXRClassificationEvaluator",
    "ClassificationResult",
    "PREDICTIONS_FORMAT",
    "average_precision",
    "compute_classification_metrics",
    "evaluate_classification_files",
    "flat_classification_results",
    "format_classification_table",
    "score_predictions",
    "write_classification_report",
]

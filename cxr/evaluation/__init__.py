"""Evaluation: pure-numpy metrics, the medical evaluator, reports."""

from . import config  # noqa: F401  (registers the CXR.EVAL config keys)
from .build import EVALUATOR_REGISTRY, build_evaluator  # noqa: F401
from .evaluator import CXREvaluator  # noqa: F401
from .operating_points import load_thresholds, save_thresholds, select_thresholds  # noqa: F401
from .classification.evaluator import CXRClassificationEvaluator  # noqa: F401

"""Evaluation: pure-numpy metrics, the medical evaluator, reports."""
from .build import EVALUATOR_REGISTRY, build_evaluator  # noqa: F401

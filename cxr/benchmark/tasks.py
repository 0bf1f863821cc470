"""Imports every module that registers benchmark tasks (one line each)."""
from . import eval  # noqa: F401  (task: eval)
from . import data  # noqa: F401  (task: data)

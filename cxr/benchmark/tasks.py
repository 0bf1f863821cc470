"""Imports every module that registers benchmark tasks (one line each)."""
from . import eval  # noqa: F401  (task: eval)
from . import data  # noqa: F401  (task: data)
from . import inference  # noqa: F401  (task: inference)
from . import train  # noqa: F401  (task: train)

"""Imports every module that registers benchmark tasks (one line each)."""
from . import eval  # noqa: F401  (task: eval)
from . import data  # noqa: F401  (task: data)
from . import inference  # noqa: F401  (task: inference)
from . import train  # noqa: F401  (task: train)
from . import peers  # noqa: F401  (tasks: *_vs_effdet_*)
from . import suite  # noqa: F401  (task: all)

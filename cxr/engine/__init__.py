"""Engine: the Trainer and its hooks, and the tools' shared setup."""
from . import config, mlflow_config, swa_config  # noqa: F401  (register their config keys)
from .defaults import setup, setup_config, setup_logging  # noqa: F401
from .trainer import Trainer  # noqa: F401

"""Config keys read by :mod:`cxr.evaluation`; each with a comment."""
from detectron2.config import CfgNode as CN  # noqa: F401


def add_evaluation_config(cfg) -> None:
    """Add the :mod:`cxr.evaluation` keys to ``cfg`` in place."""
    pass

"""Config keys read by :mod:`cxr.engine`; each with a comment."""
from detectron2.config import CfgNode as CN  # noqa: F401


def add_engine_config(cfg) -> None:
    """Add the :mod:`cxr.engine` keys to ``cfg`` in place."""
    pass

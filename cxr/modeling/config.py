"""Config keys read by :mod:`cxr.modeling`; each with a comment."""
from detectron2.config import CfgNode as CN  # noqa: F401


def add_modeling_config(cfg) -> None:
    """Add the :mod:`cxr.modeling` keys to ``cfg`` in place."""
    pass

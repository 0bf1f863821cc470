"""Config keys read by :mod:`cxr.data`; each with a comment."""
from detectron2.config import CfgNode as CN  # noqa: F401


def add_data_config(cfg) -> None:
    """Add the :mod:`cxr.data` keys to ``cfg`` in place."""
    # Per-image dataset mapper, chosen by name from cxr.data.MAPPER_REGISTRY.
    cfg.INPUT.MAPPER = "DatasetMapper"

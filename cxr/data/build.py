"""Registry of per-image dataset mappers, chosen by ``cfg.INPUT.MAPPER``.

A mapper turns one detectron2 dataset dict into the model's input dict. Entries are
``@configurable`` classes built as ``MAPPER_REGISTRY.get(name)(cfg, is_train)``.
"""
from __future__ import annotations

from detectron2.data import DatasetMapper
from detectron2.utils.registry import Registry

__all__ = ["MAPPER_REGISTRY", "build_mapper"]

MAPPER_REGISTRY = Registry("CXR_MAPPER")
MAPPER_REGISTRY.__doc__ = "Dataset mappers selectable by cfg.INPUT.MAPPER."
# detectron2's own mapper, as the reference the cxr mappers are tested against.
MAPPER_REGISTRY.register(DatasetMapper)


def build_mapper(cfg, is_train: bool):
    """Instantiate the mapper named by ``cfg.INPUT.MAPPER``."""
    return MAPPER_REGISTRY.get(cfg.INPUT.MAPPER)(cfg, is_train)

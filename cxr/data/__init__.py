"""Data: image I/O, dataset loaders and registration, splits, phantom data, mappers."""
from .build import MAPPER_REGISTRY, build_mapper  # noqa: F401

"""A detectron2/fvcore ``Registry`` whose entries are registered under an explicit name."""
from __future__ import annotations

from typing import Callable, TypeVar

from detectron2.utils.registry import Registry

__all__ = ["NamedRegistry"]

T = TypeVar("T")


class NamedRegistry(Registry):
    """``Registry`` plus :meth:`register_as`, for keys that are not Python identifiers' names
    (an ``evaluator_type`` such as ``"cxr"``, or a sampler named like a detectron2 class)."""

    def register_as(self, name: str) -> Callable[[T], T]:
        def deco(obj: T) -> T:
            self._do_register(name, obj)
            return obj

        return deco

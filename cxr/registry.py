"""cxr's registry: detectron2's (fvcore's) ``Registry`` plus explicit names and a public listing."""
from __future__ import annotations

from typing import Callable, TypeVar

from detectron2.utils.registry import Registry

__all__ = ["NamedRegistry"]

T = TypeVar("T")


class NamedRegistry(Registry):
    """``Registry`` plus :meth:`register_as`, for keys that are not the object's ``__name__``
    (an ``evaluator_type`` such as ``"cxr"``, an augmentation preset such as ``"light"``), and
    :meth:`names`, the registered keys."""

    def register_as(self, name: str) -> Callable[[T], T]:
        """Decorator registering its object under ``name`` (a duplicate name raises)."""

        def deco(obj: T) -> T:
            self._do_register(name, obj)
            return obj

        return deco

    def names(self) -> list[str]:
        """The registered keys, sorted."""
        return sorted(name for name, _ in self)

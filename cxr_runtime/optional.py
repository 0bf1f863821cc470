"""Optional packages: the ``pip install`` extra of each, and an import that names it when missing.

``pip install cxr`` (``install_requires`` in ``setup.py``) brings everything the training,
evaluation, export and ensemble paths import. Heavier parts that only some commands need are
extras (``cxr[deploy]``: ``pip install '.[deploy]'`` in a checkout; docs/install.md lists
them). Code that needs one imports
it through :func:`import_optional`, so a missing package stops with the line to run instead of a
bare ``No module named ...``. ``tests/test_install.py`` checks this table against ``setup.py``.
"""
from __future__ import annotations

import importlib
from types import ModuleType

__all__ = ["OPTIONAL_PACKAGES", "import_optional", "install_hint"]

# top-level module -> (distribution name on the package index, cxr extra that installs it)
OPTIONAL_PACKAGES: dict[str, tuple[str, str]] = {
    "onnxruntime": ("onnxruntime", "deploy"),
    "openvino": ("openvino", "deploy"),
    "fastapi": ("fastapi", "serve"),
    "uvicorn": ("uvicorn", "serve"),
    "pydantic": ("pydantic", "serve"),
    "multipart": ("python-multipart", "serve"),
    "python_multipart": ("python-multipart", "serve"),
    "mlflow": ("mlflow", "experiments"),
    "optuna": ("optuna", "experiments"),
    "torchxrayvision": ("torchxrayvision", "convert"),
}


def install_hint(module: str) -> str:
    """The command that installs top-level ``module``: ``pip install <dist>``, or its whole extra
    ``cxr[<extra>]`` (``pip install '.[<extra>]'`` in a cxr checkout)."""
    dist, extra = OPTIONAL_PACKAGES[module.split(".")[0]]
    where = f"pip install '.[{extra}]' in a cxr checkout"
    return f"pip install {dist} (or the extra cxr[{extra}]: {where})"


def import_optional(module: str, purpose: str) -> ModuleType:
    """Import ``module`` (dotted names allowed), whose top-level package is optional.

    Args:
        module: e.g. ``"onnxruntime"`` or ``"onnxruntime.quantization"``; its top-level name must
            be a key of :data:`OPTIONAL_PACKAGES`.
        purpose: what needs it, for the message (e.g. ``"--backend onnxruntime"``).

    Raises:
        ImportError: the package is not installed; the message names ``purpose``, the
            distribution and the extra that installs it. An ImportError raised *inside* an
            installed package (a broken install) propagates unchanged.
    """
    top = module.split(".")[0]
    if top not in OPTIONAL_PACKAGES:
        raise KeyError(f"{top!r} is not an optional package; known: {sorted(OPTIONAL_PACKAGES)}")
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as e:
        missing = e.name or ""
        if missing != module and not module.startswith(missing + "."):
            raise
        dist = OPTIONAL_PACKAGES[top][0]
        raise ImportError(
            f"{purpose} needs the {dist} package, which is not installed: {install_hint(top)}"
        ) from None

"""Reading ``.pth`` / ``.pt`` files without running code: every weights file cxr opens with
``torch.load`` goes through :func:`load_weights_only`, so the safety rule and its error message
live in one place."""
from __future__ import annotations

import os
from typing import Any

__all__ = ["is_torchscript_archive", "load_weights_only"]


def is_torchscript_archive(path: str) -> bool:
    """True when ``path`` is a ``torch.jit.save`` archive: a zip holding the program's
    ``code/`` (``torch.save`` zips hold ``data.pkl`` and ``data/`` only)."""
    import zipfile

    if not os.path.isfile(path) or not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as z:
        return any(n.split("/", 1)[-1].startswith("code/") for n in z.namelist())


def load_weights_only(path: str, *, error: type[Exception] = ValueError) -> Any:
    """The object stored in the torch file ``path``, read on the CPU with
    ``torch.load(weights_only=True)``: tensors and plain containers only, no code runs.

    Args:
        path: a ``.pth`` / ``.pt`` file written by ``torch.save``.
        error: the exception type raised for a file that cannot be read this way (the caller's
            own error type, e.g. the checkpointer's ``UnsafeCheckpointError``).

    Returns:
        What ``torch.save`` stored (usually a dict of tensors or a checkpoint dict); the caller
        checks its shape.

    Raises:
        FileNotFoundError: ``path`` does not exist (as ``open`` raises it).
        error: a TorchScript archive (named as such, with what to use instead), or anything
            else ``torch.load`` refuses (objects beyond tensors and containers, a truncated or
            non-torch file), with a message naming the file and torch's reason.
    """
    import torch  # here, so that importing this module stays cheap

    if is_torchscript_archive(path):
        raise error(
            f"{path} is a TorchScript program (tools/export.py --format torchscript), not a "
            "weights file: run the exported model.onnx (--backend onnxruntime), or load the "
            "TorchScript file with torch.jit.load on your side"
        )
    try:
        with open(path, "rb") as f:
            return torch.load(f, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise
    except Exception as e:  # torch raises UnpicklingError / RuntimeError for unsafe content
        raise error(f"{path}: cannot be loaded with torch.load(weights_only=True): {e}") from None

"""Atomic file writes: a temp file in the target's folder, flushed, fsync'ed, then renamed.

Readers (and a process restarted after a kill) see the old file or the new one, never half of
one. Used for checkpoints, ``last_checkpoint``, reports, ``thresholds.json`` and CSVs.
"""
from __future__ import annotations

import json
import os
import tempfile
from typing import BinaryIO, Callable

__all__ = ["atomic_write", "write_bytes_atomic", "write_json_atomic", "write_text_atomic"]


def atomic_write(path: str, write: Callable[[BinaryIO], object]) -> None:
    """Call ``write(f)`` on a temp file beside ``path`` and rename it over ``path``.

    On any exception (or KeyboardInterrupt) the temp file is removed and ``path`` is untouched.
    """
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=".tmp", dir=directory)
    try:
        # mkstemp creates 0600; give the result the permissions a plain open() would.
        umask = os.umask(0)
        os.umask(umask)
        os.fchmod(fd, 0o666 & ~umask)
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_bytes_atomic(path: str, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    atomic_write(path, lambda f: f.write(data))


def write_text_atomic(path: str, text: str) -> None:
    """UTF-8 text version of :func:`write_bytes_atomic`."""
    write_bytes_atomic(path, text.encode("utf-8"))


def write_json_atomic(path: str, obj) -> None:
    """``obj`` as indented strict JSON (NaN refused: convert it to None first)."""
    write_text_atomic(path, json.dumps(obj, indent=2, allow_nan=False))

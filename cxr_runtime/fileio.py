"""Reading JSON with errors that name the file, and atomic file writes: a temp file in the
target's folder, flushed, fsync'ed, then renamed.

Readers (and a process restarted after a kill) see the old file or the new one, never half of
one. Every file cxr and its runtime write goes through here (re-exported as :mod:`cxr.fileio`):
checkpoints, ``last_checkpoint``, reports, ``thresholds.json``, prediction CSVs and overlays,
split files, the phantom data set and the benchmark results. The result has the permissions a
plain ``open(path, "w")`` would give (``0o666 & ~umask``).
"""
from __future__ import annotations

import contextlib
import csv
import hashlib
import json
import math
import os
import tempfile
from typing import IO, Any, BinaryIO, Callable, Iterable, Iterator, Sequence

import numpy as np

__all__ = [
    "atomic_open",
    "atomic_write",
    "json_safe",
    "read_json",
    "sha256_file",
    "write_bytes_atomic",
    "write_csv_atomic",
    "write_json_atomic",
    "write_png_atomic",
    "write_text_atomic",
]


def _plain_open_mode() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


@contextlib.contextmanager
def atomic_open(path: str, mode: str = "w", **kwargs: Any) -> Iterator[IO]:
    """``open()`` for writing whose result appears at ``path`` only when the block succeeds.

    The file is a temp file beside ``path`` (its folder is created), renamed over ``path`` after
    the block; on any exception (or KeyboardInterrupt) the temp file is removed and ``path`` is
    untouched. Suits streamed writes (``csv.writer(f)`` row by row).

    Args:
        path: destination file.
        mode: ``"w"`` (text, UTF-8 unless ``encoding`` is given) or ``"wb"``.
        kwargs: passed to ``open`` (``newline=""`` for CSV, ``encoding``).
    """
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_open writes whole files: mode 'w' or 'wb', got {mode!r}")
    if mode == "w":
        kwargs.setdefault("encoding", "utf-8")
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    prefix = "." + os.path.basename(path) + "."
    fd, tmp = tempfile.mkstemp(prefix=prefix, suffix=".tmp", dir=directory)
    try:
        # mkstemp creates 0600; give the result the permissions a plain open() would.
        os.fchmod(fd, _plain_open_mode())
        with os.fdopen(fd, mode, **kwargs) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_write(path: str, write: Callable[[BinaryIO], object]) -> None:
    """Call ``write(f)`` on a binary temp file beside ``path`` and rename it over ``path``.

    On any exception (or KeyboardInterrupt) the temp file is removed and ``path`` is untouched.
    """
    with atomic_open(path, "wb") as f:
        write(f)


def write_bytes_atomic(path: str, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    atomic_write(path, lambda f: f.write(data))


def write_png_atomic(path: str, image: np.ndarray, params: Sequence[int] = ()) -> None:
    """Encode ``image`` (HxW gray or HxWx3 BGR uint8, OpenCV's channel order) as PNG and write
    it atomically; ``params`` are OpenCV ``imwrite`` flags (e.g. PNG compression).

    Raises:
        OSError naming ``path`` when OpenCV cannot encode the image.
    """
    import cv2

    ok, buf = cv2.imencode(".png", np.ascontiguousarray(image), list(params))
    if not ok:
        raise OSError(f"PNG encoding failed for {path}")
    write_bytes_atomic(path, buf.tobytes())


def write_text_atomic(path: str, text: str) -> None:
    """UTF-8 text version of :func:`write_bytes_atomic`."""
    write_bytes_atomic(path, text.encode("utf-8"))


def write_csv_atomic(path: str, header: Sequence[str], rows: Iterable[Sequence]) -> None:
    """A CSV file (``csv`` module defaults: comma, minimal quoting, ``\\r\\n`` rows) atomically.

    Args:
        header: the column names, written first.
        rows: one sequence of values per row, in ``header`` order.
    """
    with atomic_open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)


def read_json(path: str, what: str = "JSON") -> Any:
    """The parsed content of the JSON file ``path``.

    Raises:
        FileNotFoundError naming ``what`` and the path; ValueError naming the path when the
        content is not valid UTF-8 JSON.
    """
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        raise FileNotFoundError(f"{what} file not found: {path}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{path}: not valid JSON ({e})") from None


def json_safe(obj: Any) -> Any:
    """``obj`` made strict-JSON serializable, recursively: NaN / inf floats become None, numpy
    scalars and arrays become Python numbers and lists, dict keys become strings."""
    if isinstance(obj, dict):
        return {str(k): json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, np.ndarray)):
        return [json_safe(v) for v in obj]
    if isinstance(obj, (float, np.floating)):
        v = float(obj)
        return v if math.isfinite(v) else None
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.bool_):
        return bool(obj)
    return obj


def write_json_atomic(path: str, obj: Any) -> None:
    """``obj`` as indented strict JSON (NaN refused: pass it through :func:`json_safe` first)."""
    write_text_atomic(path, json.dumps(obj, indent=2, allow_nan=False))


def sha256_file(path: str) -> str:
    """Hex SHA-256 of the file at ``path``, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()

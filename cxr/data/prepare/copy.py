"""The files at the top of a prepared copy: ``prepare.json`` (checked against the run before
anything is written), ``manifest.csv`` and ``errors.csv``."""

from __future__ import annotations

import csv
import dataclasses
import logging
import os

from ...fileio import json_safe, read_json, write_csv_atomic, write_json_atomic
from ..datasets.prepared import ERRORS_FILE, MANIFEST_COLUMNS, MANIFEST_FILE, PREPARE_FILE

__all__ = ["CopySpec", "ERROR_COLUMNS", "PrepareError", "open_copy", "write_errors",
           "write_manifest"]  # fmt: skip

logger = logging.getLogger(__name__)

ERROR_COLUMNS = ("dataset", "image_id", "source_path", "error")


class PrepareError(ValueError):
    """A prepare run that cannot go on (bad arguments, a copy written with other settings)."""


@dataclasses.dataclass(frozen=True)
class CopySpec:
    """What a prepared copy holds.

    Attributes:
        folder: the copy's folder.
        format: ``png`` or ``wds``.
        size: long side of the prepared films, pixels.
        bit_depth: 8 or 16 (PNG sample depth).
        shard_size: samples per shard (``wds``), None for ``png``.
        seed: the seed of the order of samples across shards.
        source_folder: the original data sets' folder name (e.g. ``vindr_cxr``).
    """

    folder: str
    format: str
    size: int
    bit_depth: int
    shard_size: int | None
    seed: int
    source_folder: str

    def header(self) -> dict:
        return {"format": self.format, "size": int(self.size), "bit_depth": int(self.bit_depth),
                "shard_size": self.shard_size, "seed": int(self.seed),
                "source_folder": self.source_folder}  # fmt: skip


_CHECKED = ("format", "size", "bit_depth", "shard_size", "seed")
_FLAGS = {"format": "--format", "size": "--size", "bit_depth": "--bit-depth",
          "shard_size": "--shard-size", "seed": "--seed"}  # fmt: skip


def _check_existing(spec: CopySpec) -> dict:
    """The existing ``prepare.json`` of the copy (``{}`` for a new copy).

    Raises:
        PrepareError: naming the file and field when the copy was written with other settings,
            or when a ``manifest.csv`` lies there without a ``prepare.json``.
    """
    path = os.path.join(spec.folder, PREPARE_FILE)
    if not os.path.isfile(path):
        manifest = os.path.join(spec.folder, MANIFEST_FILE)
        if os.path.isfile(manifest):
            raise PrepareError(
                f"{manifest}: a manifest without {PREPARE_FILE} (not a copy written by this "
                f"tool, or a damaged one); choose another --output or remove the folder"
            )
        return {}
    old = read_json(path, PREPARE_FILE)
    want = spec.header()
    for field in _CHECKED:
        if old.get(field, want[field]) != want[field]:
            raise PrepareError(
                f"{path}: field {field!r} is {old.get(field)!r} but this run asks "
                f"{_FLAGS[field]} {want[field]}: the folder holds a copy prepared with other "
                f"settings. Nothing was changed; choose another --output, or rerun with "
                f"{_FLAGS[field]} {old.get(field)} to resume that copy"
            )
    return old


def open_copy(spec: CopySpec, datasets: list[str], metadata: dict, plans: dict) -> dict:
    """Check the copy folder against ``spec`` and write its ``prepare.json`` (before any film).

    Args:
        datasets: the original split names prepared by this run (added to those already there).
        metadata: name -> the original data set's metadata (JSON-safe), kept for registering
            the copy when the original is gone.
        plans: name -> fingerprint of the split's sample order (shards), see the writers.

    Returns:
        the previous ``prepare.json`` content (``{}`` for a new copy).
    """
    old = _check_existing(spec)
    names = list(old.get("datasets", []))
    names += [n for n in datasets if n not in names]
    info = {**spec.header(), "datasets": names,
            "metadata": {**old.get("metadata", {}), **json_safe(metadata)},
            "plans": {**old.get("plans", {}), **plans}}  # fmt: skip
    os.makedirs(spec.folder, exist_ok=True)
    write_json_atomic(os.path.join(spec.folder, PREPARE_FILE), info)
    return old


def _read_rows(path: str) -> list[dict]:
    if not os.path.isfile(path):
        return []
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def write_manifest(folder: str, rows: list[dict], datasets: list[str]) -> int:
    """Write ``manifest.csv``: ``rows`` (this run's data sets) after the rows already there for
    other data sets. Returns the number of rows written."""
    keep = [r for r in _read_rows(os.path.join(folder, MANIFEST_FILE))
            if r.get("dataset") not in set(datasets)]  # fmt: skip
    out = keep + rows
    write_csv_atomic(os.path.join(folder, MANIFEST_FILE), MANIFEST_COLUMNS,
                     [[r[c] for c in MANIFEST_COLUMNS] for r in out])  # fmt: skip
    return len(out)


def write_errors(folder: str, rows: list[dict], datasets: list[str]) -> int:
    """Write ``errors.csv`` (this run's unreadable sources plus earlier rows of other data sets)
    or remove it when there are none. Returns the number of rows."""
    path = os.path.join(folder, ERRORS_FILE)
    out = [r for r in _read_rows(path) if r.get("dataset") not in set(datasets)] + rows
    if out:
        write_csv_atomic(path, ERROR_COLUMNS, [[r[c] for c in ERROR_COLUMNS] for r in out])
    elif os.path.isfile(path):
        os.remove(path)
    return len(out)

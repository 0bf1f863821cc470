"""``prepare_datasets``: registered data sets -> prepared copies (PNG files or WebDataset shards).

Data sets are grouped by their original folder (metadata ``dataset_root``); each group becomes one
copy, by default ``<data root>/<folder>@<size>/`` (PNG) or ``<folder>@<size>-wds/`` (shards). A
``<prefix>_all`` name stands for its ``train`` / ``val`` / ``test`` splits, so the copy keeps the
original patient-level splits. Films are decoded once each, in ``workers`` processes, with a
progress bar (rate, ETA); a rerun after a kill skips finished films and complete shards.
"""

from __future__ import annotations

import difflib
import logging
import os
from multiprocessing import get_context
from typing import Iterator, Sequence

import cv2
from detectron2.data import DatasetCatalog, MetadataCatalog
from tqdm import tqdm

from ..datasets.builtin import unregistered_dataset_message
from ..datasets.prepared import prepared_name
from ..splits import SPLIT_NAMES
from .copy import CopySpec, PrepareError, open_copy, write_errors, write_manifest
from .film import FilmResult, film_job
from .writers import PREPARE_FORMATS, remove_temp_files

__all__ = ["copy_folder_name", "prepare_datasets", "resolve_datasets"]

logger = logging.getLogger(__name__)


def copy_folder_name(folder: str, size: int, fmt: str) -> str:
    """``<folder>@<size>`` (PNG) or ``<folder>@<size>-wds`` (shards)."""
    return prepared_name(folder, size, fmt)


def _not_registered(name: str) -> PrepareError:
    message = unregistered_dataset_message(name)
    if message is None:
        close = difflib.get_close_matches(name, DatasetCatalog.list(), n=6, cutoff=0.6)
        message = f"Dataset {name!r} is not registered. " + (
            f"Close names: {', '.join(close)}." if close else "No registered name is close."
        )  # fmt: skip
    return PrepareError(message)


def resolve_datasets(names: Sequence[str]) -> list[str]:
    """The split names to prepare: each name as given, ``<prefix>_all`` as its train / val / test
    splits when they are registered.

    Raises:
        PrepareError: a name is not registered (naming close registered names, or what the data
            root lacks for a cxr name).
    """
    out: list[str] = []
    for name in names:
        if name not in DatasetCatalog.list():
            raise _not_registered(name)
        prefix, _, split = name.rpartition("_")
        splits = [f"{prefix}_{s}" for s in SPLIT_NAMES]
        if split == "all" and all(s in DatasetCatalog.list() for s in splits):
            out += [s for s in splits if s not in out]
        elif name not in out:
            out.append(name)
    return out


def _source_folder(name: str, root: str) -> tuple[str, str]:
    """(the folder holding the original's folder, the original's folder name): from metadata
    ``dataset_root``, else (``root``, the name's prefix)."""
    folder = MetadataCatalog.get(name).get("dataset_root", None)
    if folder:
        folder = os.path.normpath(folder)
        return os.path.dirname(folder), os.path.basename(folder)
    return root, name.rpartition("_")[0] or name


def _metadata(name: str) -> dict:
    meta = MetadataCatalog.get(name).as_dict()
    meta.pop("name", None)
    return meta


class _FilmRunner:
    """Runs film jobs in ``workers`` spawned processes (1: in this one) behind a progress bar."""

    def __init__(self, workers: int, total: int, done: int):
        self.workers = max(1, int(workers))
        self.bar = tqdm(total=total, initial=done, desc="prepare", unit="film", disable=None,
                        smoothing=0.1)  # fmt: skip
        self.pool = None
        if self.workers > 1:
            # spawned workers: a forked child touching OpenCV's thread pool can deadlock
            self.pool = get_context("spawn").Pool(
                self.workers, initializer=cv2.setNumThreads, initargs=(1,)
            )

    def run(self, jobs: list[tuple]) -> Iterator[FilmResult]:
        """Results in job order."""
        it = map(film_job, jobs) if self.pool is None else self.pool.imap(film_job, jobs, 2)
        for res in it:
            self.bar.update()
            yield res

    def close(self) -> None:
        self.bar.close()
        if self.pool is not None:
            self.pool.terminate()
            self.pool.join()


def _prepare_copy(spec: CopySpec, names: list[str], workers: int) -> dict:
    """Prepare ``names`` (all from one original folder) into the copy ``spec.folder``."""
    writers = [PREPARE_FORMATS.get(spec.format)(spec, n, DatasetCatalog.get(n)) for n in names]
    plans = {w.name: w.fingerprint() for w in writers if hasattr(w, "fingerprint")}
    # settings checked, prepare.json written with the old plans; shards of a changed plan are
    # deleted before the new plans are written, so a kill in between never trusts them
    old = open_copy(spec, names, {n: _metadata(n) for n in names}, {})
    for w in writers:
        if w.name in plans and old.get("plans", {}).get(w.name, plans[w.name]) != plans[w.name]:
            logger.warning("%s: the sample order changed since the last run: shards remade", w.name)
            w.remove_stale()
    open_copy(spec, names, {}, plans)
    remove_temp_files(spec.folder)  # a killed run's half-written manifest / errors file
    jobs = [w.plan() for w in writers]
    total = sum(len(w.records) for w in writers)
    runner = _FilmRunner(workers, total, total - sum(map(len, jobs)))
    manifest, errors = [], []
    try:
        for w, js in zip(writers, jobs):
            rows, errs = w.finish(runner.run(js), len(js))
            manifest += rows
            errors += errs
            logger.info("%s: %d films (%d prepared now, %d unreadable)", w.name, len(rows),
                        len(js), len(errs))  # fmt: skip
    finally:
        runner.close()
    write_manifest(spec.folder, manifest, names)
    write_errors(spec.folder, errors, names)
    for e in errors:
        logger.warning("%s: %s", e["dataset"], e["error"])
    return {"folder": spec.folder, "films": len(manifest), "errors": len(errors),
            "made": sum(map(len, jobs)), "datasets": names}  # fmt: skip


def prepare_datasets(
    names: Sequence[str],
    size: int,
    fmt: str = "png",
    *,
    output: str | None = None,
    root: str | None = None,
    workers: int = 1,
    bit_depth: int = 8,
    shard_size: int = 1000,
    seed: int = 0,
) -> list[dict]:
    """Prepare registered data sets at long side ``size`` (see the module docstring).

    Args:
        names: registered data set names (``<prefix>_all`` = its three splits).
        fmt: ``png`` or ``wds`` (:data:`~cxr.data.prepare.writers.PREPARE_FORMATS`).
        output: the copy folder (only when every name comes from one original folder); default
            ``<folder>@<size>[-wds]`` beside the original folder (metadata ``dataset_root``).
        root: where copies of data sets without ``dataset_root`` go (default
            ``$DETECTRON2_DATASETS`` or ``datasets``).
        workers: decoding processes.
        bit_depth: 8 or 16 (PNG sample depth).
        shard_size: samples per shard (``wds``).
        seed: the order of samples across shards.

    Returns:
        per copy ``{"folder", "films" (in the copy's manifest for these names), "errors",
        "made" (films decoded now), "datasets"}``.

    Raises:
        PrepareError: unknown format, bad size / bit depth, a name not registered, ``output``
            with data sets of several folders, or a copy folder prepared with other settings.
    """
    if fmt not in PREPARE_FORMATS:
        raise PrepareError(f"--format must be one of {PREPARE_FORMATS.names()}, got {fmt!r}")
    if int(size) < 8 or bit_depth not in (8, 16) or (fmt == "wds" and int(shard_size) < 1):
        raise PrepareError(
            f"need --size >= 8, --bit-depth 8 or 16 and --shard-size >= 1; got {size}, "
            f"{bit_depth}, {shard_size}"
        )
    root = root or os.environ.get("DETECTRON2_DATASETS", "datasets")
    groups: dict[tuple[str, str], list[str]] = {}
    for n in resolve_datasets(names):
        groups.setdefault(_source_folder(n, root), []).append(n)
    if output and len(groups) > 1:
        raise PrepareError(
            f"--output names one copy folder, but the data sets come from {len(groups)} folders "
            f"({', '.join(sorted(f for _, f in groups))}): run once per folder, or leave --output out"
        )
    out = []
    for (parent, folder), group in groups.items():
        dest = output or os.path.join(parent, copy_folder_name(folder, size, fmt))
        if os.path.abspath(dest) == os.path.abspath(os.path.join(parent, folder)):
            raise PrepareError(f"--output {dest} is the original data set's folder: choose another")
        spec = CopySpec(dest, fmt, int(size), int(bit_depth),
                        int(shard_size) if fmt == "wds" else None, int(seed), folder)  # fmt: skip
        logger.info("Preparing %s at %d px (%s) into %s", ", ".join(group), size, fmt, dest)
        out.append(_prepare_copy(spec, group, workers))
    return out

"""Prepared copies of data sets (written by ``tools/prepare_data.py``) registered as data sets.

A PNG copy of the original folder ``<folder>`` at long side ``<size>`` lives in
``<data root>/<folder>@<size>/`` (or any folder with a ``prepare.json`` one or two levels under the
data root, for copies placed with ``--output``)::

    prepare.json     {"format": "png", "size", "bit_depth", "shard_size": null,
                      "datasets": [original split names], "source_folder", ...}
    manifest.csv     one row per film: MANIFEST_COLUMNS
    errors.csv       sources that could not be read (when some could not)
    <name>/records.json   detectron2 dataset dicts, file_name relative to <name>/
    <name>/images/<key>.png

Each ``<name>/records.json`` is registered as ``<name>@<size>``; when the copy holds the train,
val and test splits of one prefix, ``<prefix>_all@<size>`` is their union. Records carry the
prepared film (``height``, ``width``, boxes XYXY_ABS in its pixels) and what maps it back:
``orig_height``, ``orig_width``, ``scale`` (prepared / original pixels, the same for x and y) and
``source_file``. Metadata: the original data set's (``thing_classes``, ``evaluator_type``, ...;
from ``prepare.json`` when the original is not registered) plus ``prepared_from=<name>`` and
``prepared_size=<size>``. Shard copies (``format: "wds"``, ``<folder>@<size>-wds/``) are
registered by the WebDataset reader, not here.
"""

from __future__ import annotations

import functools
import logging
import os

from detectron2.data import DatasetCatalog, MetadataCatalog

from ...fileio import read_json
from ..splits import SPLIT_NAMES

__all__ = [
    "ERRORS_FILE",
    "MANIFEST_COLUMNS",
    "MANIFEST_FILE",
    "PREPARE_FILE",
    "RECORDS_FILE",
    "find_prepared_copies",
    "load_prepared_records",
    "prepared_name",
    "unregistered_copy_message",
    "register_prepared_copies",
    "register_prepared_copy",
]

logger = logging.getLogger(__name__)

PREPARE_FILE = "prepare.json"
MANIFEST_FILE = "manifest.csv"
ERRORS_FILE = "errors.csv"
RECORDS_FILE = "records.json"
MANIFEST_COLUMNS = (
    "dataset", "image_id", "patient_id", "source_path", "source_height", "source_width",
    "scale", "output", "sha256",
)  # fmt: skip


def prepared_name(name: str, size: int, fmt: str = "png") -> str:
    """The registered name of split ``name`` prepared at ``size``: ``<name>@<size>`` (PNG) or
    ``<name>@<size>-wds`` (shards)."""
    return f"{name}@{int(size)}" + ("-wds" if fmt == "wds" else "")


def find_prepared_copies(root: str) -> list[str]:
    """Folders holding a ``prepare.json`` one or two levels under ``root`` (sorted)."""
    found = []
    try:
        top = [e for e in os.scandir(root) if e.is_dir()]
    except (FileNotFoundError, NotADirectoryError):
        return []
    for entry in sorted(top, key=lambda e: e.name):
        if os.path.isfile(os.path.join(entry.path, PREPARE_FILE)):
            found.append(entry.path)
            continue
        try:
            subs = [e for e in os.scandir(entry.path) if e.is_dir()]
        except OSError:
            continue
        found += sorted(e.path for e in subs if os.path.isfile(os.path.join(e.path, PREPARE_FILE)))
    return found


def load_prepared_records(split_dir: str) -> list[dict]:
    """The records of one prepared split, ``file_name`` joined with ``split_dir``.

    Raises:
        FileNotFoundError / ValueError naming ``records.json`` when missing or not JSON;
        ValueError naming the record and field when a record lacks ``file_name`` or ``scale``.
    """
    path = os.path.join(split_dir, RECORDS_FILE)
    records = read_json(path, "prepared records")
    if not isinstance(records, list):
        raise ValueError(f"{path}: expected a JSON list of dataset records")
    for i, r in enumerate(records):
        for field in ("file_name", "image_id", "height", "width", "scale"):
            if field not in r:
                raise ValueError(f"{path}: record {i}: field {field!r} missing")
        r["file_name"] = os.path.join(split_dir, r["file_name"])
    return records


def _union(loaders: list) -> list[dict]:
    return [r for load in loaders for r in load()]


def _metadata(info: dict, name: str, split: str) -> dict:
    """The original data set's metadata (registered, else saved in prepare.json)."""
    if name in DatasetCatalog.list():
        meta = MetadataCatalog.get(name).as_dict()
    else:
        meta = dict((info.get("metadata") or {}).get(name, {}))
        meta.setdefault("split", split)
    meta.pop("name", None)
    return meta


def _register(new: str, loader, meta: dict, original: str, size: int) -> bool:
    if new in DatasetCatalog.list():
        logger.warning("%s is already registered: the copy %s is not", new, meta["prepared_copy"])
        return False
    DatasetCatalog.register(new, loader)
    MetadataCatalog.get(new).set(**meta, prepared_from=original, prepared_size=int(size))
    return True


def register_prepared_copy(folder: str) -> list[str]:
    """Register every split of the PNG copy in ``folder`` (see the module docstring).

    Returns:
        the names registered now ([] for a shard copy or a copy without finished splits).
    """
    info = read_json(os.path.join(folder, PREPARE_FILE), "prepare.json")
    if info.get("format") != "png":
        return []
    size, done, by_prefix = int(info["size"]), [], {}
    for name in info.get("datasets", []):
        split_dir = os.path.join(folder, name)
        if not os.path.isfile(os.path.join(split_dir, RECORDS_FILE)):
            continue  # not finished: records.json is written last
        prefix, _, split = name.rpartition("_")
        loader = functools.partial(load_prepared_records, split_dir)
        by_prefix.setdefault(prefix, {})[split] = loader
        meta = {**_metadata(info, name, split), "prepared_copy": folder}
        if _register(prepared_name(name, size), loader, meta, name, size):
            done.append(prepared_name(name, size))
    for prefix, splits in by_prefix.items():
        if set(SPLIT_NAMES) <= set(splits) and "all" not in splits:
            loader = functools.partial(_union, [splits[s] for s in SPLIT_NAMES])
            meta = {**_metadata(info, f"{prefix}_{SPLIT_NAMES[0]}", "all"), "split": "all"}
            meta["prepared_copy"] = folder
            if _register(prepared_name(f"{prefix}_all", size), loader, meta, f"{prefix}_all", size):
                done.append(prepared_name(f"{prefix}_all", size))
    return done


def register_prepared_copies(root: str) -> list[str]:
    """Register the PNG copies found under ``root`` (:func:`find_prepared_copies`); a copy
    whose ``prepare.json`` cannot be read is logged and skipped.

    Returns:
        the names registered now.
    """
    names = []
    for folder in find_prepared_copies(root):
        try:
            names += register_prepared_copy(folder)
        except (OSError, ValueError, KeyError) as e:
            logger.warning("prepared copy %s not registered: %s", folder, e)
    return names


def unregistered_copy_message(name: str, root: str) -> str | None:
    """Why the prepared-copy name ``<name>@<size>[-wds]`` is not registered (None for a name of
    another form): where copies are looked for, the command that makes it, the copies found."""
    base, at, size = name.partition("@")
    fmt = "wds" if size.endswith("-wds") else "png"
    size = size[: -len("-wds")] if fmt == "wds" else size
    if not at or not base or not size.isdigit():
        return None
    found = [os.path.basename(f) for f in find_prepared_copies(root)]
    flag = " --format wds" if fmt == "wds" else ""
    return (
        f"Dataset {name!r} is not registered: no prepared copy of {base} at {size} px was found "
        f"one or two folder levels under the data root {os.path.abspath(root)} (a folder with "
        f"{PREPARE_FILE} and {base}/). Make it with: python tools/prepare_data.py --dataset "
        f"{base} --size {size}{flag}. Prepared copies found: "
        + (", ".join(found) if found else "none")
        + "."
    )

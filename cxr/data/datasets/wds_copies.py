"""Register shard copies (``<data root>/<folder>@<size>-wds/``) as ``<name>@<size>-wds``.

A shard copy written by ``tools/prepare_data.py --format wds`` holds ``prepare.json`` and one
sub-folder per original split name ``<name>`` with its shards and ``index.json`` (written last,
so a split without it is still being written and is skipped). Copies are found at the top of the
data root and one folder below it. Each split is registered lazily (its records are read from
the shards' JSON members on first use, :func:`cxr.data.wds.load_shard_records`) with the
original data set's metadata (when it is registered; else, for cxr's own split names, the
classes and evaluator of their family, so shards shared without the originals still evaluate)
plus ``prepared_from``, ``prepared_size``,
``wds_shards`` (absolute shard paths), ``wds_shard_samples``, ``wds_num_samples`` and
``wds_task``. The trainer streams such a set from its shards (:class:`cxr.data.wds.ShardStream`).
"""

from __future__ import annotations

import functools
import json
import logging
import os
import re
from typing import Callable

from detectron2.data import DatasetCatalog, MetadataCatalog

from ..wds import ShardError, load_shard_index, load_shard_records
from .prepared import find_prepared_copies

__all__ = [
    "find_wds_copies", "register_wds_copies", "register_wds_copy", "unregistered_wds_message",
]  # fmt: skip

logger = logging.getLogger(__name__)

_SUFFIX = "-wds"
# Metadata fields of the original that describe its files, not its classes or evaluation.
_NOT_INHERITED = {"name", "dataset_root", "split"}


def _is_copy_dir(name: str) -> bool:
    return "@" in name and name.endswith(_SUFFIX)


def find_wds_copies(root: str) -> list[str]:
    """Shard-copy folders (``*@*-wds`` holding ``prepare.json``) at the top of ``root`` and one
    level below it, sorted: the prepared copies (:func:`.prepared.find_prepared_copies`) whose
    folder name is a shard copy's."""
    return [f for f in find_prepared_copies(root) if _is_copy_dir(os.path.basename(f))]


def _prepare_info(folder: str) -> dict:
    path = os.path.join(folder, "prepare.json")
    try:
        with open(path, encoding="utf-8") as f:
            info = json.load(f)
    except (OSError, ValueError) as e:
        raise ShardError(path, None, "(file)", f"not a readable prepare.json ({e})") from None
    for field in ("format", "size"):
        if field not in info:
            raise ShardError(path, None, field, "missing from prepare.json")
    if info["format"] != "wds":
        raise ShardError(path, None, "format", f"{info['format']!r} in a -wds folder")
    return info


def register_wds_copy(
    folder: str, original_metadata: Callable[[str], dict] | None = None
) -> list[str]:
    """Register every finished split of one shard copy; names already registered are skipped.

    Args:
        original_metadata: ``fn(original name) -> metadata`` used when the original is not
            registered (its folder absent: shards shared without the originals).

    Returns:
        the names registered now.
    """
    info = _prepare_info(folder)
    size = int(info["size"])
    named = os.path.basename(os.path.normpath(folder)).rpartition("@")[2][: -len(_SUFFIX)]
    if named != str(size):
        raise ShardError(os.path.join(folder, "prepare.json"), None, "size",
                         f"{size}, but the folder is named for size {named}")  # fmt: skip
    done = []
    for entry in sorted(os.scandir(folder), key=lambda e: e.name):
        index_json = os.path.join(entry.path, "index.json")
        if not entry.is_dir():
            continue
        if not os.path.isfile(index_json):
            logger.warning("%s: no index.json (split not finished): not registered", entry.path)
            continue
        try:
            index = load_shard_index(index_json)
        except ShardError as e:
            logger.error("%s: not registered: %s", entry.path, e)
            continue
        name = f"{index['dataset']}@{size}{_SUFFIX}"
        if name in DatasetCatalog.list():
            continue
        DatasetCatalog.register(name, functools.partial(load_shard_records, index_json))
        known = index["dataset"] in MetadataCatalog.list()
        original = MetadataCatalog.get(index["dataset"]).as_dict() if known else {}
        if "thing_classes" not in original and original_metadata is not None:
            original = {**original_metadata(index["dataset"]), **original}
        MetadataCatalog.get(name).set(
            **{k: v for k, v in original.items() if k not in _NOT_INHERITED},
            dataset_root=folder, prepared_from=index["dataset"], prepared_size=size,
            wds_shards=index["urls"], wds_shard_samples=index["sizes"],
            wds_num_samples=int(index["num_samples"]), wds_task=index.get("task"),
        )  # fmt: skip
        if "thing_classes" not in original:
            logger.warning("%s: the original %s is not registered; its class names are unknown",
                           name, index["dataset"])  # fmt: skip
        done.append(name)
    return done


def register_wds_copies(
    root: str, original_metadata: Callable[[str], dict] | None = None
) -> list[str]:
    """Register the splits of every shard copy under ``root`` (see the module docstring);
    ``original_metadata`` as in :func:`register_wds_copy`.

    Returns:
        the names registered now.
    """
    names = []
    for folder in find_wds_copies(root):
        try:
            names += register_wds_copy(folder, original_metadata)
        except ShardError as e:  # one bad copy must not keep `import cxr` from working
            logger.error("%s: not registered: %s", folder, e)
    return names


def unregistered_wds_message(name: str, root: str) -> str | None:
    """Why the shard-set name ``<name>@<size>-wds`` is not registered (what cxr looked for under
    the data root ``root`` and what it found), or None for a name of another form."""
    m = re.fullmatch(r"(.+)@(\d+)-wds", name)
    if m is None or name in DatasetCatalog.list():
        return None
    split, size = m.groups()
    copies = find_wds_copies(root)
    found = [c for c in copies if os.path.isdir(os.path.join(c, split))]
    lines = [
        f"Dataset {name!r} is not registered: cxr registers <name>@<size>-wds for each "
        f"<data root>/<folder>@<size>-wds/<name>/index.json (tools/prepare_data.py --format wds "
        f"writes it after the split's last shard).",
        f"Data root looked in (top and one folder below): {os.path.abspath(root)}; shard copies "
        f"found: {', '.join(os.path.basename(c) for c in copies) or 'none'}.",
    ]
    for c in found:
        if not os.path.isfile(os.path.join(c, split, "index.json")):
            lines.append(f"{os.path.join(c, split)} has no index.json: its preparation has not "
                         f"finished (rerun tools/prepare_data.py to complete it).")  # fmt: skip
    registered = sorted(n for n in DatasetCatalog.list() if n.endswith(_SUFFIX))
    lines.append(f"Registered shard sets: {', '.join(registered) or 'none'}.")
    return "\n".join(lines)

"""Register the chest X-ray datasets found under ``$DETECTRON2_DATASETS`` (default ``datasets``).

Expected layout (only what exists is registered; nothing is read until a dataset is used):

- ``nih/{BBox_List_2017.csv[.gz], Data_Entry_2017_v2020.csv[.gz], images/}`` ->
  ``nih_bbox_{train,val,test,all}``
- ``phantom_nih/`` (same layout as ``nih/``) -> ``phantom_nih_{train,val,test,all}``
- ``nih/Data_Entry_2017_v2020.csv[.gz]`` + ``nih/images/`` -> ``nih_cls_{train,val,test,all}``
  (image labels; split respects the box split, see :mod:`.nih_cls`)
- ``phantom_nih_cls/`` (Data_Entry + images) -> ``phantom_nih_cls_{train,val,test,all}``
- ``vindr_cxr/{train.csv, train/}`` -> ``vindr_cxr_{train,val,test,all}``
- ``phantom_vindr/`` (same layout as ``vindr_cxr/``: real-size phantom DICOMs, see
  :mod:`cxr.data.phantom_dicom`) -> ``phantom_vindr_{train,val,test,all}``
- ``rsna_pneumonia/{stage_2_train_labels.csv, stage_2_train_images/}`` ->
  ``rsna_pneumonia_{train,val,test,all}``
- prepared PNG copies ``<folder>@<size>/<name>/records.json`` (``tools/prepare_data.py``) ->
  ``<name>@<size>`` (see :mod:`.prepared`)
- ``<folder>@<size>-wds/<name>/`` (shard copies, :mod:`.wds_copies`) -> ``<name>@<size>-wds``

The train / val / test splits (70/15/15 by patient, seed 0, stratified by class) are cached as
``<dataset folder>/split_seed0.json`` on first use and reused while the patients match;
``all`` is every image. NIH and phantom include every ``No Finding`` image of the box patients
listed in Data_Entry as negatives.
"""

from __future__ import annotations

import dataclasses
import functools
import os
from typing import Callable, Sequence

from detectron2.data import DatasetCatalog
from detectron2.data.catalog import Metadata

from ..splits import SPLIT_NAMES, apply_split, cached_split
from .common import PALETTE, register_splits
from .nih import NIH_CLASSES, load_nih
from .nih_cls import NIH_FINDINGS, PHANTOM_FINDINGS, register_nih_cls
from .prepared import register_prepared_copies, unregistered_copy_message
from .rsna import RSNA_CLASSES, load_rsna
from .vindr import VINDR_CLASSES, load_vindr
from .wds_copies import register_wds_copies, unregistered_wds_message

__all__ = [
    "DatasetLayout",
    "DatasetNotFoundError",
    "LAYOUTS",
    "SPLIT_FRACTIONS",
    "SPLIT_SEED",
    "layout_metadata",
    "register_all_cxr",
    "register_split_dataset",
    "unregistered_dataset_message",
]

SPLIT_SEED = 0
SPLIT_FRACTIONS = (0.7, 0.15, 0.15)


def _first_existing(folder: str, names: Sequence[str]) -> str | None:
    for n in names:
        p = os.path.join(folder, n)
        if os.path.isfile(p):
            return p
    return None


@functools.lru_cache(maxsize=4)
def _load_splits(loader: Callable[[], list], folder: str) -> dict[str, list]:
    """Every split of one dataset (loaded and split once per process)."""
    dicts = loader()
    path = os.path.join(folder, f"split_seed{SPLIT_SEED}.json")
    out = apply_split(dicts, cached_split(dicts, path, SPLIT_FRACTIONS, SPLIT_SEED))
    out["all"] = dicts
    return out


def _load_split(loader: Callable[[], list], folder: str, split: str) -> list:
    return list(_load_splits(loader, folder)[split])


def register_split_dataset(
    prefix: str, loader: Callable[[], list], folder: str, classes: Sequence[str]
) -> list[str]:
    """Register ``<prefix>_{train,val,test,all}`` lazily; names already registered are skipped.

    Args:
        loader: returns every dataset dict (called on first use only).
        folder: where the split file is cached.
    Returns:
        the names registered now.
    """
    load_split = functools.partial(_load_split, loader, folder)
    return register_splits(prefix, load_split, classes, "cxr", folder)


def _register_nih_layout(prefix: str, folder: str) -> list[str]:
    bbox = _first_existing(folder, ("BBox_List_2017.csv", "BBox_List_2017.csv.gz"))
    if bbox is None:
        return []
    entry = _first_existing(folder, ("Data_Entry_2017_v2020.csv", "Data_Entry_2017_v2020.csv.gz"))
    loader = functools.partial(
        load_nih, bbox, os.path.join(folder, "images"), entry, None, -1 if entry else 0
    )
    return register_split_dataset(prefix, loader, folder, NIH_CLASSES)


def _register_vindr(prefix: str, folder: str) -> list[str]:
    if not os.path.isfile(os.path.join(folder, "train.csv")):
        return []
    loader = functools.partial(
        load_vindr, os.path.join(folder, "train.csv"), os.path.join(folder, "train")
    )
    return register_split_dataset(prefix, loader, folder, VINDR_CLASSES)


def _register_rsna(prefix: str, folder: str) -> list[str]:
    labels = os.path.join(folder, "stage_2_train_labels.csv")
    if not os.path.isfile(labels):
        return []
    loader = functools.partial(load_rsna, labels, os.path.join(folder, "stage_2_train_images"))
    return register_split_dataset(prefix, loader, folder, RSNA_CLASSES)


@dataclasses.dataclass(frozen=True)
class DatasetLayout:
    """Where ``register_all_cxr`` looks for one family of data sets.

    Attributes:
        prefix: the names are ``<prefix>_{train,val,test,all}``.
        folder: sub-folder of the data root.
        needs: the file that must exist in ``folder`` for the names to be registered, as the
            error messages spell it (``[.gz]``: either form).
        register: ``fn(prefix, folder path) -> names registered``.
    """

    prefix: str
    folder: str
    needs: str
    register: Callable[[str, str], list[str]]


LAYOUTS = (
    DatasetLayout("nih_bbox", "nih", "BBox_List_2017.csv[.gz]", _register_nih_layout),
    DatasetLayout("phantom_nih", "phantom_nih", "BBox_List_2017.csv[.gz]", _register_nih_layout),
    DatasetLayout(
        "nih_cls", "nih", "Data_Entry_2017_v2020.csv[.gz]",
        lambda prefix, folder: register_nih_cls(prefix, folder, "nih_bbox"),
    ),
    DatasetLayout(
        "phantom_nih_cls", "phantom_nih_cls", "Data_Entry_2017_v2020.csv[.gz]",
        lambda prefix, folder: register_nih_cls(prefix, folder, "phantom_nih", PHANTOM_FINDINGS),
    ),
    DatasetLayout("vindr_cxr", "vindr_cxr", "train.csv", _register_vindr),
    DatasetLayout("phantom_vindr", "phantom_vindr", "train.csv", _register_vindr),
    DatasetLayout("rsna_pneumonia", "rsna_pneumonia", "stage_2_train_labels.csv", _register_rsna),
)  # fmt: skip
_LAYOUT_OF = {layout.prefix: layout for layout in LAYOUTS}
# Classes and evaluator of each family, for a prepared copy whose original folder is absent.
_LAYOUT_METADATA = {
    "nih_bbox": (NIH_CLASSES, "cxr"), "phantom_nih": (NIH_CLASSES, "cxr"),
    "nih_cls": (NIH_FINDINGS, "cxr_cls"), "phantom_nih_cls": (PHANTOM_FINDINGS, "cxr_cls"),
    "vindr_cxr": (VINDR_CLASSES, "cxr"), "rsna_pneumonia": (RSNA_CLASSES, "cxr"),
}  # fmt: skip
_last_root: list[str] = ["datasets"]  # the root of the latest register_all_cxr call


def layout_metadata(name: str) -> dict:
    """``thing_classes``, ``thing_colors`` and ``evaluator_type`` of a cxr split name
    (``vindr_cxr_train``, ...) without its files; {} for a name cxr does not own."""
    layout = _layout_of_name(name)
    if layout is None:
        return {}
    classes, evaluator_type = _LAYOUT_METADATA[layout.prefix]
    colors = [PALETTE[i % len(PALETTE)] for i in range(len(classes))]
    return {"thing_classes": list(classes), "thing_colors": colors, "evaluator_type": evaluator_type}


def register_all_cxr(root: str = "datasets") -> list[str]:
    """Register every cxr dataset present under ``root`` (see the module docstring).

    Returns:
        the dataset names registered by this call.
    """
    _last_root[0] = root
    names = []
    for layout in LAYOUTS:
        names += layout.register(layout.prefix, os.path.join(root, layout.folder))
    names += register_prepared_copies(root)
    # after the originals, whose metadata the copies carry
    names += register_wds_copies(root, original_metadata=layout_metadata)
    return names


class DatasetNotFoundError(KeyError):
    """A cxr data set name that is not registered; the message says where cxr looked."""

    def __str__(self) -> str:  # KeyError would print the message quoted, newlines escaped
        return str(self.args[0])


def _layout_of_name(name: str) -> DatasetLayout | None:
    prefix, _, split = name.rpartition("_")
    return _LAYOUT_OF.get(prefix) if split in SPLIT_NAMES + ("all",) else None


def _registered_cxr_names() -> list[str]:
    return sorted(n for n in DatasetCatalog.list() if _layout_of_name(n) is not None)


def _has(folder: str, needs: str) -> bool:
    base = needs.replace("[.gz]", "")
    return any(os.path.isfile(os.path.join(folder, n)) for n in (base, base + ".gz"))


def unregistered_dataset_message(name: str) -> str | None:
    """Why the cxr data set ``name`` is not registered, or None for a name cxr does not know.

    A prepared-copy name (``<name>@<size>``, ``<name>@<size>-wds``) gets
    :func:`~.prepared.unregistered_copy_message`.

    Names ``DETECTRON2_DATASETS`` (its value), the folder looked in and the file it lacks, with a
    hint when the variable points at the data set folder itself, and the cxr names that are
    registered.
    """
    if name in DatasetCatalog.list():
        return None
    layout, root = _layout_of_name(name), _last_root[0]
    if layout is None:
        found = (unregistered_copy_message(name, root), unregistered_wds_message(name, root))
        return "\n".join(m for m in found if m) or None
    env = os.environ.get("DETECTRON2_DATASETS")
    env_text = f"DETECTRON2_DATASETS={env!r}" if env is not None else (
        "DETECTRON2_DATASETS is not set (default 'datasets', relative to the working directory)"
    )  # fmt: skip
    folder = os.path.abspath(os.path.join(root, layout.folder))
    if not os.path.isdir(folder):
        found = f"there is no folder {folder}"
    else:
        entries = sorted(e + ("/" if os.path.isdir(os.path.join(folder, e)) else "")
                         for e in os.listdir(folder))  # fmt: skip
        shown = ", ".join(entries[:6]) + (", ..." if len(entries) > 6 else "")
        found = f"the folder holds: {shown}" if entries else "the folder is empty"
    lines = [
        f"Dataset {name!r} is not registered: cxr registers {layout.prefix}_* when "
        f"<data root>/{layout.folder}/{layout.needs} exists.",
        f"Missing: {os.path.join(folder, layout.needs)} ({found}).",
        f"{env_text}; data root looked in: {os.path.abspath(root)}.",
    ]
    if _has(os.path.abspath(root), layout.needs):
        lines.append(
            f"The data root itself holds {layout.needs}: set DETECTRON2_DATASETS to its parent "
            f"folder (the one that contains {layout.folder}/), not to {layout.folder}/ itself."
        )
    registered = _registered_cxr_names()
    lines.append(
        "Registered cxr data sets: " + (", ".join(registered) if registered else "none")
        + ". See datasets/README.md for the expected layout."
    )  # fmt: skip
    return "\n".join(lines)


def _explain_unregistered_names() -> None:
    """Make detectron2's catalogs explain an unregistered cxr name (only on that failure).

    ``DatasetCatalog.get`` raises :class:`DatasetNotFoundError` (a KeyError) with
    :func:`unregistered_dataset_message` instead of listing detectron2's builtin names; a
    missing attribute of such a name's ``MetadataCatalog`` entry appends the same message.
    Every other lookup behaves as before.
    """
    catalog_cls = type(DatasetCatalog)
    if getattr(catalog_cls, "_cxr_explains", False):
        return
    original_get, original_getattr = catalog_cls.get, Metadata.__getattr__

    @functools.wraps(original_get)
    def get(self, name):
        if name not in self:
            message = unregistered_dataset_message(name)
            if message:
                raise DatasetNotFoundError(message)
        return original_get(self, name)

    @functools.wraps(original_getattr)
    def __getattr__(self, key):
        try:
            return original_getattr(self, key)
        except AttributeError as e:
            name = self.__dict__.get("name")
            message = None if key.startswith("_") else unregistered_dataset_message(str(name))
            if message:
                raise AttributeError(f"{e}\n{message}") from None
            raise

    catalog_cls.get = get
    Metadata.__getattr__ = __getattr__
    catalog_cls._cxr_explains = True


_explain_unregistered_names()

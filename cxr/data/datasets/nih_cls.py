"""NIH ChestX-ray14 image labels (``Data_Entry_2017_v2020.csv``) as a multi-label classifier set.

Every row of ``Data_Entry`` becomes one record: the image, a multi-hot label vector over the 14
findings (``No Finding`` = all zero), patient id, view position, age and sex. Registered as
``nih_cls_{train,val,test,all}`` (and ``phantom_nih_cls_*`` for the rendered set) with
``evaluator_type="cxr_cls"``.

The patient split is consistent with the box split: every patient of the box dataset keeps the
box split it is in (so a patient of ``nih_bbox_val`` / ``nih_bbox_test`` is never in
``nih_cls_train`` and pre-training never sees a detection test patient); the remaining patients
are split 70/15/15 (seed 0, stratified by finding, :func:`cxr.data.splits.split_patients`). The
split is cached as ``<dataset folder>/cls_split_seed0.json``.

Registration is lazy: nothing is read (and no image is opened) until a dataset is requested;
records carry no ``height`` / ``width`` (the mapper reads them from the decoded image).
"""

from __future__ import annotations

import functools
import logging
import os
import sys
from typing import Sequence

import numpy as np
from detectron2.data import DatasetCatalog

from ..splits import SPLIT_NAMES, apply_split, patient_key, reuse_or_write_split, split_patients
from .common import RowChecker, csv_line, read_csv_rows, register_splits
from .nih import patient_of

__all__ = [
    "NIH_FINDINGS",
    "PHANTOM_FINDINGS",
    "classification_split",
    "load_nih_cls",
    "register_nih_cls",
]

logger = logging.getLogger(__name__)

# The 14 findings of Data_Entry_2017_v2020.csv, in the order of ChestX-ray14's label vector.
NIH_FINDINGS = (
    "Atelectasis", "Cardiomegaly", "Effusion", "Infiltration", "Mass", "Nodule", "Pneumonia",
    "Pneumothorax", "Consolidation", "Edema", "Emphysema", "Fibrosis", "Pleural_Thickening",
    "Hernia",
)  # fmt: skip
# The findings the phantom renders (the eight box classes, in Data_Entry spelling).
PHANTOM_FINDINGS = NIH_FINDINGS[:8]
NO_FINDING = "No Finding"
# Data_Entry columns read, by position (the v2020 header names them this way).
_FIELDS = ("Image Index", "Finding Labels", "Follow-up #", "Patient ID", "Patient Age",
           "Patient Gender", "View Position")  # fmt: skip
_ALIASES = {"infiltrate": "Infiltration", "pleural thickening": "Pleural_Thickening"}
SPLIT_FILE = "cls_split_seed{seed}.json"


def _canonical_finding(name: str, classes: Sequence[str]) -> str | None:
    key = name.strip().lower()
    key = _ALIASES.get(key, key).lower()
    for c in classes:
        if c.lower() == key:
            return c
    return None


def load_nih_cls(
    data_entry_csv: str,
    image_root: str,
    classes: Sequence[str] = NIH_FINDINGS,
    strict: bool = True,
) -> list[dict]:
    """Load ``Data_Entry_2017_v2020.csv`` as classification records.

    Args:
        data_entry_csv: ``Data_Entry_2017_v2020.csv[.gz]`` (columns by position: Image Index,
            Finding Labels (``|``-separated), Follow-up #, Patient ID, Patient Age, Patient
            Gender, View Position, ...).
        image_root: folder of the PNGs (not read here).
        classes: label order; ``Infiltrate`` is accepted for ``Infiltration``.
        strict: raise :class:`~cxr.data.datasets.common.AnnotationError` on a bad row (True), or
            skip it and log the count (False). Bad rows: empty or escaping file name, unknown
            finding, ``No Finding`` combined with a finding, duplicate image, non-numeric age.

    Returns:
        dicts ``file_name, image_id, patient_id, labels`` (list of C ints 0/1), ``view_position``,
        ``age`` (float years, NaN when empty), ``sex``, in file order.
    """
    classes = tuple(classes)
    index = {c: i for i, c in enumerate(classes)}
    check = RowChecker(data_entry_csv, strict=strict)
    df = read_csv_rows(data_entry_csv, _FIELDS, header=0, usecols=range(len(_FIELDS)))
    out = []
    parsed: dict[str, list[int]] = {}  # ~800 distinct label strings among 112,120 rows
    for i, row in enumerate(df.to_numpy().tolist()):
        line = csv_line(i)
        name = row[0].strip()
        if name and "/" not in name and "\\" not in name and not name.startswith("."):
            path = os.path.join(image_root, name)  # a plain file name stays inside the root
        else:
            path = check.image_path(line, _FIELDS[0], image_root, name)
        if path is None or check.duplicate(line, _FIELDS[0], name):
            continue
        labels = parsed.get(row[1])
        if labels is None:
            labels = _parse_labels(check, line, row[1], classes, index)
            if labels is None:
                continue
            parsed[row[1]] = labels
        labels = list(labels)  # each record owns its list
        age = float("nan")
        if row[4].strip():
            age = check.number(line, _FIELDS[4], row[4])
            if age is None:
                continue
        out.append({
            "file_name": path,
            "image_id": os.path.splitext(name)[0],
            "patient_id": patient_of(name),  # as the box loader: file-name prefix
            "labels": labels,
            "view_position": sys.intern(row[6].strip()),  # a few values: one string each
            "age": age,
            "sex": sys.intern(row[5].strip()),
        })  # fmt: skip
    check.report()
    _log_counts(data_entry_csv, out, classes)
    return out


def _parse_labels(check: RowChecker, line: int, field: str, classes, index) -> list[int] | None:
    parts = [p.strip() for p in str(field).split("|") if p.strip()]
    if not parts:
        check.fail(line, _FIELDS[1], "empty Finding Labels")
        return None
    labels = [0] * len(classes)
    if parts == [NO_FINDING]:
        return labels
    for p in parts:
        if p == NO_FINDING:
            check.fail(line, _FIELDS[1], f"'No Finding' combined with findings: {field!r}")
            return None
        c = _canonical_finding(p, classes)
        if c is None:
            check.fail(line, _FIELDS[1], f"unknown finding {p!r}")
            return None
        labels[index[c]] = 1
    return labels


def _log_counts(name: str, dicts: Sequence[dict], classes: Sequence[str]) -> None:
    counts = np.sum([d["labels"] for d in dicts], 0) if dicts else np.zeros(len(classes))
    n_neg = sum(1 for d in dicts if not any(d["labels"]))
    logger.info(
        "%s: %d images (%d No Finding) of %d patients; positives per finding: %s",
        os.path.basename(name), len(dicts), n_neg, len({d["patient_id"] for d in dicts}),
        ", ".join(f"{c} {int(n)}" for c, n in zip(classes, counts)),
    )  # fmt: skip


def classification_split(
    dicts: Sequence[dict],
    box_split: dict[str, Sequence[str]],
    fractions: Sequence[float] = (0.7, 0.15, 0.15),
    seed: int = 0,
) -> dict[str, list[str]]:
    """Patient split of a classification set that respects a box split.

    Rule: a patient listed in ``box_split`` goes to the same split; every other patient is
    assigned by :func:`~cxr.data.splits.split_patients` (seeded, stratified by finding) with
    ``fractions``. So no patient of the box ``val`` / ``test`` splits is in ``train``.

    Args:
        dicts: records with ``patient_id`` and ``labels``.
        box_split: ``{"train"|"val"|"test": patient ids}`` of the detection set.

    Returns:
        ``{split name: sorted patient ids}`` covering every patient of ``dicts`` once.
    """
    fixed = {str(p): s for s in SPLIT_NAMES for p in box_split.get(s, ())}
    light = [
        {"patient_id": patient_key(d),
         "annotations": [{"category_id": c} for c, v in enumerate(d["labels"]) if v]}
        for d in dicts
        if patient_key(d) not in fixed
    ]  # fmt: skip
    free = split_patients(light, fractions, seed) if light else {s: [] for s in SPLIT_NAMES}
    present = {patient_key(d) for d in dicts}
    out = {s: set(free[s]) for s in SPLIT_NAMES}
    for p, s in fixed.items():
        if p in present:
            out[s].add(p)
    return {s: sorted(v) for s, v in out.items()}


def _box_split_of(box_prefix: str) -> dict[str, list[str]]:
    """Patients of each split of the registered box dataset ``<box_prefix>_{train,val,test}``."""
    out = {}
    for s in SPLIT_NAMES:
        name = f"{box_prefix}_{s}"
        if name not in DatasetCatalog.list():
            logger.warning("%s is not registered: no box split to respect", name)
            return {}
        out[s] = sorted({patient_key(d) for d in DatasetCatalog.get(name)})
    return out


def cached_classification_split(
    dicts: Sequence[dict], box_split: dict[str, Sequence[str]], path: str, seed: int = 0
) -> dict[str, list[str]]:
    """The split stored at ``path`` when it covers exactly the patients of ``dicts`` and keeps
    every box patient in its box split; else a fresh :func:`classification_split` written there
    (a read-only location only logs)."""
    patients = {patient_key(d) for d in dicts}

    def accept(split: dict[str, list[str]]) -> bool:
        where = {p: s for s, ids in split.items() for p in ids}
        consistent = all(where.get(str(p), s) == s for s, ids in box_split.items() for p in ids)
        return set(where) == patients and consistent

    return reuse_or_write_split(
        path, accept, lambda: classification_split(dicts, box_split, seed=seed), seed=seed,
        rule="box patients keep their box split",
    )  # fmt: skip


@functools.lru_cache(maxsize=2)
def _load_splits(entry: str, image_root: str, classes: tuple, folder: str, box_prefix: str):
    dicts = load_nih_cls(entry, image_root, classes)
    path = os.path.join(folder, SPLIT_FILE.format(seed=0))
    split = cached_classification_split(dicts, _box_split_of(box_prefix), path)
    out = apply_split(dicts, split)
    out["all"] = dicts
    return out


def _load_split(entry, image_root, classes, folder, box_prefix, split) -> list[dict]:
    return list(_load_splits(entry, image_root, classes, folder, box_prefix)[split])


def register_nih_cls(
    prefix: str,
    folder: str,
    box_prefix: str,
    classes: Sequence[str] = NIH_FINDINGS,
) -> list[str]:
    """Register ``<prefix>_{train,val,test,all}`` from ``<folder>/Data_Entry_2017_v2020.csv[.gz]``
    and ``<folder>/images``; names already registered are skipped, nothing is read now.

    Args:
        box_prefix: the box dataset whose patient split is respected (e.g. ``nih_bbox``).
        classes: label order (the phantom set uses the eight box findings).

    Returns:
        the names registered now ([] when the folder has no Data_Entry file).
    """
    entry = None
    for n in ("Data_Entry_2017_v2020.csv", "Data_Entry_2017_v2020.csv.gz"):
        if os.path.isfile(os.path.join(folder, n)):
            entry = os.path.join(folder, n)
            break
    if entry is None:
        return []
    args = (entry, os.path.join(folder, "images"), tuple(classes), folder, box_prefix)
    load_split = functools.partial(_load_split, *args)
    return register_splits(prefix, load_split, classes, "cxr_cls", folder, box_dataset=box_prefix)

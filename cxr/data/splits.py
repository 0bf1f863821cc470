"""Patient-level train / val / test splits: seeded, stratified by class, saved as JSON.

A split file is ``{"seed": 0, "fractions": [...], "splits": {"train": [patient ids], "val": [...],
"test": [...]}}``. Registered datasets cache theirs next to the data (see :func:`cached_split`).
"""

from __future__ import annotations

import collections
import json
import logging
import os
from typing import Callable, Sequence

import numpy as np

from ..fileio import write_text_atomic

__all__ = [
    "SPLIT_NAMES", "split_patients", "split_by_patient", "apply_split", "save_split",
    "load_split", "cached_split", "reuse_or_write_split", "patient_key",
]  # fmt: skip

logger = logging.getLogger(__name__)

SPLIT_NAMES = ("train", "val", "test")
_NEGATIVE = -1  # pseudo-class of patients without boxes, so negatives are stratified too


def patient_key(d: dict) -> str:
    """The patient of a dataset dict (``patient_id``, else ``image_id``, else ``file_name``)."""
    for k in ("patient_id", "image_id", "file_name"):
        if d.get(k) is not None:
            return str(d[k])
    raise KeyError("dataset dict has no patient_id, image_id or file_name")


def split_patients(
    dicts: Sequence[dict],
    fractions: Sequence[float] = (0.7, 0.15, 0.15),
    seed: int = 0,
    names: Sequence[str] = SPLIT_NAMES,
) -> dict[str, list[str]]:
    """Assign each patient to one split, stratified by the classes of their boxes.

    Patients are visited rarest class first (ties in a seeded random order); each goes to the
    split that still lacks that class most: a split without any patient of the class first,
    then the largest shortfall against ``fraction x patients with the class``, then the largest
    shortfall in patients. So every class with at least ``len(names)`` patients appears in every
    split of non-zero fraction, and no patient is in two splits.

    Args:
        dicts: detectron2 dataset dicts (``annotations`` with ``category_id``, ``patient_id``).
        fractions: share of patients per split, same order as ``names``; normalized to sum 1.
        seed: seed of the tie-breaking order.

    Returns:
        ``{split name: sorted patient ids}``.
    """
    if len(fractions) != len(names):
        raise ValueError(f"{len(fractions)} fractions for {len(names)} split names")
    frac = np.asarray(fractions, np.float64)
    if (frac < 0).any() or frac.sum() <= 0:
        raise ValueError(f"fractions must be >= 0 with a positive sum, got {fractions}")
    frac = frac / frac.sum()
    labels: dict[str, set] = collections.defaultdict(set)
    for d in dicts:
        labels[patient_key(d)].update(a["category_id"] for a in d.get("annotations", []))
    for p, s in labels.items():
        if not s:
            s.add(_NEGATIVE)
    count = collections.Counter(c for s in labels.values() for c in s)
    patients = sorted(labels)
    rng = np.random.default_rng(seed)
    patients = [patients[i] for i in rng.permutation(len(patients))]
    rarest = {p: min(labels[p], key=lambda c: (count[c], c)) for p in patients}
    patients.sort(key=lambda p: count[rarest[p]])
    have = np.zeros((len(names), 1 + max(count) + 1), np.float64)  # column -1 = negatives
    have_total = np.zeros(len(names))
    out: dict[str, list[str]] = {n: [] for n in names}
    for p in patients:
        c = rarest[p]
        need = frac * count[c] - have[:, c]
        need_total = frac * len(patients) - have_total
        best = max(
            (s for s in range(len(names)) if frac[s] > 0),
            key=lambda s: (have[s, c] == 0, need[s], need_total[s], -s),
        )
        out[names[best]].append(p)
        for cc in labels[p]:
            have[best, cc] += 1
        have_total[best] += 1
    for s, n in enumerate(names):
        lacking = sorted(c for c in count if c != _NEGATIVE and frac[s] > 0 and have[s, c] == 0)
        if lacking:
            logger.warning("split %r has no patient with class id(s) %s", n, lacking)
    return {n: sorted(v) for n, v in out.items()}


def apply_split(dicts: Sequence[dict], split: dict[str, Sequence[str]]) -> dict[str, list[dict]]:
    """Group ``dicts`` by the split of their patient.

    Raises:
        KeyError: a patient is in no split, or in two.
    """
    where: dict[str, str] = {}
    for name, ids in split.items():
        for p in ids:
            if p in where:
                raise KeyError(f"patient {p!r} is in splits {where[p]!r} and {name!r}")
            where[str(p)] = name
    out: dict[str, list[dict]] = {n: [] for n in split}
    for d in dicts:
        p = patient_key(d)
        if p not in where:
            raise KeyError(f"patient {p!r} of {d.get('file_name')} is in no split")
        out[where[p]].append(d)
    return out


def split_by_patient(
    dicts: Sequence[dict], fractions: Sequence[float] = (0.7, 0.15, 0.15), seed: int = 0
) -> dict[str, list[dict]]:
    """:func:`split_patients` then :func:`apply_split`: ``{"train": [...], "val": [...],
    "test": [...]}`` of dataset dicts."""
    return apply_split(dicts, split_patients(dicts, fractions, seed))


def save_split(path: str, split: dict[str, Sequence[str]], **meta) -> None:
    """Write a split file atomically: JSON ``{**meta, "splits": {name: [patient ids]}}``."""
    data = {**meta, "splits": {k: list(v) for k, v in split.items()}}
    write_text_atomic(path, json.dumps(data, indent=1))


def load_split(path: str) -> dict[str, list[str]]:
    """Read a split file written by :func:`save_split`: ``{split name: patient ids}``."""
    with open(path, encoding="utf-8") as f:
        data = json.load(f)
    if not isinstance(data, dict) or not isinstance(data.get("splits"), dict):
        raise ValueError(f"{path}: not a split file (no 'splits' mapping)")
    return {k: [str(p) for p in v] for k, v in data["splits"].items()}


def reuse_or_write_split(
    path: str,
    accept: Callable[[dict[str, list[str]]], bool],
    compute: Callable[[], dict[str, list[str]]],
    **meta,
) -> dict[str, list[str]]:
    """The split file at ``path`` when ``accept(split)`` holds; otherwise ``compute()``, written
    to ``path`` with ``meta`` (a read-only location only logs: the split stays in memory).

    Returns:
        ``{split name: patient ids}``.
    """
    if os.path.isfile(path):
        try:
            split = load_split(path)
            if accept(split):
                return split
            logger.warning("%s: stale (patients or constraints changed); recomputing", path)
        except (ValueError, OSError) as e:
            logger.warning("%s: unreadable split file (%s); recomputing", path, e)
    split = compute()
    try:
        save_split(path, split, **meta)
        logger.info("wrote patient split to %s", path)
    except OSError as e:
        logger.warning("cannot write split file %s (%s); using it in memory", path, e)
    return split


def cached_split(
    dicts: Sequence[dict],
    path: str,
    fractions: Sequence[float] = (0.7, 0.15, 0.15),
    seed: int = 0,
) -> dict[str, list[str]]:
    """The split stored at ``path`` when it covers exactly the patients of ``dicts``; otherwise
    a fresh :func:`split_patients`, written to ``path`` (see :func:`reuse_or_write_split`)."""
    patients = {patient_key(d) for d in dicts}
    return reuse_or_write_split(
        path,
        lambda split: {p for v in split.values() for p in v} == patients,
        lambda: split_patients(dicts, fractions, seed),
        seed=seed,
        fractions=list(fractions),
    )

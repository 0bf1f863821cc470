"""Phantom classification set: image-level labels from ``Data_Entry``, lesions from box statistics.

``N`` rows of ``Data_Entry_2017_v2020.csv`` (seeded draw; the images of the box list excluded, so
the set never repeats a detection image) are rendered with the phantom renderer of
:mod:`cxr.data.phantom`. Each of a row's findings that the phantom draws (the eight box classes;
``Infiltration`` = the box list's ``Infiltrate``) gets one lesion whose box is a real
``BBox_List`` box of that class (drawn at random), moved by up to 3% of the image side and
resized by up to +-15%, clipped to the image. Other findings are dropped from the labels; a row
left without a drawable finding becomes ``No Finding``.

Output (NIH layout, registered as ``phantom_nih_cls_{train,val,test,all}`` when it lives in
``datasets/phantom_nih_cls``): ``images/<Image Index>``, ``Data_Entry_2017_v2020.csv`` (header
copied; rewritten labels; original size = ``size``), ``phantom_cls_manifest.json``. Patients
keep their real ids, so the registered split keeps every ``phantom_nih`` val/test patient out of
``phantom_nih_cls_train``. Same arguments and inputs -> byte-identical output; a rerun whose
manifest matches returns at once.
"""

from __future__ import annotations

import json
import logging
import os
import time

import numpy as np
import pandas as pd

from ..fileio import write_text_atomic
from .datasets.nih_cls import PHANTOM_FINDINGS
from .phantom import (
    NIH_SIZE,
    cached_manifest,
    read_boxes,
    render_images,
    sha256_file,
    warn_replaced,
    write_data_entry,
)

__all__ = ["CLS_MANIFEST", "generate_phantom_classification", "lesion_boxes"]

logger = logging.getLogger(__name__)

CLS_MANIFEST = "phantom_cls_manifest.json"
_VERSION = 1
_INDEX_BASE = 1 << 20  # render seeds apart from the box set's (which uses 0..num_images-1)
# Data_Entry spelling -> the renderer's (box list) name.
_RENDER_NAME = {"Infiltration": "Infiltrate"}


def lesion_boxes(
    findings: list[str], boxes: pd.DataFrame, size: int, rng: np.random.Generator
) -> list[tuple[str, float, float, float, float]]:
    """One lesion per finding, placed by the class's real boxes.

    Args:
        findings: Data_Entry finding names, each drawable (see :data:`PHANTOM_FINDINGS`).
        boxes: the box list (:func:`cxr.data.phantom.read_boxes`: ``label, x, y, w, h`` in
            1024 px frames).
        size: output image side, pixels.

    Returns:
        ``(renderer label, x0, y0, x1, y1)`` XYXY_ABS pixels of the ``size`` image.
    """
    scale = size / NIH_SIZE
    out = []
    for f in findings:
        label = _RENDER_NAME.get(f, f)
        pool = boxes[boxes["label"] == label]
        r = pool.iloc[int(rng.integers(len(pool)))]
        w, h = r.w * scale * rng.uniform(0.85, 1.15), r.h * scale * rng.uniform(0.85, 1.15)
        w, h = min(w, size - 2.0), min(h, size - 2.0)
        x0 = np.clip(r.x * scale + rng.uniform(-0.03, 0.03) * size, 0, size - w)
        y0 = np.clip(r.y * scale + rng.uniform(-0.03, 0.03) * size, 0, size - h)
        out.append((label, float(x0), float(y0), float(x0 + w), float(y0 + h)))
    return out


def _select_rows(entry: pd.DataFrame, exclude: set, n: int, seed: int, source: str):
    names = entry.iloc[:, 0]
    cand = np.flatnonzero(~names.isin(exclude).to_numpy())
    if n > len(cand):
        raise ValueError(f"{source}: only {len(cand)} images outside the box list, {n} requested")
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0x434C53]))
    return entry.iloc[np.sort(rng.choice(cand, size=n, replace=False))].copy()


def _drawable(labels: str) -> list[str]:
    return [f for f in labels.split("|") if f in PHANTOM_FINDINGS]


def generate_phantom_classification(
    output_dir: str,
    bbox_csv: str,
    data_entry_csv: str,
    num_images: int,
    *,
    size: int = 256,
    seed: int = 0,
    workers: int = 2,
    force: bool = False,
) -> dict:
    """Render the phantom classification set (see the module docstring).

    Args:
        output_dir: dataset root (``datasets/phantom_nih_cls`` by convention).
        bbox_csv: NIH ``BBox_List_2017.csv[.gz]`` (lesion box statistics, 1024 px frames).
        data_entry_csv: NIH ``Data_Entry_2017_v2020.csv[.gz]`` (labels, patients).
        num_images: N images.
        size: output side, pixels. seed: master seed. workers: rendering processes.
        force: re-render even when the manifest matches.

    Returns:
        the manifest (arguments, input hashes, per-finding counts, ``skipped``, ``seconds``).
    """
    t0 = time.perf_counter()
    if size < 32 or num_images < 1:
        raise ValueError(f"need size >= 32 and num_images >= 1, got {size}, {num_images}")
    key = {"version": _VERSION, "size": int(size), "seed": int(seed),
           "num_images": int(num_images), "bbox_csv_sha256": sha256_file(bbox_csv),
           "data_entry_csv_sha256": sha256_file(data_entry_csv)}  # fmt: skip
    img_dir = os.path.join(output_dir, "images")
    old, up_to_date = cached_manifest(output_dir, key, force, CLS_MANIFEST)
    if up_to_date:
        return {**old, "skipped": True, "seconds": time.perf_counter() - t0}
    if old is not None:
        warn_replaced(output_dir, old, key)
    boxes = read_boxes(bbox_csv)
    entry = pd.read_csv(data_entry_csv, dtype=str, keep_default_na=False)
    if entry.shape[1] < 11:
        raise ValueError(f"{data_entry_csv}: expected 11 columns, got {entry.shape[1]}")
    rows = _select_rows(entry, set(boxes["image"]), num_images, seed, data_entry_csv)
    findings = [_drawable(v) for v in rows.iloc[:, 1]]
    jobs = []
    for i, (name, f) in enumerate(zip(rows.iloc[:, 0], findings)):
        rng = np.random.default_rng(np.random.SeedSequence([seed, _INDEX_BASE + i, 1]))
        b = lesion_boxes(f, boxes, size, rng)
        jobs.append((os.path.join(img_dir, name), _INDEX_BASE + i, int(seed), int(size), b))
    render_images(output_dir, jobs, workers, CLS_MANIFEST, desc="phantom cls images")
    rows.iloc[:, 1] = ["|".join(f) if f else "No Finding" for f in findings]
    write_data_entry(
        os.path.join(output_dir, "Data_Entry_2017_v2020.csv"), rows, data_entry_csv, size
    )
    counts = {c: sum(c in f for f in findings) for c in PHANTOM_FINDINGS}
    manifest = {**key, "positives": counts, "no_finding": sum(not f for f in findings)}
    text = json.dumps(manifest, indent=2, sort_keys=True) + "\n"
    write_text_atomic(os.path.join(output_dir, CLS_MANIFEST), text)
    secs = time.perf_counter() - t0
    logger.info("Rendered %d phantom classification images (%d px) into %s in %.1f s",
                num_images, size, output_dir, secs)  # fmt: skip
    return {**manifest, "skipped": False, "seconds": secs}

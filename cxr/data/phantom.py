"""Phantom chest radiographs on real NIH box geometry.

No real X-ray is reachable offline, so the default dataset is rendered: every image named in the
NIH ``BBox_List_2017.csv`` becomes a synthetic PA film (thorax outline, lung fields, posterior
ribs, heart, diaphragm, lung markings, noise) in which each of its real boxes, scaled from 1024 px
to the output size, holds a lesion drawn with the look a radiologist would describe for its class:

- ``Nodule``: small dense, sharply marginated disc filling the box;
- ``Mass``: larger lobulated blob (radius modulated by 2nd-4th harmonics), slightly heterogeneous;
- ``Effusion``: basal homogeneous opacity whose upper border is a meniscus, higher laterally;
- ``Cardiomegaly``: the heart shadow itself enlarged to fill the box (a normal heart is drawn in
  every other image, cardiothoracic ratio about 0.4, so size is the cue, not density);
- ``Pneumothorax``: apical/lateral dark rim without lung markings, bounded by a thin bright
  visceral pleural line;
- ``Atelectasis``: plate-like linear bands or a wedge pointing to the hilum;
- ``Infiltrate``: patchy, ill-defined airspace blotches with fine reticular texture;
- ``Pneumonia``: confluent airspace consolidation with ill-defined edges and dark branching air
  bronchograms.

Each lesion's contrast (density above, or for pneumothorax below, the local background) is drawn
uniformly from :data:`CONTRAST_RANGE` gray levels, independently per lesion; lesion size is the
real box's. Lesion-free negatives are the ``No Finding`` images of the same patients (from
``Data_Entry_2017_v2020.csv``), so patient-level splits keep them with their patients.

Every image's random stream is seeded from ``(seed, image index)``: the output is byte-identical
for the same arguments and can be rendered in parallel.
"""
from __future__ import annotations

import gzip
import json
import logging
import os
import time
from functools import lru_cache
from multiprocessing import get_context
from typing import Sequence

import cv2
import numpy as np
import pandas as pd
from tqdm import tqdm

from ..fileio import sha256_file, write_png_atomic, write_text_atomic
from ..registry import NamedRegistry

__all__ = [
    "CONTRAST_RANGE",
    "LESION_RENDERERS",
    "NIH_SIZE",
    "cached_manifest",
    "generate_phantom_dataset",
    "render_images",
    "render_phantom",
    "write_data_entry",
]

logger = logging.getLogger(__name__)

NIH_SIZE = 1024  # the released NIH PNGs are 1024 x 1024: the box coordinates' frame
CONTRAST_RANGE = (20.0, 60.0)  # per-lesion density difference, 8-bit gray levels, uniform
NOISE_SIGMA_RANGE = (3.0, 7.0)  # per-image white noise, gray levels, uniform
MANIFEST = "phantom_manifest.json"
_VERSION = 1  # bump when the rendering changes: invalidates cached outputs

LESION_RENDERERS = NamedRegistry("CXR_PHANTOM_LESION")
LESION_RENDERERS.__doc__ = (
    "NIH Finding Label -> fn(img, markings, box XYXY_ABS, contrast, lateral, rng); draws in place."
)


# ----------------------------------------------------------------------------- helpers


def _smoothstep(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3.0 - 2.0 * x)


def _roi(box: Sequence[float], shape: tuple[int, int], pad: int = 2):
    """Integer slice around an XYXY_ABS box (clipped) and the pixel-centre grids inside it."""
    h, w = shape
    x0, y0, x1, y1 = box
    ix0, iy0 = max(int(np.floor(x0)) - pad, 0), max(int(np.floor(y0)) - pad, 0)
    ix1, iy1 = min(int(np.ceil(x1)) + pad, w), min(int(np.ceil(y1)) + pad, h)
    ys = np.arange(iy0, iy1, dtype=np.float32)[:, None] + 0.5
    xs = np.arange(ix0, ix1, dtype=np.float32)[None, :] + 0.5
    return (slice(iy0, iy1), slice(ix0, ix1)), xs, ys


def _smooth_noise(rng: np.random.Generator, shape: tuple[int, int], cell: float) -> np.ndarray:
    """Zero-mean, unit-std noise smooth over about ``cell`` pixels (float32, ``shape``)."""
    h, w = shape
    gh, gw = max(int(h / cell) + 2, 2), max(int(w / cell) + 2, 2)
    g = rng.standard_normal((gh, gw), dtype=np.float32)
    out = cv2.resize(g, (w, h), interpolation=cv2.INTER_CUBIC)
    return (out - out.mean()) / (out.std() + 1e-6)


def _ellipse_r(xs, ys, cx, cy, a, b, p: float = 2.0) -> np.ndarray:
    """Normalized (super-)ellipse radius: < 1 inside."""
    return (np.abs((xs - cx) / a) ** p + np.abs((ys - cy) / b) ** p) ** (1.0 / p)


# ----------------------------------------------------------------------------- lesions


@LESION_RENDERERS.register_as("Nodule")
def _nodule(img, markings, box, c, lateral, rng):
    sl, xs, ys = _roi(box, img.shape)
    x0, y0, x1, y1 = box
    r = _ellipse_r(xs, ys, (x0 + x1) / 2, (y0 + y1) / 2, (x1 - x0) / 2, (y1 - y0) / 2)
    edge = 1.5 / max(min(x1 - x0, y1 - y0) / 2, 1.0)  # sharp margin (~1.5 px)
    disc = _smoothstep((1.0 - r) / edge)
    img[sl] += c * disc * (1.0 + 0.15 * (1.0 - np.clip(r, 0, 1)))  # dense, slightly domed


@LESION_RENDERERS.register_as("Mass")
def _mass(img, markings, box, c, lateral, rng):
    sl, xs, ys = _roi(box, img.shape)
    x0, y0, x1, y1 = box
    k = np.arange(2, 5, dtype=np.float32)
    amp = rng.uniform(0.05, 0.12, size=3).astype(np.float32)
    phase = rng.uniform(0, 2 * np.pi, size=3).astype(np.float32)
    lobes = 1.0 + amp.sum()  # max radius factor: keeps the blob inside its box
    cx, cy, a, b = (x0 + x1) / 2, (y0 + y1) / 2, (x1 - x0) / 2 / lobes, (y1 - y0) / 2 / lobes
    theta = np.arctan2((ys - cy) / b, (xs - cx) / a)
    rt = 1.0 + (amp[:, None, None] * np.cos(k[:, None, None] * theta + phase[:, None, None])).sum(0)
    r = _ellipse_r(xs, ys, cx, cy, a, b) / rt
    blob = _smoothstep((1.0 - r) / 0.08)
    tex = 1.0 + 0.12 * _smooth_noise(rng, blob.shape, max(min(a, b) / 3, 2))
    img[sl] += c * blob * tex


@LESION_RENDERERS.register_as("Effusion")
def _effusion(img, markings, box, c, lateral, rng):
    sl, xs, ys = _roi(box, img.shape, pad=0)
    x0, y0, x1, y1 = box
    w, h = max(x1 - x0, 1.0), max(y1 - y0, 1.0)
    t = (xs - x0) / w if lateral < 0 else (x1 - xs) / w  # 0 at the lateral chest wall
    t = np.clip(t, 0.0, 1.0)
    top = y0 + h * (0.02 + rng.uniform(0.45, 0.7) * t**1.6)  # meniscus: higher laterally
    fill = _smoothstep((ys - top) / (0.04 * h + 1.0))
    fill = fill * _smoothstep((1.0 - t) / 0.08 + 0.0)  # fade at the medial edge
    grad = 0.75 + 0.35 * np.clip((ys - y0) / h, 0, 1)  # denser towards the base
    img[sl] += c * fill * grad
    markings[sl] *= 1.0 - fill  # fluid hides the lung markings


@LESION_RENDERERS.register_as("Cardiomegaly")
def _cardiomegaly(img, markings, box, c, lateral, rng):
    # The heart itself is drawn by the anatomy pass (render_phantom) at the box's size.
    pass


@LESION_RENDERERS.register_as("Pneumothorax")
def _pneumothorax(img, markings, box, c, lateral, rng):
    sl, xs, ys = _roi(box, img.shape, pad=0)
    x0, y0, x1, y1 = box
    w, h = max(x1 - x0, 1.0), max(y1 - y0, 1.0)
    # Collapsed lung: an ellipse anchored at the medial-basal corner of the box.
    mx = x1 if lateral < 0 else x0
    r2 = _ellipse_r(xs, ys, mx, y1, rng.uniform(0.65, 0.8) * w, rng.uniform(0.7, 0.85) * h)
    rim = _smoothstep((r2 - 1.0) / 0.03)
    line_w = max(1.2, 0.01 * min(w, h))
    pleura = np.exp(-0.5 * ((r2 - 1.0) * min(w, h) / line_w) ** 2) * (r2 < 1.25)
    img[sl] -= markings[sl] * rim  # no lung markings beyond the pleural line
    markings[sl] *= 1.0 - rim
    img[sl] += -c * rim + 0.8 * c * pleura


@LESION_RENDERERS.register_as("Atelectasis")
def _atelectasis(img, markings, box, c, lateral, rng):
    sl, xs, ys = _roi(box, img.shape, pad=0)
    x0, y0, x1, y1 = box
    w, h = max(x1 - x0, 1.0), max(y1 - y0, 1.0)
    u, v = (xs - x0) / w, (ys - y0) / h  # box-normalized
    if rng.random() < 0.5:  # plate-like (discoid) bands
        n = int(rng.integers(1, 4))
        dens = np.zeros(np.broadcast_shapes(u.shape, v.shape), np.float32)
        slope = rng.uniform(-0.6, 0.6)
        for j in range(n):
            off = (j + 0.5) / n
            centre = off + slope * (u - 0.5) * (1.0 / n if n > 1 else 0.6)
            thick = max(rng.uniform(0.08, 0.16) * (1.0 if n == 1 else 1.5 / n), 2.0 / h)
            dens = np.maximum(dens, _smoothstep(1.0 - np.abs(v - centre) / thick))
        dens *= _smoothstep(np.minimum(u, 1 - u) / 0.1)
    else:  # wedge: apex towards the hilum (medial), base on the chest wall (lateral)
        lat = u if lateral < 0 else 1.0 - u  # 0 at the lateral edge
        half = 0.5 * (1.0 - lat) + 0.04  # half-height of the wedge at this depth
        dens = _smoothstep((half - np.abs(v - 0.5)) / 0.06)
    img[sl] += c * dens


def _airspace(img, markings, box, c, rng, cover: float, cell_frac: float, envelope_p: float):
    sl, xs, ys = _roi(box, img.shape, pad=0)
    x0, y0, x1, y1 = box
    w, h = max(x1 - x0, 1.0), max(y1 - y0, 1.0)
    shape = (sl[0].stop - sl[0].start, sl[1].stop - sl[1].start)
    env = _smoothstep(
        (1.0 - _ellipse_r(xs, ys, (x0 + x1) / 2, (y0 + y1) / 2, w / 2, h / 2, envelope_p)) / 0.25
    )
    field = _smooth_noise(rng, shape, max(cell_frac * min(w, h), 3.0))
    thr = np.quantile(field, 1.0 - cover)
    patches = _smoothstep((field - thr) / 0.6) * env
    return sl, shape, patches, (w, h)


@LESION_RENDERERS.register_as("Infiltrate")
def _infiltrate(img, markings, box, c, lateral, rng):
    sl, shape, patches, (w, h) = _airspace(img, markings, box, c, rng, 0.45, 0.12, 2.0)
    fine = _smooth_noise(rng, shape, 2.5)  # reticular / granular fine texture
    img[sl] += c * patches * (0.75 + 0.25 * fine)


@LESION_RENDERERS.register_as("Pneumonia")
def _pneumonia(img, markings, box, c, lateral, rng):
    sl, shape, patches, (w, h) = _airspace(img, markings, box, c, rng, 0.8, 0.3, 3.0)
    # Air bronchograms: dark branching tubes inside the consolidation.
    tubes = np.zeros(shape, np.float32)
    hh, ww = shape
    start = np.array([ww * (0.5 + 0.2 * (-lateral)), hh * rng.uniform(0.3, 0.7)])
    thick = max(1, int(round(min(w, h) * 0.02)))
    for _ in range(int(rng.integers(2, 5))):
        ang = rng.uniform(0, 2 * np.pi)
        p0 = start
        for _ in range(2):
            ln = rng.uniform(0.15, 0.3) * min(ww, hh)
            p1 = p0 + ln * np.array([np.cos(ang), np.sin(ang)])
            cv2.line(tubes, tuple(int(v) for v in p0), tuple(int(v) for v in p1), 1.0, thick)
            p0, ang = p1, ang + rng.uniform(-0.6, 0.6)
    tubes = cv2.GaussianBlur(tubes, (0, 0), 0.8)
    markings[sl] *= 1.0 - patches
    img[sl] += c * patches * (1.0 - 0.6 * tubes)


# ----------------------------------------------------------------------------- anatomy


@lru_cache(maxsize=4)
def _grid(n: int) -> tuple[np.ndarray, np.ndarray]:
    g = (np.arange(n, dtype=np.float32) + 0.5) / n
    return g[None, :], g[:, None]


def render_phantom(
    boxes: Sequence[tuple[str, float, float, float, float]],
    size: int,
    rng: np.random.Generator,
) -> np.ndarray:
    """Render one phantom radiograph.

    Args:
        boxes: ``(finding_label, x0, y0, x1, y1)`` per lesion, XYXY_ABS pixels of the output
            image; labels must be keys of :data:`LESION_RENDERERS`.
        size: output height = width, pixels.
        rng: the image's random generator (all randomness comes from it).

    Returns:
        ``size x size`` uint8 grayscale image.
    """
    for label, *_ in boxes:
        if label not in LESION_RENDERERS:
            raise KeyError(f"no phantom lesion renderer for finding label {label!r}")
    lo = max(size // 2, 32)  # anatomy is smooth: render it at half resolution
    u, v = _grid(lo)
    cx = 0.5 + rng.normal(0, 0.01)
    tw = rng.uniform(0.37, 0.42)  # thorax half-width (normalized)
    body = _smoothstep((1.0 - _ellipse_r(u, v, cx, 0.55, tw + 0.07, 0.62, 3.0)) / 0.05)
    base = 15.0 + 135.0 * body  # air outside, soft tissue inside
    # Lungs: two super-ellipses, cut by diaphragm domes.
    lung = np.zeros((lo, lo), np.float32)
    dome_y = rng.uniform(0.74, 0.8)
    for side in (-1.0, 1.0):
        lcx = cx + side * tw * 0.5
        half_w = tw * 0.47
        lr = _ellipse_r(u, v, lcx, 0.47, half_w, 0.36, 2.6)
        dome = dome_y - 0.07 * (1.0 - ((u - lcx) / half_w) ** 2) + (0.02 if side < 0 else 0.0)
        lung = np.maximum(lung, _smoothstep((1.0 - lr) / 0.05) * _smoothstep((dome - v) / 0.015))
    lung_tone = rng.uniform(55.0, 80.0) + 12.0 * v  # slightly denser towards the bases
    base = base * (1.0 - lung) + lung_tone * lung
    spine = _smoothstep((0.045 - np.abs(u - cx)) / 0.01) * body
    base += 45.0 * spine
    # Posterior ribs: periodic arcs running down and outwards from the spine.
    d = v - 0.18 * (np.abs(u - cx) / tw) ** 1.6
    phase = (d - rng.uniform(0.0, 0.08)) / 0.075
    rib = _smoothstep(1.0 - np.abs(phase - np.round(phase)) / 0.2)
    rib *= _smoothstep((0.8 - d) / 0.05) * _smoothstep((d - 0.05) / 0.03)
    rib *= _smoothstep((1.0 - np.abs(u - cx) / (tw + 0.03)) / 0.08)
    base += rng.uniform(12.0, 22.0) * rib
    # Heart: normal (cardiothoracic ratio ~0.4) unless a Cardiomegaly box sets its size.
    heart_c = rng.uniform(*CONTRAST_RANGE)
    hx, hy = cx + 0.06 + rng.normal(0, 0.01), 0.6 + rng.normal(0, 0.01)
    ha, hb = tw * rng.uniform(0.38, 0.44), rng.uniform(0.11, 0.13)
    for label, x0, y0, x1, y1 in boxes:
        if label == "Cardiomegaly":
            hx, hy = (x0 + x1) / 2 / size, (y0 + y1) / 2 / size
            ha, hb = (x1 - x0) / 2 / size, (y1 - y0) / 2 / size
    heart = _smoothstep((1.0 - _ellipse_r(u, v, hx, hy, ha, hb)) / 0.03)
    base = np.maximum(base, (100.0 + heart_c) * heart + base * (1 - heart))  # soft-tissue density
    # Lung markings: band-passed noise, stronger towards the hila.
    mk = _smooth_noise(rng, (lo, lo), lo / 64) - 0.5 * _smooth_noise(rng, (lo, lo), lo / 16)
    hilar = 1.0 - 0.6 * np.clip(np.abs(u - cx) / tw, 0, 1)
    markings = (rng.uniform(5.0, 9.0) * mk * hilar * lung * (1.0 - heart)).astype(np.float32)
    base += 10.0 * _smooth_noise(rng, (lo, lo), lo / 4) * body  # large-scale non-uniformity

    # Everything not lesion-specific is drawn before the lesions, so an image rendered with and
    # without its lesions (same seed) differs only inside the boxes (Cardiomegaly: the heart).
    noise = rng.uniform(*NOISE_SIGMA_RANGE) * rng.standard_normal((size, size), dtype=np.float32)
    gain, offset = rng.uniform(0.9, 1.1), rng.uniform(-10.0, 10.0)  # exposure

    img = cv2.resize(base.astype(np.float32), (size, size), interpolation=cv2.INTER_LINEAR)
    markings = cv2.resize(markings, (size, size), interpolation=cv2.INTER_LINEAR)
    img += markings
    for label, x0, y0, x1, y1 in boxes:
        lateral = -1.0 if (x0 + x1) / 2 < cx * size else 1.0  # -1: chest wall on the image left
        c = rng.uniform(*CONTRAST_RANGE)
        LESION_RENDERERS.get(label)(img, markings, (x0, y0, x1, y1), c, lateral, rng)
    img = (img + noise) * gain + offset
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


# ----------------------------------------------------------------------------- dataset


def raw_first_line(path: str) -> str:
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rt", newline="") as f:
        return f.readline().rstrip("\r\n")


def render_job(job: tuple) -> None:
    """Worker: render and atomically write one image (``(path, index, seed, size, boxes)``)."""
    path, index, seed, size, boxes = job
    rng = np.random.default_rng(np.random.SeedSequence([seed, index]))
    img = render_phantom(boxes, size, rng)
    write_png_atomic(path, img, [cv2.IMWRITE_PNG_COMPRESSION, 3])


def read_boxes(bbox_csv: str) -> pd.DataFrame:
    raw = pd.read_csv(bbox_csv, dtype=str, keep_default_na=False)
    if raw.shape[1] < 6:
        raise ValueError(
            f"{bbox_csv}: expected >= 6 columns (Image Index, Finding Label, x, y, w, h)"
        )
    df = raw.iloc[:, :6].copy()
    df.columns = ["image", "label", "x", "y", "w", "h"]
    for i, row in enumerate(df.itertuples(index=False)):
        if row.label not in LESION_RENDERERS:
            raise ValueError(
                f"{bbox_csv}, row {i + 2}, field 'Finding Label': unknown {row.label!r}"
            )
        for field in ("x", "y", "w", "h"):
            try:
                val = float(getattr(row, field))
            except ValueError:
                val = float("nan")
            if not np.isfinite(val) or (field in "wh" and val <= 0):
                raise ValueError(
                    f"{bbox_csv}, row {i + 2}, field {field!r}: bad value {getattr(row, field)!r}"
                )
    for f in ("x", "y", "w", "h"):
        df[f] = df[f].astype(float)
    return df


def read_manifest(output_dir: str, name: str = MANIFEST) -> dict | None:
    """The manifest ``name`` of a rendered phantom folder, or None when there is none."""
    path = os.path.join(output_dir, name)
    if not os.path.isfile(path):
        return None
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def warn_replaced(output_dir: str, old: dict, key: dict) -> None:
    """Say which settings of an existing rendered set a re-render replaces (e.g. its size)."""
    changed = [f"{k} {old.get(k)} -> {v}" for k, v in key.items()
               if old.get(k) != v and not k.endswith("sha256")]  # fmt: skip
    logger.warning("Re-rendering the phantom set in %s over the existing one (%s)", output_dir,
                   ", ".join(changed) or "inputs changed")  # fmt: skip


def cached_manifest(
    output_dir: str, key: dict, force: bool, manifest: str = MANIFEST
) -> tuple[dict | None, bool]:
    """The render cache of a phantom folder: (the manifest ``output_dir/<manifest>`` or None,
    whether it matches ``key`` with every image present, i.e. the folder is up to date; never
    with ``force``)."""
    old = read_manifest(output_dir, manifest)
    if old is None:
        return None, False
    img_dir = os.path.join(output_dir, "images")
    fresh = not force and {k: old.get(k) for k in key} == key and os.path.isdir(img_dir)
    return old, fresh and len(os.listdir(img_dir)) >= old.get("num_images", 0)


def _read_data_entry(data_entry_csv: str, box_images: list[str]) -> pd.DataFrame:
    """The Data_Entry table (strings), checked to have 11 columns and a row per box image."""
    entry = pd.read_csv(data_entry_csv, dtype=str, keep_default_na=False)
    if entry.shape[1] < 11:
        raise ValueError(f"{data_entry_csv}: expected 11 columns, got {entry.shape[1]}")
    missing = sorted(set(box_images) - set(entry.iloc[:, 0]))
    if missing:
        raise ValueError(f"{data_entry_csv}: no row for box image(s) {missing[:5]}")
    return entry


def _select_negatives(
    entry: pd.DataFrame, box_images: list[str], num_negatives: int, seed: int, source: str
) -> list[str]:
    """``num_negatives`` ``No Finding`` images of the box patients, drawn with ``seed``."""
    patients = {name.split("_")[0] for name in box_images}
    names = entry.iloc[:, 0]
    cand = entry[(entry.iloc[:, 1] == "No Finding") & names.str.split("_").str[0].isin(patients)]
    cand_names = sorted(set(cand.iloc[:, 0]) - set(box_images))
    if num_negatives > len(cand_names):
        raise ValueError(
            f"{source}: only {len(cand_names)} 'No Finding' images of box patients, "
            f"{num_negatives} negatives requested"
        )
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0x4E4547]))
    return sorted(rng.choice(cand_names, size=num_negatives, replace=False).tolist())


def render_jobs(
    images: list[str], boxes: pd.DataFrame, img_dir: str, seed: int, size: int
) -> list[tuple]:
    """One ``render_job`` argument per image: its boxes scaled from 1024 px to ``size``
    (``(label, x0, y0, x1, y1)``, XYXY_ABS) and its index in ``images`` (its seed)."""
    scale = size / NIH_SIZE
    by_image = {k: g for k, g in boxes.groupby("image", sort=False)}
    jobs = []
    for index, name in enumerate(images):
        b = []
        if name in by_image:
            for r in by_image[name].itertuples(index=False):
                x0, y0 = r.x * scale, r.y * scale
                b.append((r.label, x0, y0, x0 + r.w * scale, y0 + r.h * scale))
        jobs.append((os.path.join(img_dir, name), index, int(seed), int(size), b))
    return jobs


def render_all(
    jobs: list[tuple], workers: int, desc: str = "phantom images", job_fn=None
) -> None:
    """Render ``jobs`` (arguments of ``job_fn``, default :func:`render_job`; a module-level
    function) in ``workers`` processes (1: in this one), with a progress bar labelled ``desc`` on
    a tty."""
    job_fn = job_fn or render_job
    progress = tqdm(total=len(jobs), desc=desc, unit="img", disable=None)
    with progress:
        if workers <= 1:
            for job in jobs:
                job_fn(job)
                progress.update()
            return
        # Fresh (spawned) workers: a forked child that touches OpenCV's thread pool after the
        # parent started it can deadlock.
        ctx = get_context("spawn")
        with ctx.Pool(workers, initializer=cv2.setNumThreads, initargs=(1,)) as pool:
            for _ in pool.imap_unordered(job_fn, jobs, chunksize=16):
                progress.update()


def _write_bbox_csv(path: str, boxes: pd.DataFrame, source: str, size: int) -> None:
    """The box list with ``x, y, w, h`` scaled to ``size``; header copied from ``source``."""
    scale = size / NIH_SIZE
    lines = [raw_first_line(source)]
    lines += [
        f"{r.image},{r.label},{r.x * scale:.6f},{r.y * scale:.6f},{r.w * scale:.6f},"
        f"{r.h * scale:.6f}"
        for r in boxes.itertuples(index=False)
    ]
    write_text_atomic(path, "\n".join(lines) + "\n")


def write_data_entry(path: str, rows: pd.DataFrame, source: str, size: int) -> None:
    """Data_Entry ``rows`` (the written images, in order) with the original size set to ``size``
    and the pixel spacing scaled so that the physical extent is kept; header copied from
    ``source``; written atomically."""
    rows = rows.copy()
    ow, oh = rows.iloc[:, 7].astype(float), rows.iloc[:, 8].astype(float)
    sx, sy = rows.iloc[:, 9].astype(float), rows.iloc[:, 10].astype(float)
    rows.iloc[:, 7] = str(size)
    rows.iloc[:, 8] = str(size)
    rows.iloc[:, 9] = [f"{v:.6f}" for v in sx * ow / size]
    rows.iloc[:, 10] = [f"{v:.6f}" for v in sy * oh / size]
    body = rows.to_csv(header=False, index=False, lineterminator="\n")
    write_text_atomic(path, raw_first_line(source) + "\n" + body)


def render_images(
    output_dir: str, jobs: list[tuple], workers: int, manifest: str, desc: str = "phantom images"
) -> None:
    """Render ``jobs`` into ``output_dir/images`` after deleting a stale manifest (so that an
    interrupted render is never taken as up to date), then delete the images of an earlier
    render that ``jobs`` do not write."""
    img_dir = os.path.join(output_dir, "images")
    os.makedirs(img_dir, exist_ok=True)
    if os.path.isfile(os.path.join(output_dir, manifest)):
        os.remove(os.path.join(output_dir, manifest))
    render_all(jobs, workers, desc)
    keep = {os.path.basename(job[0]) for job in jobs}
    for fname in os.listdir(img_dir):
        if fname not in keep:
            os.remove(os.path.join(img_dir, fname))


def generate_phantom_dataset(
    output_dir: str,
    bbox_csv: str,
    data_entry_csv: str,
    *,
    size: int = 512,
    seed: int = 0,
    num_negatives: int = 0,
    workers: int = 2,
    force: bool = False,
) -> dict:
    """Render the phantom set in the NIH layout.

    Writes ``output_dir/images/<Image Index>`` (8-bit gray PNG, ``size`` x ``size``),
    ``BBox_List_2017.csv`` (header copied from ``bbox_csv``; ``x, y, w, h`` boxes = top-left XYWH
    pixels, scaled by ``size / 1024``), ``Data_Entry_2017_v2020.csv`` (header copied; rows of the
    written images; original width/height set to ``size``, pixel spacing scaled so the physical
    extent is kept) and ``phantom_manifest.json``. CSVs and images are written atomically; a
    rerun whose arguments and inputs match the manifest returns at once (the cache).

    Args:
        output_dir: dataset root (``datasets/phantom_nih`` by convention).
        bbox_csv: NIH ``BBox_List_2017.csv[.gz]`` (coordinates in 1024 px frames).
        data_entry_csv: NIH ``Data_Entry_2017_v2020.csv[.gz]``.
        size: output side in pixels.
        seed: master seed; image ``i`` uses ``SeedSequence([seed, i])``.
        num_negatives: lesion-free images, drawn (seeded) from the ``No Finding`` images of the
            patients that have boxes.
        workers: rendering processes (1 = in-process).
        force: re-render even when the manifest matches.

    Returns:
        The manifest dict (arguments, input hashes, counts, ``skipped``, ``seconds``).
    """
    t0 = time.perf_counter()
    if size < 32:
        raise ValueError(f"size must be >= 32 pixels, got {size}")
    if num_negatives < 0:
        raise ValueError(f"num_negatives must be >= 0, got {num_negatives}")
    img_dir = os.path.join(output_dir, "images")
    key = {"version": _VERSION, "size": int(size), "seed": int(seed),
           "num_negatives": int(num_negatives), "bbox_csv_sha256": sha256_file(bbox_csv),
           "data_entry_csv_sha256": sha256_file(data_entry_csv)}  # fmt: skip
    old, up_to_date = cached_manifest(output_dir, key, force)
    if up_to_date:
        logger.info("Phantom set in %s is up to date (manifest matches): skipped", output_dir)
        return {**old, "skipped": True, "seconds": time.perf_counter() - t0}

    boxes = read_boxes(bbox_csv)
    box_images = sorted(boxes["image"].unique())
    entry = _read_data_entry(data_entry_csv, box_images)
    negatives = _select_negatives(entry, box_images, num_negatives, seed, data_entry_csv)
    all_images = box_images + negatives
    if old is not None:
        warn_replaced(output_dir, old, key)
    render_images(output_dir, render_jobs(all_images, boxes, img_dir, seed, size), workers, MANIFEST)
    _write_bbox_csv(os.path.join(output_dir, "BBox_List_2017.csv"), boxes, bbox_csv, size)
    rows = entry[entry.iloc[:, 0].isin(set(all_images))]
    rows = rows.set_index(rows.columns[0]).loc[all_images].reset_index()
    write_data_entry(
        os.path.join(output_dir, "Data_Entry_2017_v2020.csv"), rows, data_entry_csv, size
    )
    manifest = {**key, "num_images": len(all_images), "num_box_images": len(box_images),
                "num_boxes": int(len(boxes)), "contrast_range": list(CONTRAST_RANGE),
                "noise_sigma_range": list(NOISE_SIGMA_RANGE)}  # fmt: skip
    text = json.dumps(manifest, indent=2, sort_keys=True) + "\n"
    write_text_atomic(os.path.join(output_dir, MANIFEST), text)
    secs = time.perf_counter() - t0
    logger.info(
        "Rendered %d phantom images (%d px) into %s in %.1f s",
        len(all_images), size, output_dir, secs,
    )  # fmt: skip
    return {**manifest, "skipped": False, "seconds": secs}

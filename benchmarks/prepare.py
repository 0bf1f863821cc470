"""Benchmark tasks on real-size films: prepared copies against the original DICOMs.

Films: ``CXR_BENCH_PREPARE_FILMS`` (default 16) phantom DICOMs of 3000 x 2500 pixels, 16 bits
allocated, uncompressed (:mod:`cxr.data.phantom_dicom`; size ``CXR_BENCH_FILM_HW``, e.g.
``3000x2500``), rendered once into ``output/bench/phantom_vindr_<n>_<h>x<w>/`` and reused.

- ``data_dicom_prepared_vs_original`` (task ``data_dicom_prepared``): images/s of cxr's train
  mapper (``AlbumentationsMapper``: read, detectron2 resize to a 1024 px long side, horizontal
  flip; Albumentations preset ``none``) through a DataLoader with 2 workers and batch size 4,
  ``ours`` on the films prepared at 1024 (8-bit PNG copy, ``tools/prepare_data.py``), ``peer`` on
  the same DICOMs read directly (decoded, windowed and resized every epoch). Goal: ours >= 5x.
- ``prepare_films_per_s`` (task ``prepare_films_per_s``): films per second of one worker of
  :func:`cxr.data.prepare.prepare_datasets` (PNG, 1024 px, ``workers=1``: in the calling process,
  so no worker start-up is counted; a fresh copy each run), ``ours``; ``peer``: films per second
  of decoding alone (``read_xray``), so the ratio is the share of a worker's time the decoding
  takes. With N workers a copy goes about N times faster while cores are free. Reported, no
  goal.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile

from .data import _images_per_s
from .timing import BENCHMARK_REGISTRY, result_row, time_repeated

__all__ = ["bench_films", "data_dicom_prepared", "prepare_films_per_s"]

logger = logging.getLogger(__name__)

BBOX = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "datasets",
                    "nih", "BBox_List_2017.csv.gz")  # fmt: skip
PREPARED_SIZE = 1024


def _film_hw() -> tuple[int, int]:
    h, _, w = os.environ.get("CXR_BENCH_FILM_HW", "3000x2500").partition("x")
    return int(h), int(w)


def bench_films(root: str | None = None) -> tuple[str, list[str]]:
    """The benchmark's phantom DICOM data root (rendered on first use) and the split names,
    registered (``phantom_vindr_*`` of that root)."""
    from detectron2.data import DatasetCatalog, MetadataCatalog

    from cxr.data.datasets.builtin import register_all_cxr
    from cxr.data.phantom_dicom import generate_phantom_dicoms

    n = int(os.environ.get("CXR_BENCH_PREPARE_FILMS", "16"))
    h, w = _film_hw()
    root = root or os.path.join("output", "bench", f"phantom_vindr_{n}_{h}x{w}")
    generate_phantom_dicoms(os.path.join(root, "phantom_vindr"), BBOX, n, height=h, width=w,
                            workers=min(2, os.cpu_count() or 1))  # fmt: skip
    for name in [x for x in DatasetCatalog.list() if x.startswith("phantom_vindr")]:
        DatasetCatalog.remove(name)
        MetadataCatalog.remove(name)
    register_all_cxr(root)
    return root, ["phantom_vindr_all"]


def _mapper_cfg(args):
    from cxr.config import load_config

    cfg = load_config(None, None)
    cfg.INPUT.MIN_SIZE_TRAIN, cfg.INPUT.MAX_SIZE_TRAIN = (PREPARED_SIZE,), PREPARED_SIZE
    cfg.INPUT.RANDOM_FLIP = "horizontal"
    cfg.INPUT.ALBUMENTATIONS.PRESET = "none"
    return cfg


@BENCHMARK_REGISTRY.register_as("data_dicom_prepared")
def data_dicom_prepared(args) -> list[dict]:
    """``--task data_dicom_prepared``: see the module docstring."""
    from detectron2.data import DatasetCatalog

    from cxr.data.datasets.prepared import register_prepared_copies
    from cxr.data.mapper import AlbumentationsMapper
    from cxr.data.prepare import prepare_datasets

    root, names = bench_films()
    with tempfile.TemporaryDirectory(dir=root) as tmp:
        out = os.path.join(tmp, f"phantom_vindr@{PREPARED_SIZE}")
        prepare_datasets(names, PREPARED_SIZE, "png", output=out, workers=1)
        register_prepared_copies(tmp)
        original = DatasetCatalog.get("phantom_vindr_all")
        prepared = DatasetCatalog.get(f"phantom_vindr_all@{PREPARED_SIZE}")
        mapper = AlbumentationsMapper(_mapper_cfg(args), True)
        warmup, repeats = max(1, min(args.warmup, 1)), max(2, args.repeats)
        ours, peer = [], []
        for _ in range(2):  # alternate to even out machine load
            ours.append(_images_per_s(prepared, mapper, warmup, repeats))
            peer.append(_images_per_s(original, mapper, warmup, repeats))
    h, w = _film_hw()
    return [result_row(
        "data_dicom_prepared_vs_original", max(ours), max(peer), "images/s", "higher",
        films=len(original), film_hw=[h, w], bits_allocated=16, prepared_size=PREPARED_SIZE,
        resize=PREPARED_SIZE, workers=2, batch_size=4, goal_ratio=5.0, all_runs_ours=ours,
        all_runs_peer=peer,
    )]  # fmt: skip


@BENCHMARK_REGISTRY.register_as("prepare_films_per_s")
def prepare_films_per_s(args) -> list[dict]:
    """``--task prepare_films_per_s``: see the module docstring."""
    from detectron2.data import DatasetCatalog

    from cxr.data.io import read_xray
    from cxr.data.prepare import prepare_datasets

    root, names = bench_films()
    files = [d["file_name"] for d in DatasetCatalog.get("phantom_vindr_all")]
    workers = 1
    out = os.path.join(root, "prepare_bench")

    def prepare():
        shutil.rmtree(out, ignore_errors=True)
        prepare_datasets(names, PREPARED_SIZE, "png", output=out, workers=workers)

    def decode():
        for f in files:
            read_xray(f)

    repeats = max(1, min(args.repeats, 3))
    ours = time_repeated(prepare, warmup=0, repeats=repeats)
    peer = time_repeated(decode, warmup=0, repeats=repeats)
    shutil.rmtree(out, ignore_errors=True)
    h, w = _film_hw()
    return [result_row(
        "prepare_films_per_s", len(files) / ours.median / workers, len(files) / peer.median,
        "films/s per worker", "higher", films=len(files), film_hw=[h, w], workers=workers,
        prepared_size=PREPARED_SIZE, format="png", films_per_s_total=len(files) / ours.median,
        runs_s=ours.times, decode_runs_s=peer.times,
    )]  # fmt: skip

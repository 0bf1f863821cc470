"""Benchmark task ``data``: images/s of AlbumentationsMapper vs detectron2's DatasetMapper.

Row ``mapper_vs_detectron2``: both mappers map the same generated 1024 x 1024 8-bit gray PNGs
(smooth anatomy-like gradients + noise, 2 boxes each) with the same detectron2 resize
(``INPUT.MIN_SIZE_TRAIN`` / ``MAX_SIZE_TRAIN``, 512 by default) and horizontal flip, in training
mode, through a ``torch.utils.data.DataLoader`` with 2 persistent workers and batch size 4.
One repetition = one pass over the images; per run, images / median seconds; the two mappers
run alternately twice and ``ours`` / ``peer`` report the better run of each (all runs kept).
Albumentations preset ``none`` so the work is equivalent.
"""

from __future__ import annotations

import logging
import os
import tempfile

import numpy as np

from .timing import BENCHMARK_REGISTRY, result_row, time_repeated

__all__ = ["write_benchmark_pngs", "data"]

logger = logging.getLogger(__name__)


def write_benchmark_pngs(folder: str, n: int, size: int = 1024, seed: int = 0) -> list[dict]:
    """Write ``n`` gray PNGs of ``size`` px; dataset dicts with two XYXY_ABS boxes each."""
    import cv2
    from detectron2.structures import BoxMode

    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    dicts = []
    for i in range(n):
        base = 120 + 60 * np.sin(6 * xx + i) * np.cos(4 * yy) - 50 * (yy - 0.5) ** 2
        img = np.clip(base + rng.normal(0, 8, (size, size)), 0, 255).astype(np.uint8)
        path = os.path.join(folder, f"bench_{i:04d}.png")
        cv2.imwrite(path, img)
        boxes = [[100.0, 120.0, 300.0, 260.0], [600.0, 500.0, 700.0, 640.0]]
        dicts.append({
            "file_name": path, "image_id": i, "height": size, "width": size,
            "annotations": [{"bbox": b, "bbox_mode": BoxMode.XYXY_ABS, "category_id": k}
                            for k, b in enumerate(boxes)],
        })  # fmt: skip
    return dicts


class _Mapped:
    def __init__(self, dicts, mapper):
        self.dicts, self.mapper = dicts, mapper

    def __len__(self):
        return len(self.dicts)

    def __getitem__(self, i):
        return self.mapper(self.dicts[i])


def _as_list(batch):
    """DataLoader collate that keeps the mapped dicts (module level: picklable under spawn)."""
    return batch


def _images_per_s(dicts, mapper, warmup: int, repeats: int, workers: int = 2) -> float:
    import torch

    loader = torch.utils.data.DataLoader(
        _Mapped(dicts, mapper), batch_size=4, num_workers=workers, collate_fn=_as_list,
        persistent_workers=workers > 0,
    )  # fmt: skip

    def epoch():
        for _ in loader:
            pass

    stats = time_repeated(epoch, warmup=warmup, repeats=repeats)
    logger.info("%s: %s per pass of %d images", type(mapper).__name__, stats.summary(), len(dicts))
    return len(dicts) / stats.median


@BENCHMARK_REGISTRY.register()
def data(args) -> list[dict]:
    """``--task data``: see the module docstring. ``--config-file`` / opts set the resize."""
    from detectron2.data import DatasetMapper

    from cxr.config import load_config
    from cxr.data.mapper import AlbumentationsMapper

    cfg = load_config(args.config_file or None, args.opts or None)
    if not args.config_file:
        cfg.INPUT.MIN_SIZE_TRAIN, cfg.INPUT.MAX_SIZE_TRAIN = (512,), 512
    cfg.INPUT.RANDOM_FLIP = "horizontal"
    cfg.INPUT.ALBUMENTATIONS.PRESET = "none"
    n = int(os.environ.get("CXR_BENCH_DATA_IMAGES", "64"))
    with tempfile.TemporaryDirectory() as folder:
        dicts = write_benchmark_pngs(folder, n)
        warmup, repeats = max(1, min(args.warmup, 2)), max(3, args.repeats)
        ours, peer = [], []
        for _ in range(2):  # alternate to even out machine load
            ours.append(_images_per_s(dicts, AlbumentationsMapper(cfg, True), warmup, repeats))
            peer.append(_images_per_s(dicts, DatasetMapper(cfg, True), warmup, repeats))
    return [
        result_row(
            name="mapper_vs_detectron2", ours=max(ours), peer=max(peer), unit="images/s",
            better="higher", images=n, image_size=1024, resize=cfg.INPUT.MIN_SIZE_TRAIN[0],
            flip="horizontal", workers=2, batch_size=4, all_runs_ours=ours, all_runs_peer=peer,
        )
    ]  # fmt: skip

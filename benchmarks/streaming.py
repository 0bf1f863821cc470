"""Benchmark tasks of films at scale: streaming shards, and the full-count NIH label table.

- ``data_cls_shards_vs_png``: images/s of the classification train loader as the trainer builds
  it (``Trainer.build_train_loader``: ``ClassificationMapper`` resizing to 256 px, training mode,
  2 workers, batch 32, no aspect-ratio grouping as in the classifier configs, so the workers
  hand over packed batches), over the same generated 1024 x 1024 films (``FILMS``, or
  ``CXR_BENCH_DATA_IMAGES``, at least one batch): (ours) streamed from the shard copy that
  ``tools/prepare_data.py``'s code writes at 256 px (16 films a shard, shuffle buffer 64) and
  (peer) read from the PNG files. One repetition = as many batches as there are films; the two
  loaders alternate twice and each reports its better run; ``in_process_ms_per_image_*`` time
  the same reading and mapping in the benchmark's own process, without the DataLoader. Goal:
  ratio >= 10.
- ``nih_cls_all_load``: seconds to register and load ``nih_cls_all`` (the shipped
  ``Data_Entry_2017_v2020.csv.gz``, 112,120 records) in a fresh process, the memory it adds
  (``load_peak_mib``: peak RSS over the RSS after ``import cxr``), and the RSS of each of 2
  DataLoader workers after each of 3 epochs over the records as detectron2's train loader holds
  them (``DatasetFromList``: one serialized buffer): flat from epoch to epoch.
"""

from __future__ import annotations

import logging
import os
import tempfile
import time

from .data import _as_list, write_benchmark_pngs
from .timing import BENCHMARK_REGISTRY, peak_rss_mib, result_row, time_repeated

__all__ = ["data_cls_shards_vs_png", "nih_cls_all_load"]

logger = logging.getLogger(__name__)

SHARD_SIZE = 16
PREPARED_SIZE = 256
FILMS = 256
BATCH = 32
_NAME = "bench_cls_train"


def _register_films(folder: str, n: int) -> list[dict]:
    """``n`` generated 1024 px films registered as :data:`_NAME` (image-label records)."""
    from detectron2.data import DatasetCatalog, MetadataCatalog

    os.makedirs(folder, exist_ok=True)
    dicts = write_benchmark_pngs(folder, n)
    for d in dicts:
        d.pop("annotations")
        d["labels"] = [d["image_id"] % 2, 1]
    for name in (_NAME, f"{_NAME}@{PREPARED_SIZE}-wds"):
        if name in DatasetCatalog.list():
            DatasetCatalog.remove(name)
            MetadataCatalog.remove(name)
    DatasetCatalog.register(_NAME, lambda: [dict(d) for d in dicts])
    MetadataCatalog.get(_NAME).set(thing_classes=["finding", "any"], dataset_root=folder)
    return dicts


def _prepare_shards(folder: str) -> str:
    """The 256 px shard copy of :data:`_NAME`, written and registered as ``tools/prepare_data.py
    --format wds`` does; its registered name."""
    from cxr.data.datasets.wds_copies import register_wds_copy
    from cxr.data.prepare.run import prepare_datasets

    copy = os.path.join(folder, f"bench_cls@{PREPARED_SIZE}-wds")
    prepare_datasets([_NAME], PREPARED_SIZE, "wds", output=copy, shard_size=SHARD_SIZE)
    (name,) = register_wds_copy(copy)
    return name


def _train_cfg(dataset: str):
    from cxr.config import load_config

    return load_config(None, [
        "DATASETS.TRAIN", f"('{dataset}',)", "INPUT.MAPPER", "ClassificationMapper",
        "INPUT.MIN_SIZE_TRAIN", f"({PREPARED_SIZE},)", "INPUT.MAX_SIZE_TRAIN", str(PREPARED_SIZE),
        "SOLVER.IMS_PER_BATCH", str(BATCH), "DATALOADER.NUM_WORKERS", "2",
        "DATALOADER.ASPECT_RATIO_GROUPING", "False", "DATALOADER.SAMPLER_TRAIN",
        "TrainingSampler", "DATALOADER.WDS.SHUFFLE_BUFFER", "64",
    ])  # fmt: skip


def _in_process_ms(one_pass, n: int) -> float:
    """Milliseconds per image of ``one_pass()`` (mapping ``n`` images) in this process: the
    better of two passes after one warm-up."""
    one_pass()
    best = float("inf")
    for _ in range(2):
        t0 = time.perf_counter()
        one_pass()
        best = min(best, time.perf_counter() - t0)
    return round(1000.0 * best / n, 3)


def _loader_rate(cfg, n: int, warmup: int, repeats: int) -> float:
    """Images/s of the trainer's train loader for ``cfg`` over passes of ``n`` images."""
    from cxr.engine.trainer import Trainer

    batches = iter(Trainer.build_train_loader(cfg))
    steps = max(1, n // BATCH)

    def one_pass():
        assert sum(len(next(batches)) for _ in range(steps)) == steps * BATCH

    stats = time_repeated(one_pass, warmup=warmup, repeats=repeats)
    logger.info("%s: %s per pass of %d films", cfg.DATASETS.TRAIN[0], stats.summary(),
                steps * BATCH)  # fmt: skip
    return steps * BATCH / stats.median  # the loader and its workers go with this frame


@BENCHMARK_REGISTRY.register_as("data_cls_shards_vs_png")
def data_cls_shards_vs_png(args) -> list[dict]:
    """``--task data_cls_shards_vs_png``: see the module docstring."""
    from cxr.data.build import build_mapper
    from cxr.data.wds import ShardStream, streamed_shards

    n = max(BATCH, int(os.environ.get("CXR_BENCH_DATA_IMAGES", str(FILMS))))
    warmup, repeats = max(1, min(args.warmup, 2)), max(3, args.repeats)
    with tempfile.TemporaryDirectory() as folder:
        dicts = _register_films(os.path.join(folder, "bench_cls"), n)
        shards = _prepare_shards(folder)
        ours, peer = [], []
        for _ in range(2):  # alternate to even out machine load
            ours.append(_loader_rate(_train_cfg(shards), n, warmup, repeats))
            peer.append(_loader_rate(_train_cfg(_NAME), n, warmup, repeats))
        # the same work in this process, no DataLoader: what the loader's transfers hide
        mapper = build_mapper(_train_cfg(_NAME), True)
        stream = ShardStream(*streamed_shards([shards]), shuffle_buffer=64, epochs=1, rank=0,
                             world_size=1)  # fmt: skip
        work_ours = _in_process_ms(lambda: [mapper(dict(r)) for r in stream], n)
        work_peer = _in_process_ms(lambda: [mapper(dict(d)) for d in dicts], n)
    return [
        result_row(
            name="data_cls_shards_vs_png", ours=max(ours), peer=max(peer), unit="images/s",
            better="higher", images=n, shard_film_size=PREPARED_SIZE, png_film_size=1024,
            resize=PREPARED_SIZE, shard_size=SHARD_SIZE, workers=2, batch_size=BATCH,
            all_runs_ours=ours, all_runs_peer=peer, in_process_ms_per_image_ours=work_ours,
            in_process_ms_per_image_peer=work_peer,
        )
    ]  # fmt: skip


def _rss_mib(pid: int | str = "self") -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


class _Labels:
    """Mapper of the memory probe: touches each record, reads no image."""

    def __call__(self, d: dict) -> int:
        return sum(d["labels"])


def _worker_rss_per_epoch(records: list[dict], epochs: int = 3) -> list[dict]:
    """Per epoch: records read (``records``) and each worker's RSS in MiB after it (``rss``)."""
    import torch
    from detectron2.data.common import DatasetFromList, MapDataset

    dataset = MapDataset(DatasetFromList(records, copy=False), _Labels())
    loader = torch.utils.data.DataLoader(dataset, batch_size=512, num_workers=2,
                                         collate_fn=_as_list, persistent_workers=True)  # fmt: skip
    out = []
    for _ in range(epochs):
        it = iter(loader)
        n = sum(len(batch) for batch in it)
        out.append({"records": n, "rss": [round(_rss_mib(w.pid), 1) for w in it._workers]})
    return out


@BENCHMARK_REGISTRY.register_as("nih_cls_all_load")
def nih_cls_all_load(args) -> list[dict]:
    """``--task nih_cls_all_load``: see the module docstring (runs from the repository root,
    where ``datasets/nih/`` holds the shipped Data_Entry)."""
    import cxr  # noqa: F401  (registers nih_cls_* from DETECTRON2_DATASETS, default datasets/)
    from detectron2.data import DatasetCatalog

    before = _rss_mib()
    t0 = time.perf_counter()
    records = DatasetCatalog.get("nih_cls_all")
    seconds = time.perf_counter() - t0
    peak = peak_rss_mib()
    workers = _worker_rss_per_epoch(records)
    return [
        result_row(
            name="nih_cls_all_load", ours=seconds, peer=None, unit="s", better="lower",
            records=len(records), load_peak_mib=round(max(peak - before, 0.0), 1),
            process_peak_rss_mib=round(peak, 1),
            worker_rss_mib_per_epoch=[e["rss"] for e in workers],
            worker_rss_growth_mib=round(max(workers[-1]["rss"]) - max(workers[0]["rss"]), 1),
        )
    ]  # fmt: skip

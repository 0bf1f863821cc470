"""Benchmark tasks of films at scale: streaming shards, and the full-count NIH label table.

- ``data_cls_shards_vs_png``: classification loader images/s (``ClassificationMapper``, resize
  to 256 px, training mode, ``DataLoader`` with 2 persistent workers, batch 4) over the same
  generated films read (ours) from WebDataset shards of 256 px PNGs through
  :class:`cxr.data.wds.ShardStream` (16 films a shard, shuffle buffer 64) and (peer) from the
  1024 x 1024 PNG files. One repetition = one pass over the films; both alternate twice and
  each reports its better run; ``in_process_ms_per_image_*`` time the same reading and mapping
  in the benchmark's own process, without the DataLoader. Goal: ratio >= 10.
- ``nih_cls_all_load``: seconds to register and load ``nih_cls_all`` (the shipped
  ``Data_Entry_2017_v2020.csv.gz``, 112,120 records) in a fresh process, the memory it adds
  (``load_peak_mib``: peak RSS over the RSS after ``import cxr``), and the RSS of each of 2
  DataLoader workers after each of 3 epochs over the records as detectron2's train loader holds
  them (``DatasetFromList``: one serialized buffer): flat from epoch to epoch.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import time

from .data import _as_list, _Mapped, write_benchmark_pngs
from .timing import BENCHMARK_REGISTRY, peak_rss_mib, result_row, time_repeated

__all__ = ["data_cls_shards_vs_png", "nih_cls_all_load"]

logger = logging.getLogger(__name__)

SHARD_SIZE = 16
PREPARED_SIZE = 256


def _write_shards(dicts: list[dict], folder: str, size: int) -> tuple[list[str], list[int]]:
    """The films of ``dicts`` resized (area) to ``size`` px as shards of :data:`SHARD_SIZE`."""
    import cv2
    import webdataset as wds

    urls, sizes = [], []
    for start in range(0, len(dicts), SHARD_SIZE):
        url = os.path.join(folder, f"shard-{len(urls):06d}.tar")
        chunk = dicts[start : start + SHARD_SIZE]
        with wds.TarWriter(url) as sink:
            for d in chunk:
                img = cv2.resize(cv2.imread(d["file_name"], 0), (size, size),
                                 interpolation=cv2.INTER_AREA)  # fmt: skip
                rec = {"image_id": d["image_id"], "height": size, "width": size,
                       "annotations": [], "labels": [1, 0]}  # fmt: skip
                png = cv2.imencode(".png", img)[1].tobytes()
                sink.write({"__key__": f"{d['image_id']}", "png": png,
                            "json": json.dumps(rec).encode()})  # fmt: skip
        urls.append(url)
        sizes.append(len(chunk))
    return urls, sizes


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


def _pass_rate(dataset, n: int, warmup: int, repeats: int) -> float:
    import torch

    loader = torch.utils.data.DataLoader(
        dataset, batch_size=4, num_workers=2, collate_fn=_as_list, persistent_workers=True
    )

    def epoch():
        assert sum(len(b) for b in loader) == n

    stats = time_repeated(epoch, warmup=warmup, repeats=repeats)
    logger.info("%s: %s per pass of %d films", type(dataset).__name__, stats.summary(), n)
    return n / stats.median


@BENCHMARK_REGISTRY.register_as("data_cls_shards_vs_png")
def data_cls_shards_vs_png(args) -> list[dict]:
    """``--task data_cls_shards_vs_png``: see the module docstring."""
    from detectron2.data.common import MapDataset

    from cxr.config import load_config
    from cxr.data.cls_mapper import ClassificationMapper
    from cxr.data.wds import ShardStream

    cfg = load_config(None, ["INPUT.MAPPER", "ClassificationMapper", "INPUT.MIN_SIZE_TRAIN",
                             f"({PREPARED_SIZE},)", "INPUT.MAX_SIZE_TRAIN", str(PREPARED_SIZE)])  # fmt: skip
    n = int(os.environ.get("CXR_BENCH_DATA_IMAGES", "64"))
    warmup, repeats = max(1, min(args.warmup, 2)), max(3, args.repeats)
    with tempfile.TemporaryDirectory() as folder:
        dicts = write_benchmark_pngs(folder, n)
        for d in dicts:
            d["labels"] = [1, 0]
        urls, sizes = _write_shards(dicts, folder, PREPARED_SIZE)
        mapper = ClassificationMapper(cfg, True)
        stream = ShardStream(urls, sizes, shuffle_buffer=64, epochs=1, rank=0, world_size=1)
        ours, peer = [], []
        for _ in range(2):  # alternate to even out machine load
            ours.append(_pass_rate(MapDataset(stream, mapper), n, warmup, repeats))
            peer.append(_pass_rate(_Mapped(dicts, mapper), n, warmup, repeats))
        # the same work in this process, no DataLoader: what the loader's transfers hide
        work_ours = _in_process_ms(lambda: [mapper(dict(r)) for r in stream], n)
        work_peer = _in_process_ms(lambda: [mapper(dict(d)) for d in dicts], n)
    return [
        result_row(
            name="data_cls_shards_vs_png", ours=max(ours), peer=max(peer), unit="images/s",
            better="higher", images=n, shard_film_size=PREPARED_SIZE, png_film_size=1024,
            resize=PREPARED_SIZE, shard_size=SHARD_SIZE, workers=2, batch_size=4,
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

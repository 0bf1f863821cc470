"""Reading prepared shard copies: WebDataset ``.tar`` shards of films and their records.

Layout (written by ``tools/prepare_data.py``; see ``docs/scale.md``): a split ``<name>`` of a
shard copy is a folder ``<name>/`` holding ``shard-000000.tar``, ``shard-000001.tar``, ... and
``index.json`` (``{"dataset", "num_samples", "shards": [{"file", "num_samples"}], "task"}``).
Each sample ``<key>`` has two members: ``<key>.png`` (the prepared film, one channel, 8 or 16
bit) and ``<key>.json`` (the detectron2 record: ``image_id``, ``height`` / ``width`` of the
prepared film, ``annotations`` with boxes XYXY_ABS in prepared-film pixels, ``labels`` for
classification sets, and ``orig_height`` / ``orig_width`` / ``scale`` / ``source_file``).

:class:`ShardStream` is the torch ``IterableDataset`` the trainer streams from:

* shards are dealt to readers, one reader per (rank, DataLoader worker): reader ``g`` of ``W``
  (``g = worker * world_size + rank``) takes every ``W``-th shard of the epoch's shard order,
  so no two readers share a shard and no sample is read twice in an epoch;
* each epoch the shard order is re-drawn (seed shared by every rank) and each reader's samples
  pass a shuffle buffer (``DATALOADER.WDS.SHUFFLE_BUFFER``) seeded by (seed, epoch, reader);
* an epoch is every shard read once: ``num_samples`` samples over all ranks, logged with its
  length in iterations (``num_samples / SOLVER.IMS_PER_BATCH``);
* the stream is deterministic, so ``--resume`` skips what each reader served before the
  checkpoint (counted from the iteration, without decoding images) and continues mid-epoch.

Shard URLs are whatever webdataset opens: local paths, ``pipe:`` commands, ``http(s)://``.
Errors name the shard, the sample key and the member at fault (:class:`ShardError`).
"""

from __future__ import annotations

import functools
import itertools
import json
import logging
import os
import random
import tarfile
import zlib
from typing import Iterable, Iterator, Sequence

import numpy as np
import torch
from detectron2.data import MetadataCatalog
from detectron2.utils import comm

from .io import decode_xray, read_xray
from .loader import build_cfg_train_loader

__all__ = [
    "IMAGE_BYTES",
    "ShardError",
    "ShardStream",
    "check_local_shards",
    "is_streamed",
    "load_shard_index",
    "read_film",
    "load_shard_records",
    "read_record_image",
    "record_stem",
    "shard_member_name",
    "streamed_shards",
]

logger = logging.getLogger(__name__)

#: Record field holding the encoded film of a streamed sample (decoded by the mapper).
IMAGE_BYTES = "image_bytes"
_MEMBER_SEP = "#"


class ShardError(ValueError):
    """A bad shard or sample. ``file`` (shard), ``key`` (sample) and ``field`` name the culprit."""

    def __init__(self, file: str, key: str | None, field: str, reason: str):
        self.file, self.key, self.field, self.reason = str(file), key, field, reason
        where = f"sample {key!r}, " if key is not None else ""
        super().__init__(f"{self.file}: {where}field {field!r}: {reason}")


def shard_member_name(url: str, key: str) -> str:
    """The ``file_name`` of a sample: ``<shard url>#<key>`` (as the prepare manifest writes)."""
    return f"{url}{_MEMBER_SEP}{key}"


def load_shard_index(index_json: str) -> dict:
    """Read and check a split's ``index.json``.

    Returns:
        the index, with ``urls`` (absolute shard paths) and ``sizes`` (samples per shard) added.

    Raises:
        ShardError: unreadable JSON, a missing field, or counts that do not add up.
    """
    try:
        with open(index_json, encoding="utf-8") as f:
            index = json.load(f)
    except (OSError, ValueError) as e:
        raise ShardError(index_json, None, "(file)", f"not a readable index ({e})") from None
    for field in ("dataset", "num_samples", "shards"):
        if field not in index:
            raise ShardError(index_json, None, field, "missing from index.json")
    folder = os.path.dirname(os.path.abspath(index_json))
    urls, sizes = [], []
    for i, s in enumerate(index["shards"]):
        if not isinstance(s, dict) or "file" not in s or "num_samples" not in s:
            raise ShardError(index_json, None, f"shards[{i}]", "needs 'file' and 'num_samples'")
        urls.append(os.path.join(folder, s["file"]))
        sizes.append(int(s["num_samples"]))
    if sum(sizes) != int(index["num_samples"]):
        raise ShardError(index_json, None, "num_samples",
                         f"{index['num_samples']} but the shards hold {sum(sizes)}")  # fmt: skip
    return {**index, "urls": urls, "sizes": sizes}


def _open_url(url: str):
    import webdataset as wds

    return wds.gopen(url, "rb")


def _tar_members(url: str, images: bool = True) -> Iterator[tuple[str, str, bytes | None]]:
    """``(key, extension, data)`` of each regular member of one shard, in file order; image
    data are None when ``images`` is False (their bytes are skipped, not kept)."""
    stream = _open_url(url)
    try:
        with tarfile.open(fileobj=stream, mode="r|*") as tar:
            for info in tar:
                if not info.isreg():
                    continue
                key, _, ext = os.path.basename(info.name).partition(".")
                keep = images or ext.lower() == "json"
                data = tar.extractfile(info).read() if keep else None
                yield key, ext.lower(), data
                tar.members = []  # stream mode: forget what was read
    except (tarfile.TarError, EOFError, OSError, zlib.error) as e:
        raise ShardError(url, None, "(tar)", f"truncated or unreadable shard ({e})") from None
    finally:
        stream.close()


def _shard_samples(url: str, expected: int | None, images: bool = True) -> Iterator[dict]:
    """Raw samples ``{"__key__", "__url__", "json", "png"}`` of one shard; checks that each has
    both members and that the shard holds ``expected`` samples."""
    current: dict | None = None
    count = 0
    for key, ext, data in itertools.chain(_tar_members(url, images), [(None, None, None)]):
        if current is not None and key != current["__key__"]:
            for member in ("json", "png"):
                if member not in current:
                    what = "annotation" if member == "json" else "film"
                    raise ShardError(url, current["__key__"], f"{current['__key__']}.{member}",
                                     f"sample has no {what} member")  # fmt: skip
            count += 1
            yield current
            current = None
        if key is None:
            break
        if current is None:
            current = {"__key__": key, "__url__": url}
        if ext in current:
            raise ShardError(url, key, f"{key}.{ext}", "member appears twice")
        current[ext] = data
    if expected is not None and count != expected:
        raise ShardError(url, None, "num_samples", f"shard holds {count} samples, index.json "
                         f"says {expected} (truncated or replaced shard?)")  # fmt: skip


def _record(sample: dict, task: str | None = None) -> dict:
    """The detectron2 record of a raw sample; ``file_name`` = ``<shard>#<key>``."""
    url, key = sample["__url__"], sample["__key__"]
    try:
        record = json.loads(sample["json"])
    except (ValueError, UnicodeDecodeError) as e:
        raise ShardError(url, key, f"{key}.json", f"not valid JSON ({e})") from None
    if not isinstance(record, dict):
        raise ShardError(url, key, f"{key}.json", "not a JSON object")
    needed = ("image_id", "height", "width") + (("labels",) if task == "classification" else ())
    for field in needed:
        if field not in record:
            raise ShardError(url, key, f"{key}.json:{field}", "missing from the record")
    if task != "classification" and "annotations" not in record:
        raise ShardError(url, key, f"{key}.json:annotations", "missing from the record")
    record["file_name"] = shard_member_name(url, key)
    if sample.get("png") is not None:
        record[IMAGE_BYTES] = sample["png"]
    return record


def load_shard_records(index_json: str) -> list[dict]:
    """Every record of a split's shards (JSON members only; films are not decoded), in shard
    order, ``file_name`` = ``<shard path>#<key>``.

    Raises:
        ShardError: a shard that is truncated, lacks a member, or disagrees with the index.
    """
    index = load_shard_index(index_json)
    out = []
    for url, n in zip(index["urls"], index["sizes"]):
        out += [_record(s, index.get("task")) for s in _shard_samples(url, n, images=False)]
    return out


def read_record_image(record: dict) -> np.ndarray:
    """The film of a record as H x W ``uint8``: its in-memory shard bytes (popped from the
    record), the ``<shard>#<key>`` member it names, or its image file.

    Raises:
        cxr.data.io.ImageReadError: an undecodable film (the message names the file).
        ShardError: the shard member is missing.
    """
    data = record.pop(IMAGE_BYTES, None)
    name = record["file_name"]
    member = _split_member(name)
    if data is None and member is not None:
        data = _read_member(*member)
    return read_xray(name) if data is None else decode_xray(data, name)


def read_film(file_name: str) -> np.ndarray:
    """The film named by a record's ``file_name`` (an image file or a ``<shard>.tar#<key>``
    member) as H x W ``uint8``; errors as :func:`read_record_image`."""
    return read_record_image({"file_name": file_name})


def _split_member(file_name: str) -> tuple[str, str] | None:
    url, sep, key = str(file_name).rpartition(_MEMBER_SEP)
    return (url, key) if sep and url.endswith(".tar") else None


def record_stem(record: dict) -> str:
    """A file-name stem for a record: the sample key of a shard member, else the image file's
    name without extension."""
    member = _split_member(record["file_name"])
    return member[1] if member else os.path.splitext(os.path.basename(record["file_name"]))[0]


@functools.lru_cache(maxsize=16)
def _member_offsets(path: str, mtime_ns: int) -> dict[str, tuple[int, int]]:
    """``{member name: (data offset, size)}`` of a local tar (headers read, data skipped)."""
    try:
        with tarfile.open(path, "r:") as tar:
            return {m.name: (m.offset_data, m.size) for m in tar.getmembers() if m.isreg()}
    except (tarfile.TarError, EOFError, OSError) as e:
        raise ShardError(path, None, "(tar)", f"truncated or unreadable shard ({e})") from None


def _read_member(url: str, key: str) -> bytes:
    """The film member of sample ``key``: by offset in a local shard, else by streaming it."""
    if os.path.isfile(url):
        where = _member_offsets(url, os.stat(url).st_mtime_ns).get(f"{key}.png")
        if where is None:
            raise ShardError(url, key, f"{key}.png", "no such member in the shard")
        with open(url, "rb") as f:
            f.seek(where[0])
            return f.read(where[1])
    for sample in _shard_samples(url, None):
        if sample["__key__"] == key:
            return sample["png"]
    raise ShardError(url, key, f"{key}.png", "no such sample in the shard")


def streamed_shards(names: Sequence[str]) -> tuple[list[str], list[int]] | None:
    """Shard URLs and sizes of the data sets ``names`` when every one is a shard set (metadata
    ``wds_shards``), None when none is.

    Raises:
        ValueError: shard sets mixed with data sets of files.
    """
    streamed = [n for n in names if MetadataCatalog.get(n).get("wds_shards", None)]
    if not streamed:
        return None
    if len(streamed) != len(names):
        files = sorted(set(names) - set(streamed))
        raise ValueError(f"DATASETS {list(names)}: shard sets cannot be mixed with data sets "
                         f"read from files ({', '.join(files)}); prepare them as shards too")  # fmt: skip
    urls, sizes = [], []
    for n in names:
        meta = MetadataCatalog.get(n)
        urls += list(meta.wds_shards)
        sizes += list(meta.get("wds_shard_samples", [None] * len(meta.wds_shards)))
    return urls, sizes


def is_streamed(names: Sequence[str]) -> bool:
    """True when the data sets ``names`` are shard sets read by :class:`ShardStream`."""
    return streamed_shards(names) is not None


def _reader() -> tuple[int, int]:
    info = torch.utils.data.get_worker_info()
    return (0, 1) if info is None else (info.id, info.num_workers)


class ShardStream(torch.utils.data.IterableDataset):
    """Records streamed from shards, split over ranks and DataLoader workers (see module doc).

    Args:
        urls: shard URLs (local paths, ``pipe:...``, ``http(s)://...``).
        sizes: samples per shard (None entries: not checked, not skippable arithmetically).
        seed: shard order and shuffle seed, the same on every rank.
        shuffle_buffer: samples held by each reader's shuffle buffer; 0 = no shuffling (shards
            read in order, as evaluation does).
        epochs: epochs to stream, None = endless (training).
        rank, world_size: this process among the ranks (default: torch.distributed's).
        task: ``detection`` / ``classification`` (fields required of each record).
        images_per_batch: images per rank and iteration (for :meth:`set_start_iter`).
        per_sample_batches: True when the DataLoader fetches one sample at a time from its
            workers (detectron2's aspect-ratio grouping), False when whole batches.
    """

    def __init__(
        self,
        urls: Sequence[str],
        sizes: Sequence[int | None],
        *,
        seed: int = 0,
        shuffle_buffer: int = 1000,
        epochs: int | None = None,
        rank: int | None = None,
        world_size: int | None = None,
        task: str | None = None,
        images_per_batch: int = 1,
        per_sample_batches: bool = True,
    ):
        if not urls:
            raise ValueError("ShardStream: no shards")
        self.urls, self.sizes = list(urls), list(sizes)
        self._seed = int(seed)
        self.shuffle_buffer = int(shuffle_buffer)
        self.epochs = epochs
        self.rank = comm.get_rank() if rank is None else rank
        self.world_size = comm.get_world_size() if world_size is None else world_size
        self.task = task
        self.images_per_batch = images_per_batch
        self.per_sample_batches = per_sample_batches
        self.start_iter = 0

    @property
    def num_samples(self) -> int:
        """Samples in one epoch over all ranks (the sum of the shard sizes)."""
        return int(sum(s or 0 for s in self.sizes))

    def __len__(self) -> int:
        """Samples this rank reads in one unshuffled epoch (evaluation): ``shards[rank::world]``,
        whatever the number of workers."""
        return int(sum(s or 0 for s in self.sizes[self.rank :: self.world_size]))

    # Checkpointable, like cxr.data.samplers.ResumableSampler: the trainer saves and restores
    # the seed and calls set_start_iter on --resume.
    def state_dict(self) -> dict:
        return {"seed": self._seed}

    def load_state_dict(self, state: dict) -> None:
        self._seed = int(state["seed"])

    def set_start_iter(self, start_iter: int) -> None:
        """Continue after ``start_iter`` iterations: each reader skips what it served."""
        self.start_iter = int(start_iter)

    def shards_of(self, epoch: int, reader: int, num_readers: int) -> list[int]:
        """Indices of the shards reader ``reader`` of ``num_readers`` reads in ``epoch``."""
        order = list(range(len(self.urls)))
        if self.shuffle_buffer > 0:
            random.Random(self._seed * 1_000_003 + epoch).shuffle(order)
        return order[reader::num_readers]

    def _resumed_worker(self, worker: int, num_workers: int) -> tuple[int, int]:
        """``(role, samples served)`` of a DataLoader worker after ``start_iter`` iterations.

        Workers take turns (one fetch each, in order). A new loader starts with worker 0, so
        worker ``w`` plays the role of the worker whose turn came ``w`` fetches after the
        checkpoint; that role served ``ceil((turns - role) / workers)`` fetches before it.
        """
        turns = self.start_iter * (self.images_per_batch if self.per_sample_batches else 1)
        role = (worker + turns) % num_workers
        fetches = max(turns - role + num_workers - 1, 0) // num_workers
        return role, fetches * (1 if self.per_sample_batches else self.images_per_batch)

    def __iter__(self) -> Iterator[dict]:
        worker, num_workers = _reader()
        worker, skip = self._resumed_worker(worker, num_workers)
        # Worker-major numbering: rank r's readers together read shards[r::world_size], however
        # many workers each rank runs (so __len__ and evaluation shares need no worker count).
        reader = worker * self.world_size + self.rank
        num_readers = self.world_size * num_workers
        if self.epochs is None and len(self.urls) < num_readers:
            raise ValueError(
                f"{len(self.urls)} shards for {num_readers} readers ({self.world_size} ranks x "
                f"{num_workers} workers): every reader needs its own shard; write more shards "
                f"(tools/prepare_data.py --shard-size) or use fewer DATALOADER.NUM_WORKERS"
            )
        epochs = itertools.count() if self.epochs is None else range(self.epochs)
        for epoch in epochs:
            shards = self.shards_of(epoch, reader, num_readers)
            known = all(self.sizes[i] is not None for i in shards)
            length = sum(self.sizes[i] or 0 for i in shards)
            if known and skip >= length > 0:
                skip -= length  # a whole epoch served before the checkpoint: not read again
                continue
            logger.info("reader %d/%d (rank %d, worker %d), epoch %d: shards %s", reader,
                        num_readers, self.rank, worker, epoch,
                        [os.path.basename(self.urls[i]) for i in shards])  # fmt: skip
            served = 0
            for sample in self._epoch_samples(shards, epoch, reader):
                served += 1
                if skip > 0:
                    skip -= 1
                    continue
                yield _record(sample, self.task)
            if served == 0 and self.epochs is None:
                raise ValueError(f"reader {reader}: its shards hold no samples "
                                 f"({', '.join(self.urls[i] for i in shards)}); an endless "
                                 f"stream would wait forever")  # fmt: skip

    def _epoch_samples(self, shards: Sequence[int], epoch: int, reader: int) -> Iterable[dict]:
        samples = itertools.chain.from_iterable(
            _shard_samples(self.urls[i], self.sizes[i]) for i in shards
        )
        if self.shuffle_buffer <= 0:
            return samples
        import webdataset as wds

        rng = random.Random((self._seed * 1_000_003 + epoch) * 65_537 + reader)
        initial = max(1, self.shuffle_buffer // 2)
        return wds.shuffle(self.shuffle_buffer, initial, rng=rng)(samples)


def check_local_shards(urls: Sequence[str], what: str) -> None:
    """Stop before training when local shard files are missing (``pipe:`` and ``http(s)://``
    URLs are opened when read).

    Raises:
        FileNotFoundError: naming how many are missing and the first ones.
    """
    local = [u for u in urls if not u.startswith("pipe:") and "://" not in u]
    missing = [u for u in local if not os.path.isfile(u)]
    if missing:
        shown = ", ".join(missing[:3]) + (", ..." if len(missing) > 3 else "")
        raise FileNotFoundError(f"{what}: {len(missing)} of {len(urls)} shard files are missing: "
                                f"{shown}")  # fmt: skip


def _task_of(names: Sequence[str]) -> str | None:
    tasks = {MetadataCatalog.get(n).get("wds_task", None) for n in names}
    return tasks.pop() if len(tasks) == 1 else None


def build_stream_train_loader(cfg, mapper):
    """detectron2's train loader over a :class:`ShardStream` of ``cfg.DATASETS.TRAIN`` (shard
    sets); the stream (checkpointable, resumable) is reachable as ``loader.cxr_sampler``.

    Logs the epoch: samples, shards, readers (ranks x workers) and iterations per epoch.
    """
    from .samplers import _seed

    m = cfg.INPUT.MIX
    if max(m.MIXUP_PROB, m.CUTMIX_PROB, m.MOSAIC_PROB) > 0:
        raise ValueError(f"INPUT.MIX draws partner images by index, which a stream of shards "
                         f"({', '.join(cfg.DATASETS.TRAIN)}) cannot: set INPUT.MIX.*_PROB to 0 "
                         f"or train from the PNG copy")  # fmt: skip
    urls, sizes = streamed_shards(cfg.DATASETS.TRAIN)
    check_local_shards(urls, f"training ({', '.join(cfg.DATASETS.TRAIN)})")
    world = comm.get_world_size()
    stream = ShardStream(
        urls, sizes, seed=_seed(cfg), shuffle_buffer=cfg.DATALOADER.WDS.SHUFFLE_BUFFER,
        task=_task_of(cfg.DATASETS.TRAIN), images_per_batch=cfg.SOLVER.IMS_PER_BATCH // world,
        per_sample_batches=cfg.DATALOADER.ASPECT_RATIO_GROUPING,
    )  # fmt: skip
    workers = max(cfg.DATALOADER.NUM_WORKERS, 1)
    logger.info(
        "Streaming %s: one epoch = %d samples in %d shards = %.1f iterations of %d images; "
        "%d readers (%d ranks x %d workers), shuffle buffer %d",
        ", ".join(cfg.DATASETS.TRAIN), stream.num_samples, len(urls),
        stream.num_samples / cfg.SOLVER.IMS_PER_BATCH, cfg.SOLVER.IMS_PER_BATCH, world * workers,
        world, workers, stream.shuffle_buffer,
    )  # fmt: skip
    return build_cfg_train_loader(cfg, stream, mapper, sampler=None, resumable=stream)


def build_stream_test_loader(cfg, dataset_name: str, mapper):
    """detectron2's test loader over one unshuffled pass of a shard set: each rank reads its
    share of the shards (every sample once over all ranks)."""
    from detectron2.data import build_detection_test_loader

    urls, sizes = streamed_shards([dataset_name])
    stream = ShardStream(urls, sizes, shuffle_buffer=0, epochs=1, task=_task_of([dataset_name]))
    return build_detection_test_loader(
        stream, mapper=mapper, num_workers=cfg.DATALOADER.NUM_WORKERS
    )

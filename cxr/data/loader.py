"""Train loaders whose workers hand each batch over in one piece.

detectron2's train loader yields each batch as a list of mapped dicts. Every tensor in them
crosses from a DataLoader worker to the training process on its own: a new shared-memory
segment (whose pages the kernel zeroes and maps), a copy into it and a file descriptor passed
over a socket, per tensor. At small film sizes that is a large part of the loader's work. When
batches are formed in the workers (``DATALOADER.ASPECT_RATIO_GROUPING: False``),
:func:`build_train_loader` has each worker pack the top-level tensors of a batch's dicts
(``image``, ``labels``, ...) into one shared byte buffer (:func:`pack_batch`), which the worker
reuses once the training process has dropped the batch, and the training process hands the
tensors out as views of it (:func:`unpack_batch`): one transfer per batch.

Tensors nested in other objects (a detection dict's ``instances``) travel as before. With
aspect-ratio grouping, samples cross one at a time (detectron2 groups them in the training
process) and are not packed.
"""

from __future__ import annotations

import math
import os
import weakref
from typing import Iterator, NamedTuple

import torch

__all__ = [
    "PackedBatch",
    "PackedBatchLoader",
    "build_cfg_train_loader",
    "build_train_loader",
    "pack_batch",
    "unpack_batch",
]

_ALIGN = 16  # byte alignment of each tensor in the buffer (any dtype can view its slice)


class PackedBatch(NamedTuple):
    """A batch as it crosses from a worker: ``dicts`` without their top-level tensors, which
    lie in ``buffer`` (1-D ``uint8``); ``layout`` rows are ``(dict index, key, dtype, shape,
    byte offset)``. ``flags`` / ``slot``: the worker's reuse flag of the buffer (None when
    the buffer is not reused)."""

    buffer: torch.Tensor
    layout: list[tuple[int, str, torch.dtype, tuple[int, ...], int]]
    dicts: list[dict]
    flags: torch.Tensor | None = None
    slot: int | None = None


def _nbytes(dtype: torch.dtype, shape: tuple[int, ...]) -> int:
    return math.prod(shape) * dtype.itemsize


def _shared_bytes(nbytes: int) -> torch.Tensor:
    """A zeroed ``uint8`` tensor of ``nbytes`` in shared memory."""
    storage = torch.UntypedStorage._new_shared(max(int(nbytes), 1))
    return torch.empty(0, dtype=torch.uint8).set_(storage, 0, (int(nbytes),), (1,))


class _SharedPool:
    """Shared-memory buffers of one DataLoader worker, each reused once the training process
    has dropped every tensor of the batch it carried.

    A new shared segment costs more than the copy into it (the kernel zeroes and maps its
    pages). Slot ``i``'s byte in ``flags`` (itself shared) is 1 from packing until the training
    process's last view of the buffer dies; :func:`unpack_batch` sets it back to 0 then. When no
    slot is free (the training process holds many batches) a buffer is used once.
    """

    def __init__(self, slots: int = 8):
        self.pid = os.getpid()
        self.flags = _shared_bytes(slots)
        self._free = self.flags.numpy()
        self.buffers: list[torch.Tensor | None] = [None] * slots

    def take(self, nbytes: int) -> tuple[torch.Tensor, int | None]:
        """``(buffer of nbytes, slot or None)``; the slot is marked busy."""
        for i, buf in enumerate(self.buffers):
            if self._free[i] == 0:
                if buf is None or buf.numel() < nbytes:
                    buf = self.buffers[i] = _shared_bytes(nbytes)
                self._free[i] = 1
                return buf[:nbytes], i
        return _shared_bytes(nbytes), None


_POOL: _SharedPool | None = None


def _worker_buffer(nbytes: int) -> tuple[torch.Tensor, torch.Tensor | None, int | None]:
    """``(buffer, flags, slot)``: inside a DataLoader worker a pooled shared buffer (torch's
    default collate allocates shared memory there too, so the transfer copies nothing more);
    elsewhere a plain one."""
    global _POOL
    if torch.utils.data.get_worker_info() is None:
        return torch.empty(nbytes, dtype=torch.uint8), None, None
    if _POOL is None or _POOL.pid != os.getpid():
        _POOL = _SharedPool()
    buf, slot = _POOL.take(nbytes)
    return buf, (None if slot is None else _POOL.flags), slot


def pack_batch(batch: list[dict]) -> PackedBatch:
    """Move the CPU tensors at the top level of each dict of ``batch`` into one buffer.

    The dicts are changed in place (their tensors replaced by None) and returned in the
    :class:`PackedBatch`; None entries (skipped samples) are kept as they are.
    """
    layout, offset = [], 0
    tensors = []
    for i, d in enumerate(batch):
        if not isinstance(d, dict):
            continue
        for key in [k for k, v in d.items() if isinstance(v, torch.Tensor) and not v.is_cuda]:
            t, d[key] = d[key], None  # the key keeps its place; unpack_batch refills it
            layout.append((i, key, t.dtype, tuple(t.shape), offset))
            tensors.append(t)
            offset += -(-_nbytes(t.dtype, tuple(t.shape)) // _ALIGN) * _ALIGN
    buffer, flags, slot = _worker_buffer(offset)
    for (_, _, dtype, shape, start), t in zip(layout, tensors):
        n = _nbytes(dtype, shape)
        if n:
            buffer[start : start + n].view(dtype).view(shape).copy_(t)
    return PackedBatch(buffer, layout, batch, flags, slot)


def _release(flags: torch.Tensor, slot: int, pid: int) -> None:
    if os.getpid() == pid:  # not in a forked child that inherited the batch
        flags[slot] = 0


def unpack_batch(packed: PackedBatch) -> list[dict]:
    """The dicts of :func:`pack_batch` with their tensors back, each a view of the buffer; a
    pooled buffer is handed back to its worker once the last of them is gone."""
    for i, key, dtype, shape, start in packed.layout:
        n = _nbytes(dtype, shape)
        packed.dicts[i][key] = packed.buffer[start : start + n].view(dtype).view(shape)
    if packed.slot is not None:
        # The storage object lives as long as any tensor or array on it (views included).
        done = weakref.finalize(packed.buffer.untyped_storage(), _release, packed.flags,
                                packed.slot, os.getpid())  # fmt: skip
        done.atexit = False
    return packed.dicts


class PackedBatchLoader:
    """Iterate a DataLoader whose ``collate_fn`` is :func:`pack_batch`, yielding unpacked
    batches (lists of dicts); other attributes are the DataLoader's."""

    def __init__(self, loader):
        self.loader = loader

    def __iter__(self) -> Iterator[list[dict]]:
        for packed in self.loader:
            yield unpack_batch(packed)

    def __len__(self) -> int:
        return len(self.loader)

    def __getattr__(self, name: str):
        if name == "loader":  # not yet set (unpickling): no recursion
            raise AttributeError(name)
        return getattr(self.loader, name)


def build_train_loader(
    dataset,
    mapper,
    *,
    sampler,
    total_batch_size: int,
    aspect_ratio_grouping: bool,
    num_workers: int,
):
    """detectron2's ``build_detection_train_loader`` (same arguments); batches formed in the
    workers (``aspect_ratio_grouping`` False, ``num_workers`` > 0) are packed there and
    unpacked here (see module doc). Yields lists of mapped dicts either way."""
    from detectron2.data import build_detection_train_loader

    packed = num_workers > 0 and not aspect_ratio_grouping
    loader = build_detection_train_loader(
        dataset=dataset, mapper=mapper, sampler=sampler, total_batch_size=total_batch_size,
        aspect_ratio_grouping=aspect_ratio_grouping, num_workers=num_workers,
        collate_fn=pack_batch if packed else None,
    )  # fmt: skip
    return PackedBatchLoader(loader) if packed else loader


def build_cfg_train_loader(cfg, dataset, mapper, *, sampler, resumable):
    """:func:`build_train_loader` with ``SOLVER.IMS_PER_BATCH`` and ``DATALOADER.*`` of ``cfg``;
    ``resumable`` (the sampler, or the stream that ``dataset`` is) is reachable as
    ``loader.cxr_sampler`` for checkpoints and ``--resume``."""
    loader = build_train_loader(
        dataset, mapper, sampler=sampler, total_batch_size=cfg.SOLVER.IMS_PER_BATCH,
        aspect_ratio_grouping=cfg.DATALOADER.ASPECT_RATIO_GROUPING,
        num_workers=cfg.DATALOADER.NUM_WORKERS,
    )  # fmt: skip
    loader.cxr_sampler = resumable
    return loader

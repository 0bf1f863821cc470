"""Packed batches (cxr.data.loader): tensors of a batch cross from a worker in one buffer,
come back equal, and a worker reuses a buffer only after the training process let go of it."""

from __future__ import annotations

import gc

import numpy as np
import pytest
import torch

from cxr.config import get_cfg
from cxr.data import build_mapper
from cxr.data.loader import PackedBatchLoader, pack_batch, unpack_batch


def _batch():
    return [
        {"image": torch.arange(60, dtype=torch.uint8).view(3, 4, 5), "image_id": 0,
         "labels": torch.tensor([1.0, 0.0, 0.5]), "flag": torch.tensor(True),
         "empty": torch.zeros(0, 4), "ids": torch.tensor([[7, -8]], dtype=torch.int64),
         "file_name": "a.png"},
        None,  # a skipped sample stays as it is
        {"image": torch.full((1, 3, 3), 9, dtype=torch.uint8), "half": torch.ones(5).half()},
    ]  # fmt: skip


def test_unpacked_batch_equals_the_original_dicts():
    ref, batch = _batch(), _batch()
    packed = pack_batch(batch)
    assert packed.buffer.dtype == torch.uint8 and packed.buffer.dim() == 1
    assert all(not isinstance(v, torch.Tensor) for d in packed.dicts if d for v in d.values())
    out = unpack_batch(packed)
    assert out[1] is None
    for got, want in zip(out, ref):
        if want is None:
            continue
        assert list(got) == list(want)  # same keys, same order
        for k, v in want.items():
            if isinstance(v, torch.Tensor):
                assert got[k].dtype == v.dtype and torch.equal(got[k], v), k
                assert got[k].untyped_storage().data_ptr() == packed.buffer.data_ptr()
            else:
                assert got[k] == v


class _Films(torch.utils.data.Dataset):
    """Film ``i``: a 3 x 32 x 32 uint8 image filled with ``i % 251`` and its labels."""

    def __len__(self):
        return 400

    def __getitem__(self, i):
        return {"image_id": i, "image": torch.full((3, 32, 32), i % 251, dtype=torch.uint8),
                "labels": torch.tensor([float(i), 1.0])}  # fmt: skip


def _check(batch):
    for d in batch:
        i = d["image_id"]
        assert torch.equal(d["image"], torch.full((3, 32, 32), i % 251, dtype=torch.uint8)), i
        assert d["labels"].tolist() == [float(i), 1.0]


def test_workers_reuse_a_buffer_only_after_the_batch_is_dropped():
    loader = torch.utils.data.DataLoader(_Films(), batch_size=8, num_workers=2,
                                         collate_fn=pack_batch)  # fmt: skip
    held, held_slots, seen = [], set(), []
    for k, packed in enumerate(loader):
        key = (packed.flags.untyped_storage().data_ptr(), packed.slot)
        assert packed.slot is not None
        assert key not in held_slots  # a buffer the training process holds is never reused
        batch = unpack_batch(packed)
        seen.append(key)
        if k < 3:  # keep the first batches (and one numpy view of an image) alive
            held.append((batch, batch[0]["image"][0].numpy()))
            held_slots.add(key)
        del packed, batch
        gc.collect()
    for batch, array in held:  # still intact after 47 more batches through the same workers
        _check(batch)
        assert (array == batch[0]["image_id"] % 251).all()
    assert len(seen) == 50
    assert len(set(seen)) < len(seen)  # dropped batches' buffers were used again


def test_packed_loader_yields_the_mappers_own_outputs(tiny_dataset):
    """The trainer's loader without aspect-ratio grouping (2 workers, packed batches) gives,
    for every film, what the mapper gives for it in this process."""
    from detectron2.data import DatasetCatalog

    from cxr.engine.trainer import Trainer

    cfg = get_cfg()
    cfg.merge_from_list(["DATASETS.TRAIN", (tiny_dataset,), "SOLVER.IMS_PER_BATCH", 2,
                         "DATALOADER.NUM_WORKERS", 2, "DATALOADER.ASPECT_RATIO_GROUPING", False,
                         "DATALOADER.SAMPLER_TRAIN", "TrainingSampler", "INPUT.RANDOM_FLIP",
                         "none", "INPUT.MIN_SIZE_TRAIN", (48,), "INPUT.MAX_SIZE_TRAIN", 48,
                         "DATALOADER.FILTER_EMPTY_ANNOTATIONS", False])  # fmt: skip
    loader = Trainer.build_train_loader(cfg)
    assert isinstance(loader, PackedBatchLoader)
    mapper = build_mapper(cfg, True)
    want = {d["image_id"]: mapper(d) for d in DatasetCatalog.get(tiny_dataset)}
    batches = iter(loader)
    for _ in range(6):
        batch = next(batches)
        assert len(batch) == 2
        for d in batch:
            ref = want[d["image_id"]]
            assert torch.equal(d["image"], ref["image"])
            assert torch.equal(d["instances"].gt_boxes.tensor, ref["instances"].gt_boxes.tensor)


@pytest.mark.parametrize("grouping, workers", [(True, 2), (False, 0)])
def test_loaders_that_cannot_pack_are_detectron2s(tiny_dataset, grouping, workers):
    from cxr.engine.trainer import Trainer

    cfg = get_cfg()
    cfg.merge_from_list(["DATASETS.TRAIN", (tiny_dataset,), "SOLVER.IMS_PER_BATCH", 2,
                         "DATALOADER.NUM_WORKERS", workers, "DATALOADER.ASPECT_RATIO_GROUPING",
                         grouping, "DATALOADER.FILTER_EMPTY_ANNOTATIONS", False])  # fmt: skip
    loader = Trainer.build_train_loader(cfg)
    assert not isinstance(loader, PackedBatchLoader)
    batch = next(iter(loader))
    assert len(batch) == 2 and all(d["image"].dtype == torch.uint8 for d in batch)
    assert np.isfinite([d["image"].float().mean().item() for d in batch]).all()

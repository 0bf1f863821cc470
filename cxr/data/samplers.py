"""Training samplers chosen by ``cfg.DATALOADER.SAMPLER_TRAIN``, and resumable data order.

Registry ``SAMPLER_REGISTRY`` maps a name to ``builder(cfg, dataset_dicts) -> Sampler``:

* ``TrainingSampler``: detectron2's shuffled infinite stream;
* ``RepeatFactorTrainingSampler``: detectron2's class-balanced repeat-factor sampling
  (``DATALOADER.REPEAT_THRESHOLD``);
* ``NegativeRatioSampler``: each drawn index is a negative (image without boxes) with
  probability ``DATALOADER.NEGATIVE_FRACTION``, otherwise a positive; each pool is shuffled.

Every sampler is wrapped in :class:`ResumableSampler`, a checkpointable that keeps the seed
and skips the indices already consumed, so ``--resume`` continues the same data order.
"""
from __future__ import annotations

import itertools
from typing import Iterator, Sequence

import torch
from detectron2.data.samplers import RepeatFactorTrainingSampler, TrainingSampler
from detectron2.utils import comm
from torch.utils.data import Sampler

from ..registry import NamedRegistry

__all__ = ["SAMPLER_REGISTRY", "NegativeRatioSampler", "ResumableSampler", "build_train_sampler"]

SAMPLER_REGISTRY = NamedRegistry("CXR_SAMPLER")
SAMPLER_REGISTRY.__doc__ = "Training samplers by cfg.DATALOADER.SAMPLER_TRAIN."


class NegativeRatioSampler(Sampler):
    """Infinite index stream with a fixed expected fraction of negative images.

    Args:
        is_negative: per dataset index, True when the image has no annotations.
        negative_fraction: probability that a drawn index is a negative, in [0, 1].
        seed: shared across ranks; rank ``r`` of ``w`` takes every ``w``-th index from ``r``.
    """

    def __init__(self, is_negative: Sequence[bool], negative_fraction: float, seed: int):
        if not 0.0 <= negative_fraction <= 1.0:
            raise ValueError(
                f"DATALOADER.NEGATIVE_FRACTION must be in [0, 1], got {negative_fraction}"
            )
        flags = torch.as_tensor(list(is_negative), dtype=torch.bool)
        self._neg = torch.nonzero(flags).flatten()
        self._pos = torch.nonzero(~flags).flatten()
        if len(self._pos) == 0 and negative_fraction < 1.0:
            raise ValueError("NegativeRatioSampler: the training set has no image with boxes")
        if len(self._neg) == 0 and negative_fraction > 0.0:
            negative_fraction = 0.0  # nothing to draw from; fall back to positives only
        self._fraction = negative_fraction
        self._seed = int(seed)
        self._rank = comm.get_rank()
        self._world_size = comm.get_world_size()

    def _pool_stream(self, pool: torch.Tensor, g: torch.Generator) -> Iterator[int]:
        while True:
            yield from pool[torch.randperm(len(pool), generator=g)].tolist()

    def _infinite_indices(self) -> Iterator[int]:
        g = torch.Generator()
        g.manual_seed(self._seed)
        pos = self._pool_stream(self._pos, g) if len(self._pos) else iter(())
        neg = self._pool_stream(self._neg, g) if len(self._neg) else iter(())
        while True:
            draws = torch.rand(1024, generator=g) < self._fraction
            for is_neg in draws.tolist():
                yield next(neg) if is_neg else next(pos)

    def __iter__(self) -> Iterator[int]:
        yield from itertools.islice(self._infinite_indices(), self._rank, None, self._world_size)


class ResumableSampler(Sampler):
    """Wraps an infinite sampler; skips ``start`` indices of this rank's stream on resume.

    A checkpointable: its state is the sampler seed and the number of indices consumed per rank
    (``iteration * images per batch per rank``), restored by ``--resume``.
    """

    def __init__(self, sampler: Sampler, images_per_rank_batch: int):
        self.sampler = sampler
        self.images_per_rank_batch = images_per_rank_batch
        self.start = 0

    def set_start_iter(self, start_iter: int) -> None:
        self.start = start_iter * self.images_per_rank_batch

    def state_dict(self) -> dict:
        return {"seed": int(getattr(self.sampler, "_seed", 0))}

    def load_state_dict(self, state: dict) -> None:
        # detectron2's TrainingSampler / RepeatFactorTrainingSampler and ours keep the shuffle
        # seed in ``_seed``; restoring it reproduces the stream of the interrupted run.
        self.sampler._seed = int(state["seed"])

    def __iter__(self) -> Iterator[int]:
        yield from itertools.islice(iter(self.sampler), self.start, None)


def _seed(cfg) -> int:
    return cfg.SEED if cfg.SEED >= 0 else comm.shared_random_seed()


@SAMPLER_REGISTRY.register_as("TrainingSampler")
def _build_training(cfg, dataset_dicts):
    return TrainingSampler(len(dataset_dicts), seed=_seed(cfg))


@SAMPLER_REGISTRY.register_as("RepeatFactorTrainingSampler")
def _build_repeatfactortraining(cfg, dataset_dicts):
    factors = RepeatFactorTrainingSampler.repeat_factors_from_category_frequency(
        dataset_dicts, cfg.DATALOADER.REPEAT_THRESHOLD
    )
    return RepeatFactorTrainingSampler(factors, seed=_seed(cfg))


@SAMPLER_REGISTRY.register_as("NegativeRatioSampler")
def _build_negativeratio(cfg, dataset_dicts):
    flags = [len(d.get("annotations", [])) == 0 for d in dataset_dicts]
    return NegativeRatioSampler(flags, cfg.DATALOADER.NEGATIVE_FRACTION, seed=_seed(cfg))


def build_train_sampler(cfg, dataset_dicts) -> ResumableSampler:
    """The sampler named by ``cfg.DATALOADER.SAMPLER_TRAIN``, wrapped to be resumable."""
    name = cfg.DATALOADER.SAMPLER_TRAIN
    try:
        builder = SAMPLER_REGISTRY.get(name)
    except KeyError:
        raise KeyError(
            f"DATALOADER.SAMPLER_TRAIN={name!r} is not one of {SAMPLER_REGISTRY.names()}"
        ) from None
    per_rank = cfg.SOLVER.IMS_PER_BATCH // comm.get_world_size()
    return ResumableSampler(builder(cfg, dataset_dicts), per_rank)

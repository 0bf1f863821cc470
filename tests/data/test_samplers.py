"""Training samplers: negative fraction, rank shards, resumable data order, the registry."""
from __future__ import annotations

import itertools

import pytest
from detectron2.config import get_cfg

from cxr.data.samplers import (
    SAMPLER_REGISTRY,
    NegativeRatioSampler,
    ResumableSampler,
    build_train_sampler,
)


def test_negative_ratio_sampler_fraction_and_rank_shards():
    flags = [i % 5 == 0 for i in range(100)]  # 20 negatives
    sampler = NegativeRatioSampler(flags, 0.25, seed=3)
    drawn = list(itertools.islice(iter(sampler), 8000))
    frac = sum(flags[i] for i in drawn) / len(drawn)
    assert abs(frac - 0.25) < 0.02
    # Two ranks take alternating positions of the same stream: disjoint, together the whole.
    full = list(itertools.islice(sampler._infinite_indices(), 200))
    ranks = []
    for r in range(2):
        s = NegativeRatioSampler(flags, 0.25, seed=3)
        s._rank, s._world_size = r, 2
        ranks.append(list(itertools.islice(iter(s), 100)))
    assert ranks[0] == full[0::2] and ranks[1] == full[1::2]


def test_resumable_sampler_skips_consumed_indices():
    flags = [False] * 10
    base = NegativeRatioSampler(flags, 0.0, seed=1)
    wrapped = ResumableSampler(base, images_per_rank_batch=3)
    full = list(itertools.islice(iter(wrapped), 30))
    wrapped.set_start_iter(4)
    assert list(itertools.islice(iter(wrapped), 18)) == full[12:30]
    other = ResumableSampler(NegativeRatioSampler(flags, 0.0, seed=99), 3)
    other.load_state_dict(wrapped.state_dict())
    assert list(itertools.islice(iter(other), 30)) == full


def test_unknown_sampler_names_the_key_and_the_choices():
    cfg = get_cfg()
    cfg.DATALOADER.SAMPLER_TRAIN = "Nope"
    with pytest.raises(KeyError, match="SAMPLER_TRAIN='Nope'.*NegativeRatioSampler"):
        build_train_sampler(cfg, [{"annotations": []}])
    assert "TrainingSampler" in SAMPLER_REGISTRY

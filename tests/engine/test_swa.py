"""SWA: running mean and BN statistics against hand computation; a Trainer run writes it."""

from __future__ import annotations

import os

import torch
from torch import nn

from cxr.engine import Trainer
from cxr.engine.swa import WeightAverage, recompute_bn_statistics

from .helpers import tiny_cfg


def test_weight_average_is_the_plain_mean_of_snapshots():
    model = nn.Sequential(nn.Linear(2, 2), nn.BatchNorm1d(2))
    avg = WeightAverage()
    snaps = []
    for k in range(3):
        with torch.no_grad():
            model[0].weight.fill_(float(k * k))
        model[1].num_batches_tracked.fill_(k + 5)
        snaps.append(model[0].weight.clone())
        avg.add(model)
    assert torch.allclose(avg.state["0.weight"], torch.stack(snaps).mean(0))  # (0 + 1 + 4) / 3
    assert int(avg.state["1.num_batches_tracked"]) == 7  # integer buffers: the last value


class _BNModel(nn.Module):
    def __init__(self):
        super().__init__()
        self.bn = nn.BatchNorm1d(3)

    def forward(self, batch):
        return {"loss": self.bn(batch).sum()}


def test_bn_statistics_are_the_mean_over_the_batches():
    g = torch.Generator().manual_seed(0)
    batches = [torch.randn(8, 3, generator=g) * (i + 1) + i for i in range(4)]
    model = _BNModel()
    model.bn.running_mean.fill_(99.0)
    assert recompute_bn_statistics(model, iter(batches), 3) == 3
    expected = torch.stack([b.mean(0) for b in batches[:3]]).mean(0)
    assert torch.allclose(model.bn.running_mean, expected, atol=1e-6)
    var = torch.stack([b.var(0, unbiased=True) for b in batches[:3]]).mean(0)
    assert torch.allclose(model.bn.running_var, var, atol=1e-5)
    assert model.bn.momentum == 0.1  # restored


def test_trainer_writes_and_evaluates_swa_weights(tiny_dataset, tmp_path):
    out = str(tmp_path / "run")
    cfg = tiny_cfg(
        tiny_dataset,
        out,
        6,
        "SOLVER.SWA.ENABLED",
        "True",
        "SOLVER.SWA.START",
        "0.5",
        "SOLVER.SWA.PERIOD",
        "1",
        "SOLVER.SWA.BN_BATCHES",
        "2",
        "TEST.BEST_METRIC",
        "",
    )
    trainer = Trainer(cfg)
    trainer.resume_or_load(resume=False)
    trainer.train()
    ckpt = torch.load(os.path.join(out, "model_swa.pth"), weights_only=True)
    assert ckpt["swa"]["snapshots"] == 3 and ckpt["swa"]["bn_batches"] == 2  # iterations 3, 4, 5
    final = torch.load(os.path.join(out, "model_final.pth"), weights_only=True)["model"]
    key = "backbone.bottom_up.stem.conv1.weight"
    assert not torch.equal(ckpt["model"][key], final[key])
    assert torch.equal(trainer.model.state_dict()[key], final[key])  # live weights restored
    assert os.path.isdir(os.path.join(out, "inference_swa", tiny_dataset))

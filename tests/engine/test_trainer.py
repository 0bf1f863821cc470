"""cxr.engine.Trainer: resume reproduces an uninterrupted run, EMA, best checkpoint."""
from __future__ import annotations

import os

import pytest
import torch
from detectron2.utils.env import seed_all_rng

from cxr.engine import Trainer
from cxr.engine.ema import ModelEMA, ema_swapped

from .helpers import tiny_cfg


def _train(cfg, resume=False):
    seed_all_rng(cfg.SEED)  # as tools/train_net.py's default_setup does
    trainer = Trainer(cfg)
    trainer.resume_or_load(resume=resume)
    trainer.train()
    return trainer


def _final_state(out):
    return torch.load(os.path.join(out, "model_final.pth"), map_location="cpu", weights_only=True)


def test_resume_reproduces_uninterrupted_run(tiny_dataset, tmp_path):
    extra = ("MODEL.EMA.ENABLED", "True", "SOLVER.CHECKPOINT_PERIOD", "2")
    straight = str(tmp_path / "straight")
    _train(tiny_cfg(tiny_dataset, straight, 4, *extra))
    split = str(tmp_path / "split")
    _train(tiny_cfg(tiny_dataset, split, 2, *extra))
    _train(tiny_cfg(tiny_dataset, split, 4, *extra), resume=True)

    a, b = _final_state(straight), _final_state(split)
    assert a["iteration"] == b["iteration"] == 3
    assert a["ema"]["updates"] == b["ema"]["updates"] == 4
    for key in a["model"]:
        torch.testing.assert_close(a["model"][key], b["model"][key], rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(a["ema"]["weights"][key], b["ema"]["weights"][key])
    assert a["data_order"] == b["data_order"]


def test_ema_update_rule_hand_computed():
    model = torch.nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        model.weight.fill_(1.0)
    ema = ModelEMA(model, decay=0.5)
    with torch.no_grad():
        model.weight.fill_(3.0)
    ema.update(model)  # n=0: d = min(0.5, 1/10) = 0.1 -> 0.1*1 + 0.9*3 = 2.8
    assert ema.state["weight"].item() == pytest.approx(2.8)
    ema.update(model)  # n=1: d = min(0.5, 2/11) -> 2.8*2/11 + 3*9/11
    assert ema.state["weight"].item() == pytest.approx(2.8 * 2 / 11 + 3 * 9 / 11)
    with ema_swapped(model, ema):
        assert model.weight.item() == pytest.approx(ema.state["weight"].item())
    assert model.weight.item() == 3.0


def test_a_class_count_other_than_the_data_sets_stops_before_training(tiny_dataset, tmp_path):
    """A 90-class config (a COCO conversion's YAML) on 2-class data: the Trainer stops naming
    both counts before any iteration runs or checkpoint is written; eval-only too."""
    cfg = tiny_cfg(tiny_dataset, str(tmp_path), 2, "MODEL.RETINANET.NUM_CLASSES", "90")
    with pytest.raises(ValueError, match=r"90 classes but data set cxr_test_tiny has 2 \(a, b\)"):
        Trainer(cfg)
    with pytest.raises(ValueError, match="has 90 classes but data set cxr_test_tiny has 2"):
        Trainer.eval_only(cfg)
    assert not any(f.endswith(".pth") for f in os.listdir(tmp_path))

"""Training under faults: a file that stops decoding mid-run (SKIP_BAD_IMAGES on and off), and
a NaN loss (stops with the iteration and losses named; the last good checkpoint stays usable).

SIGKILL during training and during a checkpoint write, then ``--resume``, is covered by
``tests/engine/test_checkpoint.py`` (not repeated here).
"""
from __future__ import annotations

import logging
import os

import pytest
import torch
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.engine import HookBase
from detectron2.utils.env import seed_all_rng

from cxr.data.io import ImageReadError
from cxr.engine import Trainer
from cxr.engine.checkpoint import CXRCheckpointer

from ..conftest import write_tiny_images
from ..engine.helpers import tiny_cfg


def _dataset(tmp_path, name: str) -> list[dict]:
    dicts = write_tiny_images(str(tmp_path / "img"), n=4)
    if name in DatasetCatalog.list():
        DatasetCatalog.remove(name)
        MetadataCatalog.remove(name)
    DatasetCatalog.register(name, lambda: dicts)
    MetadataCatalog.get(name).set(thing_classes=["a", "b"], evaluator_type="coco")
    return dicts


class _CorruptAfterFirstStep(HookBase):
    """Truncates ``path`` after iteration 0, as a file changing under a long run."""

    def __init__(self, path: str):
        self.path = path

    def after_step(self):
        if self.trainer.iter == 0:
            with open(self.path, "r+b") as f:
                f.truncate(40)  # PNG signature + IHDR only: the header reads, decoding fails


def _trainer(cfg, *hooks):
    seed_all_rng(cfg.SEED)
    trainer = Trainer(cfg)
    trainer.register_hooks(list(hooks))
    trainer.resume_or_load(resume=False)
    return trainer


NO_TEST = ("DATASETS.TEST", "()", "SOLVER.CHECKPOINT_PERIOD", "1")


def test_bad_image_mid_training_skipped_counted_and_training_finishes(tmp_path, caplog):
    dicts = _dataset(tmp_path, "cxr_rel_skip")
    bad = dicts[1]["file_name"]
    cfg = tiny_cfg("cxr_rel_skip", str(tmp_path / "out"), 5, "DATALOADER.SKIP_BAD_IMAGES", "True",
                   *NO_TEST)  # fmt: skip
    trainer = _trainer(cfg, _CorruptAfterFirstStep(bad))
    with caplog.at_level(logging.WARNING, logger="cxr.data.mapper"):
        trainer.train()
    final = torch.load(tmp_path / "out" / "model_final.pth", map_location="cpu", weights_only=True)
    assert final["iteration"] == 4
    skips = [r.getMessage() for r in caplog.records if "skipping unreadable image" in r.getMessage()]
    assert skips and all(os.path.basename(bad) in m for m in skips)
    assert f"({len(skips)} so far in this process)" in skips[-1]  # counted


def test_bad_image_mid_training_stops_with_the_file_named(tmp_path):
    dicts = _dataset(tmp_path, "cxr_rel_noskip")
    bad = dicts[1]["file_name"]
    cfg = tiny_cfg("cxr_rel_noskip", str(tmp_path / "out"), 5, *NO_TEST)
    trainer = _trainer(cfg, _CorruptAfterFirstStep(bad))
    with pytest.raises(ImageReadError) as e:
        trainer.train()
    assert e.value.file == bad and bad in str(e.value)
    assert not os.path.exists(tmp_path / "out" / "model_final.pth")


def test_nan_loss_stops_with_iteration_and_losses_and_keeps_last_good_checkpoint(tmp_path):
    _dataset(tmp_path, "cxr_rel_nan")
    out = tmp_path / "out"
    cfg = tiny_cfg("cxr_rel_nan", str(out), 4, *NO_TEST)
    trainer = _trainer(cfg)
    model = trainer.model
    forward = model.forward
    nan_at = 2

    def poisoned(batched_inputs):
        losses = forward(batched_inputs)
        if model.training and trainer.iter == nan_at:
            losses["loss_cls"] = losses["loss_cls"] * float("nan")
        return losses

    model.forward = poisoned
    with pytest.raises(FloatingPointError) as e:
        trainer.train()
    msg = str(e.value)
    assert f"iteration={nan_at}" in msg and "loss_cls" in msg and "nan" in msg
    assert not (out / "model_final.pth").exists()
    assert (out / "last_checkpoint").read_text() == f"model_{nan_at - 1:07d}.pth"
    ckpt = torch.load(out / f"model_{nan_at - 1:07d}.pth", map_location="cpu", weights_only=True)
    assert ckpt["iteration"] == nan_at - 1
    assert all(torch.isfinite(v).all() for v in ckpt["model"].values() if v.is_floating_point())
    # --resume would continue from it.
    fresh = Trainer.build_model(cfg)
    assert CXRCheckpointer(fresh, str(out)).resume_or_load("", resume=True)["iteration"] == nan_at - 1

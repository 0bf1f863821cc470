"""The effdet comparisons run on tiny sizes and report consistent rows (skipped without effdet)."""
from __future__ import annotations

import argparse
import sys

import pytest
import torch

from benchmarks import peers
from benchmarks.inference import synthetic_inputs


def _args(**kw):
    return argparse.Namespace(config_file="", opts=[], device="cpu", warmup=0, repeats=1,
                              input_size=64, **kw)  # fmt: skip


def test_missing_effdet_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "effdet", None)  # makes `import effdet` fail
    with pytest.raises(ImportError, match="make bench"):
        peers.import_effdet()


def test_effdet_targets_are_yxyx_and_one_based():
    inputs = synthetic_inputs(2, 100, 8, with_boxes=True)
    t = peers.effdet_targets(inputs)
    # synthetic boxes: XYXY fractions (0.1, 0.15, 0.45, 0.5) and (0.55, 0.3, 0.9, 0.8) of 100 px
    expected = torch.tensor([[15.0, 10.0, 50.0, 45.0], [30.0, 55.0, 80.0, 90.0]])
    assert torch.allclose(t["bbox"][0], expected) and torch.allclose(t["bbox"][1], expected)
    assert t["cls"].tolist() == [[1.0, 2.0], [2.0, 3.0]]  # classes 0,1 / 1,2 -> 1-based


@pytest.mark.parametrize(
    "task, peer_model",
    [
        ("inference_d0_vs_effdet_d0", "tf_efficientdet_d0"),
        ("inference_lite0_vs_effdet_lite0", "tf_efficientdet_lite0"),
    ],
)
def test_inference_comparisons(task, peer_model):
    pytest.importorskip("effdet")
    (row,) = getattr(peers, task)(_args())
    assert row["name"] == task and row["unit"] == "ms/image" and row["better"] == "lower"
    assert row["ratio"] == row["ours"] / row["peer"] and row["peer_model"] == peer_model
    assert row["input_size"] == 64 and row["threads"] == torch.get_num_threads()
    # both post-process: at score threshold 0 NMS leaves at most 100 boxes, and some
    assert 0 < row["ours_detections"] <= 100 and 0 < row["peer_detections"] <= 100
    # same architecture family: parameter counts within 2% of each other
    assert abs(row["ours_params"] / row["peer_params"] - 1) < 0.02


def test_train_step_comparison():
    pytest.importorskip("effdet")
    (row,) = peers.train_step_d0_vs_effdet_d0(_args(batch=2))
    assert row["name"] == "train_step_d0_vs_effdet_d0" and row["unit"] == "ms/iter"
    assert row["batch"] == 2 and row["ratio"] == row["ours"] / row["peer"]
    assert row["ours_last_loss"] > 0 and row["peer_last_loss"] > 0

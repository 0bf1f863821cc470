"""tools/lazyconfig_train_net.py on CPU: the lazy demo config trains like its YAML twin (same
weights), resumes, evaluates, and its saved config.yaml loads back."""

from __future__ import annotations

import os

import torch

from cxr.engine.defaults import load_any_config

from .util import REPO, load_tool

LAZY_DEMO = os.path.join(REPO, "configs/phantom/retinanet_demo.py")
YAML_DEMO = os.path.join(REPO, "configs/phantom/retinanet_demo.yaml")


def _lazy_args(dataset, out, max_iter, *extra, test=""):
    # Training runs without a test set (no end-of-training evaluation: cheaper); --eval-only
    # evaluates on ``test``.
    return ["--config-file", LAZY_DEMO, *extra, "train.device=cpu", "train.seed=7",
            f"train.output_dir={out}", f"train.max_iter={max_iter}", "train.checkpointer.period=2",
            "train.eval_period=0", "model.retinanet.num_classes=2", "optimizer.lr=0.001",
            "lr_multiplier.warmup_iters=0", f"dataloader.train.dataset.names=[{dataset}]",
            f"dataloader.test.dataset.names=[{test}]", "dataloader.train.num_workers=0",
            "dataloader.train.total_batch_size=2", "dataloader.train.mapper.input.min_size_train=[64]",
            "dataloader.train.mapper.input.max_size_train=64",
            "dataloader.train.mapper.input.min_size_test=64",
            "dataloader.train.mapper.input.max_size_test=64"]  # fmt: skip


def _yaml_args(dataset, out, max_iter):
    return ["--config-file", YAML_DEMO, "MODEL.DEVICE", "cpu", "SEED", "7", "OUTPUT_DIR", out,
            "SOLVER.MAX_ITER", str(max_iter), "SOLVER.CHECKPOINT_PERIOD", "2", "TEST.EVAL_PERIOD",
            "0", "MODEL.RETINANET.NUM_CLASSES", "2", "SOLVER.BASE_LR", "0.001",
            "SOLVER.WARMUP_ITERS", "0", "DATASETS.TRAIN", f"('{dataset}',)", "DATASETS.TEST",
            "()", "DATALOADER.NUM_WORKERS", "0", "SOLVER.IMS_PER_BATCH", "2",
            "INPUT.MIN_SIZE_TRAIN", "(64,)", "INPUT.MAX_SIZE_TRAIN", "64", "INPUT.MIN_SIZE_TEST",
            "64", "INPUT.MAX_SIZE_TEST", "64"]  # fmt: skip


def _weights(path):
    return torch.load(path, map_location="cpu", weights_only=True)["model"]


def test_lazy_demo_trains_like_yaml_resumes_and_evaluates(tiny_dataset, tmp_path):
    tool = load_tool("lazyconfig_train_net")
    train_net = load_tool("train_net")
    lazy_out, yaml_out = str(tmp_path / "lazy"), str(tmp_path / "yaml")
    tool.cli(_lazy_args(tiny_dataset, lazy_out, 2))
    train_net.cli(_yaml_args(tiny_dataset, yaml_out, 2))
    a, b = _weights(os.path.join(lazy_out, "model_final.pth")), _weights(
        os.path.join(yaml_out, "model_final.pth")
    )
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0, msg=k)
    # config.yaml is the resolved LazyConfig and loads back into the same CfgNode.
    saved = os.path.join(lazy_out, "config.yaml")
    back, lazy = load_any_config(saved)
    run, _ = load_any_config(LAZY_DEMO, _lazy_args(tiny_dataset, lazy_out, 2)[2:])
    assert lazy is not None and back.dump() == run.dump()
    # --resume continues at iteration 2 up to 4 (exact resume: the same path as train_net.py).
    tool.cli(_lazy_args(tiny_dataset, lazy_out, 4, "--resume"))
    state = torch.load(os.path.join(lazy_out, "model_final.pth"), map_location="cpu",
                       weights_only=True)  # fmt: skip
    assert state["iteration"] == 3 and "optimizer" in state
    ckpt = os.path.join(lazy_out, "model_final.pth")
    args = tool.argument_parser().parse_args(
        _lazy_args(tiny_dataset, lazy_out, 4, "--eval-only", test=tiny_dataset)
        + [f"train.init_checkpoint={ckpt}"]
    )
    results = tool.main(args)
    ap50 = results["bbox"]["AP50"]  # NaN when the barely trained model predicts nothing
    assert ap50 != ap50 or 0.0 <= ap50 <= 100.0

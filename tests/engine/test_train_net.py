"""tools/train_net.py end to end on CPU: train 2 iterations, resume, eval-only."""
from __future__ import annotations

import os
import subprocess
import sys

import torch

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(REPO, "tools"))

import train_net  # noqa: E402
from detectron2.engine import default_argument_parser  # noqa: E402

TINY_OPTS = [
    "MODEL.RESNETS.DEPTH", "18",
    "MODEL.RESNETS.RES2_OUT_CHANNELS", "64",
    "MODEL.RETINANET.NUM_CLASSES", "2",
    "INPUT.MIN_SIZE_TRAIN", "(64,)", "INPUT.MAX_SIZE_TRAIN", "64",
    "INPUT.MIN_SIZE_TEST", "64", "INPUT.MAX_SIZE_TEST", "64",
    "SOLVER.IMS_PER_BATCH", "2", "SOLVER.BASE_LR", "0.001", "SOLVER.WARMUP_ITERS", "0",
    "SOLVER.STEPS", "()", "DATALOADER.NUM_WORKERS", "0",
    "TEST.EVAL_PERIOD", "0",
]  # fmt: skip


def _args(out, dataset, max_iter, *extra):
    return [
        "--config-file", os.path.join(REPO, "configs/nih/retinanet_R_18_FPN.yaml"), *extra,
        *TINY_OPTS, "DATASETS.TRAIN", f"('{dataset}',)", "DATASETS.TEST", f"('{dataset}',)",
        "SOLVER.MAX_ITER", str(max_iter), "SOLVER.CHECKPOINT_PERIOD", "2", "OUTPUT_DIR", out,
    ]  # fmt: skip


def test_train_resume_eval_only(tiny_dataset, tmp_path):
    out = str(tmp_path / "run")
    train_net.cli(_args(out, tiny_dataset, 2))
    ckpt = os.path.join(out, "model_final.pth")
    assert os.path.isfile(ckpt)
    with open(os.path.join(out, "last_checkpoint")) as f:
        assert f.read().strip() == "model_final.pth"
    state = torch.load(ckpt, map_location="cpu", weights_only=True)
    assert state["iteration"] == 1  # detectron2 stores the last finished iteration (0-based)
    assert any(k.startswith("backbone.") for k in state["model"])

    # --resume continues at iteration 2 and trains to 4.
    train_net.cli(_args(out, tiny_dataset, 4, "--resume"))
    state = torch.load(os.path.join(out, "model_final.pth"), map_location="cpu", weights_only=True)
    assert state["iteration"] == 3
    assert os.path.isfile(os.path.join(out, "model_0000001.pth"))

    # --eval-only loads the checkpoint and returns COCO metrics for the dataset.
    argv = _args(out, tiny_dataset, 4, "--eval-only") + ["MODEL.WEIGHTS", ckpt]
    results = train_net.main(default_argument_parser().parse_args(argv))
    assert "bbox" in results and "AP" in results["bbox"]


def test_unsafe_yaml_refused_by_cli(tmp_path):
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.yaml"
    evil.write_text(f'MODEL:\n  WEIGHTS: !!python/object/apply:os.system ["touch {marker}"]\n')
    proc = subprocess.run(
        [sys.executable, os.path.join(REPO, "tools/train_net.py"), "--config-file", str(evil)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode != 0
    assert "refused" in proc.stderr and "evil.yaml" in proc.stderr
    assert not marker.exists()

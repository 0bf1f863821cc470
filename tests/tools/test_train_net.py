"""tools/train_net.py end to end on CPU: train 2 iterations, resume, eval-only."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import torch

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(REPO, "tools"))

import train_net  # noqa: E402

from ..engine.helpers import TINY_CONFIG, tiny_opts  # noqa: E402


def _args(out, dataset, max_iter, *extra):
    return ["--config-file", TINY_CONFIG, *extra, *tiny_opts(dataset, out, max_iter),
            "SOLVER.CHECKPOINT_PERIOD", "2"]  # fmt: skip


def test_train_resume_eval_only(tiny_dataset, tmp_path, monkeypatch):
    import termcolor

    out = str(tmp_path / "run")
    monkeypatch.setenv("FORCE_COLOR", "1")  # colours on the console as on a terminal
    termcolor.can_colorize.cache_clear()
    try:
        train_net.cli(_args(out, tiny_dataset, 2))
    finally:
        monkeypatch.delenv("FORCE_COLOR")
        termcolor.can_colorize.cache_clear()
    ckpt = os.path.join(out, "model_final.pth")
    assert os.path.isfile(ckpt)
    with open(os.path.join(out, "last_checkpoint")) as f:
        assert f.read().strip() == "model_final.pth"
    state = torch.load(ckpt, map_location="cpu", weights_only=True)
    assert state["iteration"] == 1  # detectron2 stores the last finished iteration (0-based)
    assert any(k.startswith("backbone.") for k in state["model"])
    # log.txt: cxr's own lines with timestamps, detectron2's, no ANSI colour codes (the config
    # and the instance histogram are coloured on the console), the model printed once
    log = open(os.path.join(out, "log.txt"), encoding="utf-8").read()
    assert re.search(r"^\[\d\d/\d\d \d\d:\d\d:\d\d\] cxr\.engine\.defaults INFO: ", log, re.M)
    assert "d2.engine.train_loop INFO: Starting training" in log or "Starting training" in log
    assert "Contents of args.config_file" in log  # highlighted by pygments on the console
    assert "\x1b[" not in log
    assert log.count("Model:\n") == 1

    # --resume continues at iteration 2 and trains to 4.
    train_net.cli(_args(out, tiny_dataset, 4, "--resume"))
    state = torch.load(os.path.join(out, "model_final.pth"), map_location="cpu", weights_only=True)
    assert state["iteration"] == 3
    assert os.path.isfile(os.path.join(out, "model_0000001.pth"))

    # --eval-only loads the checkpoint and returns COCO metrics for the dataset.
    argv = _args(out, tiny_dataset, 4, "--eval-only") + ["MODEL.WEIGHTS", ckpt]
    results = train_net.main(train_net.argument_parser().parse_args(argv))
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

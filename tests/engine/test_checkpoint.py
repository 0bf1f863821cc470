"""Crash safety: atomic checkpoints, SIGKILL + --resume, safe checkpoint loading."""
from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time

import pytest
import torch

from cxr.engine.checkpoint import CXRCheckpointer, UnsafeCheckpointError, load_model_weights

from ..payloads import OpenPayload
from .helpers import REPO, TINY_CONFIG, tiny_opts


def _model():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4))


def test_failed_save_keeps_previous_checkpoint(tmp_path, monkeypatch):
    model = _model()
    ckpt = CXRCheckpointer(model, str(tmp_path))
    ckpt.save("model_0000001", iteration=1)
    before = (tmp_path / "model_0000001.pth").read_bytes()

    def dying_save(obj, f, *a, **k):
        f.write(b"partial bytes of a checkpoint")
        raise KeyboardInterrupt  # as if killed mid-write

    monkeypatch.setattr(torch, "save", dying_save)
    with pytest.raises(KeyboardInterrupt):
        ckpt.save("model_0000001", iteration=2)
    monkeypatch.undo()
    assert (tmp_path / "model_0000001.pth").read_bytes() == before
    assert (tmp_path / "last_checkpoint").read_text() == "model_0000001.pth"
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]
    assert CXRCheckpointer(_model(), str(tmp_path)).resume_or_load("", resume=True)["iteration"] == 1


def test_stale_temporary_from_a_kill_is_removed(tmp_path):
    (tmp_path / ".model_final.pth.abc.tmp").write_bytes(b"half")
    CXRCheckpointer(_model(), str(tmp_path))
    assert not (tmp_path / ".model_final.pth.abc.tmp").exists()


def test_pickle_checkpoints_refused_unless_allowed(tmp_path):
    import pickle

    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pkl"

    path.write_bytes(pickle.dumps({"model": {}, "x": OpenPayload(marker)}))
    with pytest.raises(UnsafeCheckpointError, match="evil.pkl.*refused.*allow-pickle"):
        load_model_weights(_model(), str(path))
    assert not marker.exists()

    # A .pth carrying arbitrary objects is refused by torch.load(weights_only=True).
    evil_pth = tmp_path / "evil.pth"
    torch.save({"model": {}, "x": OpenPayload(marker)}, str(evil_pth))
    with pytest.raises(UnsafeCheckpointError, match="evil.pth"):
        load_model_weights(_model(), str(evil_pth))
    assert not marker.exists()

    # Plain weights as .pkl load with allow_pickle=True (detectron2's model-zoo format).
    good = tmp_path / "good.pkl"
    good.write_bytes(pickle.dumps({"model": {k: v.numpy() for k, v in _model().state_dict().items()},
                                   "__author__": "test"}))  # fmt: skip
    load_model_weights(_model(), str(good), allow_pickle=True)


def test_ema_weights_used_for_evaluation(tmp_path):
    model = _model()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    ema = {k: v + 1 if v.dtype.is_floating_point else v for k, v in state.items()}
    torch.save({"model": state, "ema": {"weights": ema, "updates": 3, "decay": 0.9}},
               str(tmp_path / "m.pth"))  # fmt: skip
    fresh = _model()
    load_model_weights(fresh, str(tmp_path / "m.pth"))
    torch.testing.assert_close(fresh[0].weight, state["0.weight"] + 1)
    load_model_weights(fresh, str(tmp_path / "m.pth"), use_ema=False)
    torch.testing.assert_close(fresh[0].weight, state["0.weight"])


def _train_cmd(images, out, max_iter, *extra):
    return [sys.executable, "-W", "ignore", "-m", "tests.engine.train_subprocess", str(images), "--",
            "--config-file", TINY_CONFIG, *extra,
            *tiny_opts("cxr_test_tiny", str(out), max_iter, "SOLVER.CHECKPOINT_PERIOD", "1")]  # fmt: skip


def test_sigkill_then_resume_reaches_final_iteration(tmp_path):
    out = tmp_path / "run"
    max_iter = 10
    proc = subprocess.Popen(_train_cmd(tmp_path / "img", out, max_iter), cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    deadline = time.time() + 240
    while not (out / "model_0000002.pth").exists():
        assert proc.poll() is None and time.time() < deadline, "training did not start"
        time.sleep(0.05)
    # A checkpoint is written every iteration: a random instant very likely hits a write.
    time.sleep(random.Random(0).uniform(0.0, 0.5))
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (out / "model_final.pth").exists()
    for name in os.listdir(out):
        if name.endswith(".pth"):  # every complete-named checkpoint loads
            torch.load(out / name, map_location="cpu", weights_only=True)
    tagged = (out / "last_checkpoint").read_text()
    killed_at = torch.load(out / tagged, weights_only=True)["iteration"]

    subprocess.run(_train_cmd(tmp_path / "img", out, max_iter, "--resume"), cwd=REPO, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=600)  # fmt: skip
    final = torch.load(out / "model_final.pth", map_location="cpu", weights_only=True)
    assert final["iteration"] == max_iter - 1 > killed_at
    log = (out / "log.txt").read_text()
    assert f"Starting training from iteration {killed_at + 1}" in log


def test_export_model_weights_keeps_only_weights(tmp_path):
    from cxr.engine.checkpoint import export_model_weights

    model = _model()
    ema = {k: v + 2 if v.dtype.is_floating_point else v for k, v in model.state_dict().items()}
    src = tmp_path / "model_final.pth"
    torch.save({"model": model.state_dict(), "ema": {"weights": ema, "updates": 1, "decay": 0.9},
                "optimizer": {"state": {}}, "iteration": 9}, str(src))  # fmt: skip
    meta = export_model_weights(str(src), str(tmp_path / "w.pth"), half=True)
    out = torch.load(tmp_path / "w.pth", weights_only=True)
    assert set(out) == {"model", "meta"} and meta["iteration"] == 9 and meta["ema"]
    assert out["model"]["0.weight"].dtype == torch.float16
    fresh = _model()
    load_model_weights(fresh, str(tmp_path / "w.pth"))
    torch.testing.assert_close(fresh[0].weight, (ema["0.weight"]).half().float())


def test_atomic_write_gives_plain_file_permissions(tmp_path):
    from cxr.fileio import write_text_atomic

    umask = os.umask(0o022)
    try:
        write_text_atomic(str(tmp_path / "m.json"), "{}")
        assert os.stat(tmp_path / "m.json").st_mode & 0o777 == 0o644
    finally:
        os.umask(umask)

"""tools/train_net.py as two "machines" on one host (gloo, torch.distributed), streaming shards.

Each machine is its own process (``--num-machines 2 --machine-rank R --dist-url tcp://...``),
as on a cluster; detectron2's launcher spawns one worker in each. Checked: both train from the
shard copy found under the data root, the ranks read disjoint shards that together cover the
set, rank 0 alone writes checkpoints, and ``--resume`` continues from the last one.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys

import torch

from tests.conftest import write_tiny_images
from tests.shards import write_shard_copy

from ..engine.helpers import TINY_CONFIG, tiny_opts

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TIMEOUT_S = 300
READER = re.compile(r"reader (\d+)/(\d+) \(rank (\d+), worker \d+\), epoch 0: shards \[(.*)\]")


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run_two_machines(root: str, out: str, max_iter: int, *extra: str) -> None:
    """Both machines to completion (or both killed at the timeout); asserts exit status 0."""
    port = _free_port()
    env = {**os.environ, "DETECTRON2_DATASETS": root, "OMP_NUM_THREADS": "1"}
    opts = tiny_opts("tiny_train@64-wds", out, max_iter, "DATASETS.TEST", "()",
                     "SOLVER.CHECKPOINT_PERIOD", "2", "SOLVER.IMS_PER_BATCH", "4")  # fmt: skip
    procs = []
    try:
        for rank in range(2):
            cmd = [sys.executable, os.path.join(REPO, "tools", "train_net.py"), "--config-file",
                   TINY_CONFIG, "--num-machines", "2", "--machine-rank", str(rank), "--dist-url",
                   f"tcp://127.0.0.1:{port}", *extra, *opts]  # fmt: skip
            procs.append(subprocess.Popen(cmd, env=env, cwd=REPO, start_new_session=True,
                                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT))  # fmt: skip
        logs = [p.communicate(timeout=TIMEOUT_S)[0].decode(errors="replace") for p in procs]
        for rank, (p, log) in enumerate(zip(procs, logs)):
            assert p.returncode == 0, f"machine {rank} failed:\n{log[-4000:]}"
    finally:
        for p in procs:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)  # the machine and the worker it spawned
                p.wait()


def _read(path: str) -> str:
    with open(path, encoding="utf-8") as f:
        return f.read()


def test_two_machines_gloo_stream_distinct_shards_rank0_checkpoints_and_resume(tmp_path):
    root = str(tmp_path / "data")
    dicts = write_tiny_images(str(tmp_path / "png"), n=8, size=64, seed=2)
    write_shard_copy(root, "tiny", 64, "tiny_train", dicts, shard_size=2)  # 4 shards
    out = str(tmp_path / "run")
    _run_two_machines(root, out, 3)

    logs = [_read(os.path.join(out, "log.txt")), _read(os.path.join(out, "log.txt.rank1"))]
    shards = {}
    for rank, log in enumerate(logs):
        (m,) = [m for m in READER.finditer(log)]
        assert (int(m.group(2)), int(m.group(3))) == (2, rank)
        shards[rank] = set(re.findall(r"shard-\d+\.tar", m.group(4)))
    assert not shards[0] & shards[1]
    assert shards[0] | shards[1] == {f"shard-{i:06d}.tar" for i in range(4)}
    assert "Saving checkpoint to" in logs[0] and "Saving checkpoint to" not in logs[1]
    assert "one epoch = 8 samples in 4 shards = 2.0 iterations" in logs[0]
    assert torch.load(os.path.join(out, "model_final.pth"), weights_only=True)["iteration"] == 2

    _run_two_machines(root, out, 5, "--resume")
    for rank, name in enumerate(("log.txt", "log.txt.rank1")):
        resumed = _read(os.path.join(out, name))[len(logs[rank]) :]
        assert "Data order resumed at iteration 3" in resumed
        assert ("Saving checkpoint to" in resumed) == (rank == 0)
    assert torch.load(os.path.join(out, "model_final.pth"), weights_only=True)["iteration"] == 4

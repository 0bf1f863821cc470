"""tools/benchmark.py runs a task by name, prints its rows and writes them as strict JSON."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_data_task_from_the_command_line(tmp_path):
    out = tmp_path / "bench" / "rows.json"
    env = {**os.environ, "CXR_BENCH_DATA_IMAGES": "4", "PYTHONPATH": REPO}
    cmd = [sys.executable, os.path.join(REPO, "tools", "benchmark.py"), "--task", "data",
           "--warmup", "1", "--repeats", "1", "--output", str(out)]  # fmt: skip
    # run from elsewhere: the tool finds benchmarks/ beside itself, not through the cwd
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    rows = json.loads(out.read_text())
    assert [r["name"] for r in rows] == ["mapper_vs_detectron2"] and rows[0]["images"] == 4
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == rows[0]
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(os.stat(out).st_mode) == 0o666 & ~umask

"""SIGKILL while evaluation output is written; stale partial files cleaned on the next run.

(SIGKILL during training / a checkpoint write + ``--resume``: tests/engine/test_checkpoint.py.)
"""
from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys

import numpy as np
import pytest

from ..engine.helpers import REPO


def _coco_files(tmp_path) -> tuple[str, str]:
    rng = np.random.default_rng(0)
    images = [{"id": i, "width": 512, "height": 512} for i in range(300)]
    anns, dets = [], []
    for i in range(300):
        for _ in range(2):
            x, y = rng.uniform(0, 400, 2)
            anns.append({"id": len(anns) + 1, "image_id": i, "category_id": int(rng.integers(1, 3)),
                         "bbox": [x, y, 40.0, 30.0], "area": 1200.0, "iscrowd": 0})  # fmt: skip
        for _ in range(20):  # a predictions.json of a few hundred kB
            x, y = rng.uniform(0, 400, 2)
            dets.append({"image_id": i, "category_id": int(rng.integers(1, 3)),
                         "bbox": [x, y, 40.0, 30.0], "score": float(rng.uniform())})  # fmt: skip
    gt = {"images": images, "annotations": anns,
          "categories": [{"id": 1, "name": "Mass"}, {"id": 2, "name": "Nodule"}]}  # fmt: skip
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    (tmp_path / "dt.json").write_text(json.dumps(dets))
    return str(tmp_path / "gt.json"), str(tmp_path / "dt.json")


def _assert_all_complete(out) -> dict:
    loaded = {}
    for name in sorted(os.listdir(out)):
        path = os.path.join(out, name)
        if name.startswith("."):
            continue  # a killed write's temporary (never read; removed by the next write)
        with open(path) as f:
            if name.endswith(".html"):
                loaded[name] = f.read()
            else:
                loaded[name] = json.load(f) if name.endswith(".json") else list(csv.DictReader(f))
    assert set(loaded) == {
        "metrics.json", "per_class.csv", "thresholds.json", "predictions.json", "report.html"
    }
    assert len(loaded["predictions.json"]) == 6000 and loaded["per_class.csv"]
    assert loaded["report.html"].rstrip().endswith("</html>")
    return loaded


@pytest.mark.parametrize("pause_on", ["predictions.json"])
def test_sigkill_during_evaluation_output_leaves_complete_files(tmp_path, pause_on):
    gt, dt = _coco_files(tmp_path)
    out = tmp_path / "eval"
    cmd = [sys.executable, "-W", "ignore", "-m", "tests.reliability.eval_output_child", gt, dt,
           str(out), pause_on]  # fmt: skip
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                            text=True)  # fmt: skip
    try:
        for line in proc.stdout:  # run 1 completes, run 2 pauses at pause_on's rename
            if line.strip() == f"WRITING {pause_on} 2":
                break
        else:
            pytest.fail(f"child exited with {proc.wait()} before writing {pause_on}")
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    partial = [n for n in os.listdir(out) if n.startswith(f".{pause_on}.") and n.endswith(".tmp")]
    assert partial, "the kill should have left the new bytes in a temporary file"
    _assert_all_complete(out)

    # The next evaluation removes the partial file and rewrites everything.
    from cxr.apps.evaluate import evaluate_files

    evaluate_files(gt, dt, str(out), plots=False, tensorboard=False, bootstrap=0)
    assert not [n for n in os.listdir(out) if n.startswith(".")]
    _assert_all_complete(out)

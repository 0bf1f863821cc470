"""The NIH walkthrough of docs/training.md, every command as written, on phantom images laid
out like the NIH release (DETECTRON2_DATASETS -> a folder with nih/ CSVs + images/), rendered
by the test itself: small films of a few patients, so that it runs on a fresh clone."""

from __future__ import annotations

import csv
import gzip
import json
import os
import re
import shlex
import shutil
import subprocess
import sys

import pytest

from cxr.data.phantom import generate_phantom_dataset

from .util import REPO

SHIPPED = os.path.join(REPO, "datasets", "nih")  # the real NIH annotation files
DOC = os.path.join(REPO, "docs", "training.md")
# A CPU-sized schedule appended to each model command as KEY VALUE overrides.
SMALL = {
    "train_net.py": "MODEL.DEVICE cpu SOLVER.MAX_ITER 4 SOLVER.IMS_PER_BATCH 2 "
    "SOLVER.WARMUP_ITERS 0 TEST.EVAL_PERIOD 4 DATALOADER.NUM_WORKERS 0 "
    "INPUT.MIN_SIZE_TRAIN (128,) INPUT.MAX_SIZE_TRAIN 128 INPUT.MIN_SIZE_TEST 128 "
    "INPUT.MAX_SIZE_TEST 128",
    "eval.py --config-file": "DATALOADER.NUM_WORKERS 0 INPUT.MIN_SIZE_TEST 128 "
    "INPUT.MAX_SIZE_TEST 128 MODEL.RETINANET.SCORE_THRESH_TEST 0.0",
    "predict.py": "INPUT.MIN_SIZE_TEST 128 INPUT.MAX_SIZE_TEST 128",
}


def walkthrough_commands() -> list[str]:
    """The tool commands of the "Real data" block of docs/training.md, continuations joined."""
    text = open(DOC, encoding="utf-8").read()
    block = re.search(r"## Real data: NIH.*?```bash\n(.*?)```", text, re.S).group(1)
    lines = block.replace("\\\n", " ").splitlines()
    return [" ".join(line.split()) for line in lines if line.startswith(".venv/bin/python")]


def cut_box_list(scratch: str, n_patients: int) -> str:
    """``scratch``/BBox_List_cut.csv: the shipped box rows of the first ``n_patients`` patients."""
    with gzip.open(os.path.join(SHIPPED, "BBox_List_2017.csv.gz"), "rt", newline="") as f:
        rows = list(csv.reader(f))
    keep = set(sorted({r[0].split("_")[0] for r in rows[1:]})[:n_patients])
    cut = os.path.join(scratch, "BBox_List_cut.csv")
    with open(cut, "w", newline="") as f:
        csv.writer(f).writerows([rows[0]] + [r for r in rows[1:] if r[0].split("_")[0] in keep])
    return cut


def _nih_layout(root: str, scratch: str, n_patients=24, negatives=8, size=128) -> None:
    """``root``/nih/ as the walkthrough expects it (gzipped CSVs + images/), rendered in
    ``scratch``: phantom films of ``size`` px on the shipped boxes of the first ``n_patients``
    box patients, plus ``negatives`` No Finding films of those patients."""
    cut = cut_box_list(scratch, n_patients)
    phantom = os.path.join(scratch, "phantom")
    generate_phantom_dataset(
        phantom, cut, os.path.join(SHIPPED, "Data_Entry_2017_v2020.csv.gz"),
        size=size, num_negatives=negatives, workers=1,
    )  # fmt: skip
    nih = os.path.join(root, "nih")
    os.makedirs(nih)
    for name in ("BBox_List_2017", "Data_Entry_2017_v2020"):
        with open(os.path.join(phantom, f"{name}.csv"), "rb") as src:
            with gzip.open(os.path.join(nih, f"{name}.csv.gz"), "wb") as dst:
                shutil.copyfileobj(src, dst)
    os.rename(os.path.join(phantom, "images"), os.path.join(nih, "images"))


def _run(cmd: str, cwd: str, env: dict) -> subprocess.CompletedProcess:
    argv = shlex.split(cmd)
    argv[0] = sys.executable
    argv[1] = os.path.join(REPO, argv[1])
    for key, extra in SMALL.items():
        if key in cmd:
            argv += shlex.split(extra)
    if "--config-file" in argv:
        i = argv.index("--config-file") + 1
        argv[i] = os.path.join(REPO, argv[i])
    proc = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"{cmd}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


def test_walkthrough_runs_as_written(tmp_path):
    from tests.data.dataformats import write_dicom

    cmds = walkthrough_commands()
    assert [c.split()[1] for c in cmds] == [
        "tools/train_net.py",
        "tools/eval.py",
        "tools/export_coco.py",
        "tools/eval.py",
        "tools/predict.py",
    ]
    data = tmp_path / "data"
    _nih_layout(str(data), str(tmp_path))
    work = tmp_path / "work"
    films = work / "films"
    films.mkdir(parents=True)
    test_image = sorted(os.listdir(data / "nih" / "images"))[0]
    shutil.copy(data / "nih" / "images" / test_image, films / test_image)
    import cv2

    write_dicom(str(films / "IM0001"), cv2.imread(str(films / test_image), cv2.IMREAD_GRAYSCALE))
    (films / "README.txt").write_text("not an image")
    env = {**os.environ, "DETECTRON2_DATASETS": str(data), "PYTHONPATH": REPO}
    env["OMP_NUM_THREADS"] = "1"
    for cmd in cmds:
        _run(cmd, str(work), env)
    run = work / "output" / "nih" / "efficientdet_d0"
    assert {"model_final.pth", "model_best.pth", "thresholds.json", "log.txt"} <= set(
        os.listdir(run)
    )
    thresholds = json.load(open(run / "thresholds.json"))
    assert min(thresholds["thresholds"].values()) > 0  # never 0.0 by accident
    assert "defaulted_reasons" in thresholds["meta"]
    log = open(run / "log.txt", encoding="utf-8").read()
    assert "cxr.data" in log and "\x1b[" not in log and log.count("Model:\n") == 1
    # model_best.pth holds model_final.pth's weights: one row, both names
    rows = list(csv.DictReader(open(work / "eval" / "nih_d0" / "checkpoints.csv")))
    assert len(rows) == 1 and rows[0]["same_weights"].endswith("model_best.pth")
    # predictions.json scored through the exported COCO GT gives the checkpoint's own numbers
    ckpt = json.load(open(work / "eval" / "nih_d0" / "model_final" / "metrics.json"))
    files = json.load(open(work / "eval" / "nih_d0_coco" / "metrics.json"))
    for k in ("AP", "AP50"):
        assert files["coco"][k] == pytest.approx(ckpt["coco"][k], abs=1e-12, nan_ok=True)
    # predict: the PNG and the extensionless DICOM are read; the text file is listed
    findings = list(csv.DictReader(open(work / "preds" / "findings.csv")))
    assert sorted(os.path.basename(r["file"]) for r in findings) == sorted(["IM0001", test_image])
    errors = list(csv.DictReader(open(work / "preds" / "errors.csv")))
    assert [os.path.basename(e["file"]) for e in errors] == ["README.txt"]

"""docs/pretrained.md, docs/two_stage.md, docs/deploy.md and docs/ensembles.md walked through as
a new user does, command by command as the pages write them, on a 128 px phantom rendered by the
test (a few patients), with CPU-sized schedules appended as KEY VALUE overrides. Every command
must succeed and print no warning other than those a user must act on.

Pages' commands that need the internet (weights fetched by name), the real NIH images or long
schedules are left out; inputs a page asks the user to download are made here with random weights
in the real formats. The tool commands of each page run in one process
(:mod:`tests.tools.walkthrough_driver`), ``tools/two_stage_phantom.sh`` as the pages run it.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys

import pytest

from .util import REPO

pytest.importorskip("onnxruntime", reason="docs/deploy.md's commands need onnxruntime")
effdet = pytest.importorskip("effdet", reason="docs/pretrained.md's conversion needs effdet")

DOCS = os.path.join(REPO, "docs")
SIZE = ["INPUT.MIN_SIZE_TEST", "128", "INPUT.MAX_SIZE_TEST", "128"]
PHANTOM = ["DATASETS.TRAIN", "('phantom_nih_train',)", "DATASETS.TEST", "('phantom_nih_test',)"]
# CPU-sized overrides appended to the model commands (keys a command sets itself are kept).
SMALL = {
    "train_net.py": ["MODEL.DEVICE", "cpu", "SOLVER.MAX_ITER", "2", "SOLVER.IMS_PER_BATCH", "2",
                     "SOLVER.WARMUP_ITERS", "0", "SOLVER.STEPS", "()", "TEST.EVAL_PERIOD", "0",
                     "DATALOADER.NUM_WORKERS", "0", "INPUT.MIN_SIZE_TRAIN", "(128,)",
                     "INPUT.MAX_SIZE_TRAIN", "128", *SIZE, "CXR.EVAL.BOOTSTRAP", "0", *PHANTOM],
    "eval.py": ["DATALOADER.NUM_WORKERS", "0", "CXR.EVAL.BOOTSTRAP", "0", *SIZE],
    "export.py": SIZE,
}  # fmt: skip
# Warnings a user must act on. The only one here is about the data: the test's phantom holds 30
# patients, so a split may lack a class (the full phantom and NIH sets have every class).
ALLOWED = [r"cxr\.data\.splits WARNING: split '\w+' has no patient with class id"]


def page_commands(page: str, inline: bool = False) -> list[str]:
    """The ``python tools/...`` lines of a page's code blocks (continuations joined, ``$E``
    expanded, ``[optional]`` brackets opened), in page order; with ``inline``, also the
    ``python tools/...`` spans of its text."""
    text = open(os.path.join(DOCS, page), encoding="utf-8").read()
    out = []
    blocks = re.findall(r"```[a-z]*\n(.*?)```", text, re.S)
    if inline:
        blocks += re.findall(r"`(python tools/[^`]*)`", re.sub(r"```.*?```", "", text, flags=re.S))
    for block in blocks:
        block = block.replace("\\\n", " ")
        env = dict(re.findall(r'^(\w+)="([^"]*)"$', block, re.M))
        for line in block.splitlines():
            line = line.split("  #")[0].strip()
            for k, v in env.items():
                line = line.replace(f"${k}", v)
            if line.startswith("python tools/") or "bash tools/" in line:
                out.append(" ".join(line.replace("[", "").replace("]", "").split()))
    return out


def _argv(cmd: str, previous: list[list[str]]) -> list[str]:
    argv = shlex.split(cmd)[1:]  # drop "python"
    if "..." in argv:  # "tools/export.py ... --format torchscript": the earlier export's args
        base = next(a for a in reversed(previous) if a[0] == argv[0])
        cut = base.index("--output")
        argv = base[:cut] + [a for a in argv[argv.index("...") + 1 :]]
    tool = os.path.basename(argv[0])
    given = set(argv)
    extra = SMALL.get(tool, [])
    if "--backend" in argv or "--config-file" not in argv:
        extra = []  # exported models keep their stored sizes; files mode takes no overrides
    pairs = [extra[i : i + 2] for i in range(0, len(extra), 2)]
    return argv + [x for k, v in pairs if k not in given for x in (k, v)]


def _workdir(tmp_path) -> tuple[str, dict]:
    """A working folder laid out like the repository for the pages' relative paths, with the
    phantom sets (128 px) under its ``datasets/`` and the files the pages download."""
    import torch
    import torchvision

    from cxr.data.phantom import generate_phantom_dataset
    from cxr.data.phantom_cls import generate_phantom_classification
    from tests.checkpoint.effdet_models import random_effdet

    from .test_real_data_walkthrough import cut_box_list

    work = tmp_path / "work"
    data = work / "datasets"
    data.mkdir(parents=True)
    for name in ("configs", "tools"):
        os.symlink(os.path.join(REPO, name), work / name)
    for name in ("weights", "nih", "prepare_phantom.py"):
        os.symlink(os.path.join(REPO, "datasets", name), data / name)
    os.symlink(sys.prefix, work / ".venv")
    generate_phantom_dataset(
        str(data / "phantom_nih"), cut_box_list(str(tmp_path), 30),
        os.path.join(REPO, "datasets", "nih", "Data_Entry_2017_v2020.csv.gz"), size=128,
        num_negatives=6, workers=1,
    )  # fmt: skip
    generate_phantom_classification(
        str(data / "phantom_nih_cls"), os.path.join(REPO, "datasets/nih/BBox_List_2017.csv.gz"),
        os.path.join(REPO, "datasets/nih/Data_Entry_2017_v2020.csv.gz"), 48, size=128, workers=1,
    )  # fmt: skip
    films = work / "films"
    films.mkdir()
    for f in sorted(os.listdir(data / "phantom_nih" / "images"))[:2]:
        shutil.copy(data / "phantom_nih" / "images" / f, films / f)
    torch.save(random_effdet("tf_efficientdet_d0", 128).state_dict(),
               work / "tf_efficientdet_d0_34-f153e0cf.pth")  # fmt: skip
    torch.save(torchvision.models.resnet50(weights=None).state_dict(), work / "resnet50-tv.pth")
    env = {**os.environ, "DETECTRON2_DATASETS": str(data), "PYTHONPATH": REPO}
    env["OMP_NUM_THREADS"] = "1"
    return str(work), env


def _run_tools(cmds: list[str], work: str, env: dict, name: str) -> list[dict]:
    argvs: list[list[str]] = []
    for c in cmds:
        argvs.append(_argv(c, argvs))
    path = os.path.join(work, f"{name}.json")
    json.dump(argvs, open(path, "w"))
    driver = os.path.join(REPO, "tests", "tools", "walkthrough_driver.py")
    proc = subprocess.run([sys.executable, driver, REPO, path, path + ".out"], cwd=work, env=env,
                          capture_output=True, text=True, timeout=900)  # fmt: skip
    report = json.load(open(path + ".out")) if os.path.isfile(path + ".out") else []
    assert proc.returncode == 0 and len(report) == len(argvs), proc.stderr[-3000:]
    for entry in report:
        assert entry["exit"] == 0, f"{entry['argv']}: {entry['error'][-3000:]}"
    return report


def _unexpected(warnings: list[str]) -> list[str]:
    return [w for w in warnings if not any(re.search(a, w) for a in ALLOWED)]


def test_pages_walk_through_on_the_phantom_without_warnings(tmp_path):
    work, env = _workdir(tmp_path)
    pretrained = page_commands("pretrained.md", inline=True)
    effdet_cmd = next(c for c in pretrained if "convert_weights.py effdet" in c)
    tv_cmd = next(c for c in pretrained if "convert_weights.py torchvision" in c)
    # the effdet and torchvision conversions (torchxrayvision and timm fetch by name), then the
    # page's COCO EfficientDet config, trained from the converted file on the phantom
    cmds = [effdet_cmd, tv_cmd, "python tools/train_net.py --config-file "
            "configs/nih/efficientdet_d0_coco.yaml OUTPUT_DIR output/d0_coco"]  # fmt: skip
    reports = _run_tools(cmds, work, env, "pretrained")

    # two_stage.md: the phantom script (tiny budgets), then its Grad-CAM evaluations
    two_stage = page_commands("two_stage.md")
    script = next(c for c in two_stage if "two_stage_phantom.sh" in c)
    tiny = {"SIZE": "128", "BATCH": "2", "CLS_ITERS": "2", "DET_ITERS": "2", "RECIPES": "0"}
    script_env = {**env, **tiny, "PATH": "/usr/bin:/bin"}  # no bare `python` on the PATH
    proc = subprocess.run(["bash", "tools/two_stage_phantom.sh"], cwd=work, env=script_env,
                          capture_output=True, text=True, timeout=900)  # fmt: skip
    assert script.endswith("bash tools/two_stage_phantom.sh")
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    assert "phantom_nih: kept the existing" in proc.stdout  # never re-rendered at 512 px
    assert json.load(open(os.path.join(work, "datasets/phantom_nih/phantom_manifest.json")))[
        "size"] == 128  # fmt: skip
    script_warnings = [ln for ln in (proc.stdout + proc.stderr).splitlines()
                       if "Warning" in ln or " WARNING" in ln]  # fmt: skip
    evals = [c for c in two_stage if c.startswith("python tools/eval.py") and "phantom" in c]
    assert len(evals) == 2
    reports += _run_tools(evals, work, env, "two_stage")

    deploy = list(dict.fromkeys(page_commands("deploy.md")))  # the page repeats one command
    assert [c.split()[1] for c in deploy] == ["tools/eval.py", "tools/export.py",
                                              "tools/predict.py", "tools/predict.py",
                                              "tools/eval.py", "tools/export.py"]  # fmt: skip
    reports += _run_tools(deploy, work, env, "deploy")
    assert os.path.isfile(os.path.join(work, "deploy_ts", "model.ts"))

    ensembles = page_commands("ensembles.md")  # the "Measured on the phantom" block
    first = next(i for i, c in enumerate(ensembles) if c.endswith("--output eval/base"))
    ensembles = ensembles[first : first + 7]
    assert ensembles[-1].endswith("--output eval/fused")
    reports += _run_tools(ensembles, work, env, "ensembles")

    logs = [os.path.join(r, f) for r, _, fs in os.walk(work) for f in fs if f.startswith("log.txt")]
    assert len(logs) >= 10 and not [p for p in logs if "\x1b[" in open(p, encoding="utf-8").read()]
    found = {" ".join(r["argv"]): _unexpected(r["warnings"]) for r in reports}
    found = {k: v for k, v in found.items() if v}
    assert not found and not _unexpected(script_warnings), (found, script_warnings)

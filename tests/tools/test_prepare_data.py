"""tools/prepare_data.py killed halfway (SIGKILL) and rerun finishes with the manifest of an
uninterrupted run; partial files are never used; exit status when nothing is written."""

from __future__ import annotations

import contextlib
import glob
import os
import signal
import subprocess
import sys
import time

import pytest
from detectron2.data import DatasetCatalog, MetadataCatalog

from cxr.data.datasets.builtin import register_all_cxr
from cxr.data.phantom_dicom import generate_phantom_dicoms
from cxr.data.prepare import prepare_datasets

from .util import REPO

BBOX = os.path.join(REPO, "datasets", "nih", "BBox_List_2017.csv.gz")
TOOL = os.path.join(REPO, "tools", "prepare_data.py")


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("kill_root"))
    generate_phantom_dicoms(os.path.join(root, "phantom_vindr"), BBOX, 10, height=1600,
                            width=1300)  # fmt: skip
    return root


def _run(root, *args, **kw):
    env = {**os.environ, "DETECTRON2_DATASETS": root, "PYTHONPATH": REPO + os.pathsep
           + os.environ.get("PYTHONPATH", "")}  # fmt: skip
    cmd = [sys.executable, TOOL, "--dataset", "phantom_vindr_all", "--size", "640", *args]
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, **kw)


def _kill_when(proc, ready, timeout=300.0) -> None:
    t0 = time.monotonic()
    while not ready():
        if proc.poll() is not None:
            pytest.fail(f"prepare_data.py ended before the kill:\n{proc.stdout.read().decode()}")
        if time.monotonic() - t0 > timeout:
            proc.kill()
            pytest.fail("prepare_data.py made no progress")
        time.sleep(0.005)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()


@contextlib.contextmanager
def _registered(root):
    """``phantom_vindr_*`` of ``root`` registered in this process for the block."""
    names = [n for n in DatasetCatalog.list() if n.startswith("phantom_vindr")]
    saved = [(n, DatasetCatalog[n], MetadataCatalog.get(n).as_dict()) for n in names]
    for n in names:
        DatasetCatalog.remove(n), MetadataCatalog.remove(n)
    try:
        register_all_cxr(root)
        yield
    finally:
        for n in [n for n in DatasetCatalog.list() if n.startswith("phantom_vindr")]:
            DatasetCatalog.remove(n), MetadataCatalog.remove(n)
        for n, fn, meta in saved:
            DatasetCatalog.register(n, fn)
            MetadataCatalog.get(n).set(**{k: v for k, v in meta.items() if k != "name"})


def _clean_manifest(root, out, fmt) -> bytes:
    with _registered(root):
        prepare_datasets(["phantom_vindr_all"], 640, fmt, root=root, output=out, shard_size=2)
    return open(os.path.join(out, "manifest.csv"), "rb").read()


@pytest.mark.parametrize("fmt", ["png", "wds"])
def test_killed_and_rerun_gives_the_manifest_of_a_clean_run(root, tmp_path, fmt):
    out = str(tmp_path / "copy")
    train = os.path.join(out, "phantom_vindr_train")
    if fmt == "png":
        ready = lambda: len(glob.glob(os.path.join(train, "images", "*.png"))) >= 2  # noqa: E731
    else:
        ready = lambda: os.path.isfile(os.path.join(train, "shard-000001.tar"))  # noqa: E731
    args = ("--format", fmt, "--output", out, "--workers", "1", "--shard-size", "2")
    _kill_when(_run(root, *args), ready)
    assert not os.path.isfile(os.path.join(out, "manifest.csv"))  # killed halfway
    done_index = glob.glob(os.path.join(out, "*", "index.json"))
    proc = _run(root, *args)
    log = proc.communicate(timeout=600)[0].decode()
    assert proc.returncode == 0, log
    assert "prepared now" in log and not glob.glob(
        os.path.join(out, "**", ".*.tmp"), recursive=True
    )
    assert set(done_index) <= set(glob.glob(os.path.join(out, "*", "index.json")))
    clean = _clean_manifest(root, str(tmp_path / "clean"), fmt)
    assert open(os.path.join(out, "manifest.csv"), "rb").read() == clean
    if fmt == "wds":  # complete shards are byte-identical to an uninterrupted run's
        for p in glob.glob(os.path.join(out, "*", "shard-*.tar")):
            rel = os.path.relpath(p, out)
            assert open(p, "rb").read() == open(os.path.join(tmp_path, "clean", rel), "rb").read()


def test_exit_status_when_nothing_is_written(tmp_path, capsys, monkeypatch):
    from .util import load_tool

    root = str(tmp_path)
    generate_phantom_dicoms(os.path.join(root, "phantom_vindr"), BBOX, 3, height=64, width=64)
    for f in glob.glob(os.path.join(root, "phantom_vindr", "train", "*.dicom")):
        data = open(f, "rb").read()
        open(f, "wb").write(data[: len(data) - 2000])  # header kept, pixel data cut short
    tool = load_tool("prepare_data")
    monkeypatch.setenv("DETECTRON2_DATASETS", root)
    with _registered(root):
        code = tool.main(["--dataset", "phantom_vindr_all", "--size", "640", "--workers", "1"])
    assert code == 1 and "nothing was written" in capsys.readouterr().err
    assert os.path.isfile(os.path.join(root, "phantom_vindr@640", "errors.csv"))

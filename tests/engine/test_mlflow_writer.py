"""MLflow tracking of a training run: params, metrics equal to metrics.json, artifacts, tags;
in the embedded local store and on a real ``mlflow server`` on loopback."""

from __future__ import annotations

import json
import math
import os
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

from cxr.engine.mlflow_writer import build_mlflow_writer, metric_name
from cxr.evaluation.medical import flat_results

from ..conftest import write_tiny_images
from ..tools.util import load_tool
from .helpers import TINY_CONFIG, tiny_cfg, tiny_opts


@pytest.fixture(scope="module")
def tiny_cxr_dataset(tmp_path_factory) -> str:
    """The tiny set with cxr's evaluator (metrics.json, thresholds.json, report.html)."""
    from detectron2.data import DatasetCatalog, MetadataCatalog

    name = "cxr_test_tiny_mlflow"
    if name not in DatasetCatalog.list():
        dicts = write_tiny_images(str(tmp_path_factory.mktemp("tiny_cxr")))
        DatasetCatalog.register(name, lambda: dicts)
        MetadataCatalog.get(name).set(thing_classes=["a", "b"], evaluator_type="cxr")
    return name


def _train(dataset, out, *mlflow_opts):
    opts = tiny_opts(dataset, out, 2, "CXR.EVAL.BOOTSTRAP", "0", "CXR.MLFLOW.ENABLED", "True",
                     "CXR.MLFLOW.EXPERIMENT", "tiny", *mlflow_opts)  # fmt: skip
    load_tool("train_net").cli(["--config-file", TINY_CONFIG, *opts])


def _nan_for_null(x):
    """metrics.json writes undefined values as null."""
    if isinstance(x, dict):
        return {k: _nan_for_null(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_nan_for_null(v) for v in x]
    return float("nan") if x is None else x


def _check_run(client, out, dataset):
    from mlflow.tracking import MlflowClient

    assert isinstance(client, MlflowClient)
    exp = client.get_experiment_by_name("tiny")
    (run,) = client.search_runs([exp.experiment_id])
    assert run.info.status == "FINISHED"
    assert run.info.run_name == os.path.basename(out)
    assert run.data.params["SOLVER.MAX_ITER"] == "2"
    assert run.data.params["DATASETS.TRAIN"] == f"('{dataset}',)"
    assert run.data.tags["cxr.version"]
    folder = os.path.join(out, "inference", dataset)
    metrics = json.load(open(os.path.join(folder, "metrics.json")))
    expected = flat_results(_nan_for_null(metrics), ["a", "b"])
    logged = run.data.metrics
    n = 0
    for k, v in expected.items():
        if math.isfinite(v):
            assert logged[metric_name(f"cxr/{k}")] == pytest.approx(v, abs=1e-12), k
            n += 1
    assert n >= 10 and "cxr/froc_sens_0.125fp" in logged
    assert "total_loss" in logged and "lr" in logged
    assert len(client.get_metric_history(run.info.run_id, "total_loss")) >= 1
    arts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"config.yaml", "eval"} <= arts
    ev = {a.path for a in client.list_artifacts(run.info.run_id, f"eval/{dataset}")}
    assert {f"eval/{dataset}/{f}" for f in ("metrics.json", "thresholds.json", "report.html")} <= ev
    got = client.download_artifacts(
        run.info.run_id, f"eval/{dataset}/metrics.json", str(out) + "_dl"
    )
    assert json.load(open(got)) == metrics
    return run


def test_local_store_run_equals_metrics_json(tiny_cxr_dataset, tmp_path):
    from mlflow.tracking import MlflowClient

    out = str(tmp_path / "run")
    _train(tiny_cxr_dataset, out)
    db = os.path.join(out, "mlflow", "mlflow.db")
    assert os.path.isfile(db)
    _check_run(MlflowClient("sqlite:///" + db), out, tiny_cxr_dataset)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_loopback_mlflow_server(tiny_cxr_dataset, tmp_path):
    from mlflow.tracking import MlflowClient

    port = _free_port()
    uri = f"http://127.0.0.1:{port}"
    cmd = [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port),
           "--workers", "1", "--backend-store-uri", f"sqlite:///{tmp_path}/mlflow.db",
           "--default-artifact-root", str(tmp_path / "art")]  # fmt: skip
    log = open(tmp_path / "server.log", "wb")
    server = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                urllib.request.urlopen(uri + "/health", timeout=2).read()
                break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    pytest.fail("mlflow server did not start:\n" + open(log.name).read()[-3000:])
                time.sleep(1)
        out = str(tmp_path / "run_srv")
        _train(tiny_cxr_dataset, out, "CXR.MLFLOW.TRACKING_URI", uri)
        assert not os.path.exists(os.path.join(out, "mlflow"))  # nothing in the local store
        _check_run(MlflowClient(uri), out, tiny_cxr_dataset)
    finally:
        os.killpg(server.pid, 15)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, 9)
            server.wait()
        log.close()


def test_missing_mlflow_names_the_package(monkeypatch, tmp_path, tiny_dataset):
    cfg = tiny_cfg(tiny_dataset, str(tmp_path), 1, "CXR.MLFLOW.ENABLED", "True")
    for m in [m for m in sys.modules if m == "mlflow" or m.startswith("mlflow.")]:
        monkeypatch.delitem(sys.modules, m)
    monkeypatch.setitem(sys.modules, "mlflow", None)
    with pytest.raises(ImportError, match="needs the mlflow package.*cxr\[experiments\]"):
        build_mlflow_writer(cfg)
    assert build_mlflow_writer(tiny_cfg(tiny_dataset, str(tmp_path), 1)) is None

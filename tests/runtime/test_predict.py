"""tools/predict.py on an exported model without torch (cxr_runtime) against the cxr path
(``--config-file``): the same output files, and no torch / detectron2 / cxr in the process."""
from __future__ import annotations

import csv
import json
import os
import subprocess
import sys

import cv2
import numpy as np
import pytest

from cxr_runtime.operating_points import save_thresholds

from ..data.dataformats import write_dicom
from ..export.conftest import DEMO_CONFIG, phantom_images  # noqa: F401
from ..tools.util import REPO, load_tool

PHANTOM_CLASSES = ["Atelectasis", "Cardiomegaly", "Effusion", "Infiltrate", "Mass", "Nodule",
                   "Pneumonia", "Pneumothorax"]  # fmt: skip
THRESHOLDS = {"Effusion": 0.6, "Infiltrate": 0.2}  # the others: CXR.EVAL.CM_THRESHOLD

# Runs tools/predict.py's main in a fresh interpreter, then lists the heavy packages it loaded.
_TORCH_FREE = """import importlib.util, json, sys
spec = importlib.util.spec_from_file_location("predict_tool", sys.argv[1])
tool = importlib.util.module_from_spec(spec)
spec.loader.exec_module(tool)
tool.main(sys.argv[2:])
print(json.dumps(sorted({m.split(".")[0] for m in sys.modules} & {"torch", "torchvision",
      "detectron2", "cxr", "fvcore", "pandas", "matplotlib"})))
"""


@pytest.fixture(scope="module")
def exported(demo_model, tmp_path_factory):
    """The demo RetinaNet exported with the phantom class names and two operating points."""
    from cxr.export.exporter import export_model

    cfg, model = demo_model
    out = tmp_path_factory.mktemp("export")
    return export_model(cfg, model, str(out), class_names=PHANTOM_CLASSES, thresholds=THRESHOLDS)


@pytest.fixture(scope="module")
def demo_model():
    from cxr.engine.inference import load_torch_model
    from cxr.config import load_config

    from ..export.conftest import DEMO_WEIGHTS

    cfg = load_config(DEMO_CONFIG, ["MODEL.DEVICE", "cpu"])
    return cfg, load_torch_model(cfg, DEMO_WEIGHTS)[0]


@pytest.fixture
def inputs(tmp_path, phantom_images):  # noqa: F811
    """Two phantom PNGs, one as an extensionless 16-bit DICOM, and a text file."""
    root = tmp_path / "in"
    root.mkdir()
    for i, img in enumerate(phantom_images[:2]):
        cv2.imwrite(str(root / f"img{i}.png"), img)
    film = phantom_images[2].astype(np.uint16) * 16 + 100
    write_dicom(str(root / "IM0003"), film, window=(2148, 4096))
    (root / "notes.txt").write_text("not an image")
    return str(root)


def _torch_free(argv: list[str]) -> list[str]:
    """Run tools/predict.py ``argv`` in a fresh process; returns the heavy packages loaded."""
    env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.run(
        [sys.executable, "-c", _TORCH_FREE, os.path.join(REPO, "tools", "predict.py"), *argv],
        cwd=REPO, env=env, capture_output=True, text=True,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _csv(path) -> list[list[str]]:
    with open(path, newline="") as f:
        return list(csv.reader(f))


def _assert_same_rows(a: list[list[str]], b: list[list[str]], text_columns: int, atol: float):
    assert len(a) == len(b) and a[0] == b[0]
    for ra, rb in zip(a[1:], b[1:]):
        assert ra[:text_columns] == rb[:text_columns]
        np.testing.assert_allclose(
            np.array(ra[text_columns:], float), np.array(rb[text_columns:], float), atol=atol
        )


def test_torch_free_predict_equals_the_cxr_path(exported, inputs, tmp_path):
    free, ref = tmp_path / "free", tmp_path / "ref"
    loaded = _torch_free(["--backend", "onnxruntime", "--checkpoint", exported,
                          "--input", inputs, "--output", str(free)])  # fmt: skip
    assert loaded == []
    thresholds = str(tmp_path / "thresholds.json")
    save_thresholds(thresholds, THRESHOLDS)
    load_tool("predict").main([
        "--config-file", DEMO_CONFIG, "--backend", "onnxruntime", "--checkpoint", exported,
        "--input", inputs, "--output", str(ref), "--classes", ",".join(PHANTOM_CLASSES),
        "--thresholds", thresholds,
    ])  # fmt: skip
    preds = _csv(free / "predictions.csv")
    assert len(preds) > 3 and {r[0] for r in preds[1:]} >= {os.path.join(inputs, "IM0003")}
    _assert_same_rows(preds, _csv(ref / "predictions.csv"), 2, atol=0.0100001)  # 2 decimals
    finds = _csv(free / "findings.csv")
    assert [r[0] for r in finds[1:]] == [os.path.join(inputs, f) for f in
                                         ("IM0003", "img0.png", "img1.png")]  # fmt: skip
    _assert_same_rows(finds, _csv(ref / "findings.csv"), 2, atol=2e-6)
    assert (free / "errors.csv").read_bytes() == (ref / "errors.csv").read_bytes()
    assert sorted(os.listdir(free / "overlays")) == sorted(os.listdir(ref / "overlays"))
    assert "Predicting with" in (free / "log.txt").read_text()


def test_openvino_backend_predicts_what_onnxruntime_predicts(exported, inputs, tmp_path):
    pytest.importorskip("openvino")
    runs = {}
    for backend in ("onnxruntime", "openvino"):
        out = tmp_path / backend
        loaded = _torch_free(["--backend", backend, "--checkpoint", exported,
                              "--input", inputs, "--output", str(out)])  # fmt: skip
        assert loaded == []
        runs[backend] = out
    ort, ov = runs["onnxruntime"], runs["openvino"]
    preds = _csv(ov / "predictions.csv")
    assert len(preds) > 3
    _assert_same_rows(preds, _csv(ort / "predictions.csv"), 2, atol=0.0100001)
    _assert_same_rows(_csv(ov / "findings.csv"), _csv(ort / "findings.csv"), 2, atol=2e-6)
    assert "openvino" in (ov / "log.txt").read_text()


def test_operating_points_come_from_the_model_unless_given(exported, inputs, tmp_path):
    """No flag: the stored thresholds decide; --cm-threshold 1.01 and an empty thresholds.json
    make every image negative."""
    _torch_free(["--backend", "onnxruntime", "--checkpoint", exported, "--input", inputs,
                 "--output", str(tmp_path / "a"), "--no-overlays"])  # fmt: skip
    cm = json.load(open(exported.replace("model.onnx", "model.json")))["cm_threshold"]
    rows = _csv(tmp_path / "a" / "findings.csv")
    names = [h[len("score_"):] for h in rows[0][2:]]
    assert names == PHANTOM_CLASSES
    for r in rows[1:]:
        scores = dict(zip(names, map(float, r[2:])))
        expect = [n for n in names if scores[n] > 0 and scores[n] >= THRESHOLDS.get(n, cm)]
        assert r[1] == (";".join(expect) or "No finding")
    assert any("Infiltrate" in r[1] for r in rows[1:])  # positive by its stored threshold only
    empty = str(tmp_path / "none.json")
    save_thresholds(empty, {})
    _torch_free(["--backend", "onnxruntime", "--checkpoint", exported, "--input", inputs,
                 "--output", str(tmp_path / "b"), "--no-overlays", "--thresholds", empty,
                 "--cm-threshold", "1.01"])  # fmt: skip
    assert {r[1] for r in _csv(tmp_path / "b" / "findings.csv")[1:]} == {"No finding"}


def test_argument_errors(exported, tmp_path, capsys):
    tool = load_tool("predict")
    common = ["--checkpoint", exported, "--input", str(tmp_path), "--output", str(tmp_path / "o")]
    with pytest.raises(SystemExit) as e:
        tool.main(common)  # --backend torch needs a config
    assert e.value.code == 2 and "--config-file is required" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        tool.main(common + ["--backend", "onnxruntime", "INPUT.MIN_SIZE_TEST", "300"])
    assert e.value.code == 2 and "need --config-file" in capsys.readouterr().err
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "x.png").write_bytes(b"")  # an input that exists: the classes are wrong
    with pytest.raises(SystemExit, match=r"has 8: \['Atelectasis'"):
        tool.main(common[:2] + ["--input", str(tmp_path / "in" / "x.png"), "--output",
                                str(tmp_path / "o2"), "--backend", "onnxruntime",
                                "--classes", "a,b"])  # fmt: skip


def test_config_class_names_must_match_the_models(exported, phantom_images, tmp_path):  # noqa: F811
    from detectron2.data import MetadataCatalog

    other = "cxr_test_runtime_other"
    MetadataCatalog.get(other).set(thing_classes=list("abcdefgh"))
    (tmp_path / "in").mkdir()
    cv2.imwrite(str(tmp_path / "in" / "a.png"), phantom_images[0])
    common = ["--config-file", DEMO_CONFIG, "--backend", "onnxruntime", "--checkpoint", exported,
              "--input", str(tmp_path / "in" / "a.png")]  # fmt: skip
    with pytest.raises(SystemExit, match=r"\['a', 'b'.*differ.*\['Atelectasis'"):
        load_tool("predict").main(
            common + ["--output", str(tmp_path / "o"), "DATASETS.TEST", f"('{other}',)"]
        )
    with pytest.raises(SystemExit, match=r"--classes \(\['a', 'b'\]\) differ"):
        load_tool("predict").main(common + ["--output", str(tmp_path / "o2"), "--classes", "a,b"])

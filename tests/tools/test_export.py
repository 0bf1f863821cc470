"""tools/export.py -> tools/predict.py / tools/eval.py with --backend onnxruntime, against torch."""
from __future__ import annotations

import csv
import json

import cv2
import numpy as np
import pytest
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.structures import BoxMode

from ..export.conftest import _LESIONS, DEMO_CONFIG, DEMO_WEIGHTS, phantom_images  # noqa: F401
from .util import load_tool

NAME = "cxr_test_export_phantom"
PHANTOM_CLASSES = ["Atelectasis", "Cardiomegaly", "Effusion", "Infiltrate", "Mass", "Nodule",
                   "Pneumonia", "Pneumothorax"]  # fmt: skip


@pytest.fixture(scope="module")
def phantom_set(tmp_path_factory, phantom_images):  # noqa: F811
    """Three rendered phantom radiographs as PNGs, registered as an evaluable data set."""
    root = tmp_path_factory.mktemp("phantom_png")
    dicts = []
    for i, (img, lesions) in enumerate(zip(phantom_images, _LESIONS)):
        path = str(root / f"img{i}.png")
        cv2.imwrite(path, img)
        annos = [{"bbox": [float(v) for v in les[1:]], "bbox_mode": BoxMode.XYXY_ABS,
                  "category_id": PHANTOM_CLASSES.index(les[0])} for les in lesions]  # fmt: skip
        dicts.append({"file_name": path, "image_id": i, "height": 256, "width": 256,
                      "patient_id": str(i), "annotations": annos})  # fmt: skip
    if NAME not in DatasetCatalog.list():
        DatasetCatalog.register(NAME, lambda: dicts)
        MetadataCatalog.get(NAME).set(thing_classes=PHANTOM_CLASSES, evaluator_type="cxr")
    return str(root)


@pytest.fixture(scope="module")
def exported(phantom_set, tmp_path_factory):
    out = tmp_path_factory.mktemp("deploy")
    result = load_tool("export").main([
        "--config-file", DEMO_CONFIG, "--checkpoint", DEMO_WEIGHTS, "--output", str(out),
        "--verify", NAME, "DATASETS.TEST", f"('{NAME}',)",
    ])  # fmt: skip
    return result


def test_export_writes_model_and_verifies(exported):
    assert exported["model"].endswith("model.onnx")
    v = exported["verify"]
    assert v["passes"] and v["images"] == 3 and v["detections"] > 0 and v["unmatched"] == 0
    meta = json.load(open(exported["model"].replace("model.onnx", "model.json")))
    assert meta["class_names"] == PHANTOM_CLASSES and meta["min_size_test"] == 224


def _rows(folder):
    with open(folder / "predictions.csv") as f:
        return sorted(list(csv.reader(f))[1:])


def test_predict_onnxruntime_equals_torch(exported, phantom_set, tmp_path):
    common = ["--config-file", DEMO_CONFIG, "--input", phantom_set, "--no-overlays",
              "--classes", ",".join(PHANTOM_CLASSES)]  # fmt: skip
    load_tool("predict").main(common + ["--checkpoint", DEMO_WEIGHTS, "--output",
                                        str(tmp_path / "t")])  # fmt: skip
    load_tool("predict").main(common + ["--checkpoint", exported["model"], "--backend",
                                        "onnxruntime", "--output", str(tmp_path / "o")])  # fmt: skip
    a, b = _rows(tmp_path / "t"), _rows(tmp_path / "o")
    assert len(a) == len(b) > 0
    num = lambda rows: np.array([[float(v) for v in r[2:]] for r in rows])  # noqa: E731
    assert [r[:2] for r in a] == [r[:2] for r in b]
    np.testing.assert_allclose(num(a), num(b), atol=0.011)  # CSV rounding: 6 / 2 decimals


@pytest.mark.parametrize("backend", ["onnxruntime", "openvino"])
def test_eval_exported_equals_torch(exported, tmp_path, backend):
    if backend == "openvino":
        pytest.importorskip("openvino")
    common = ["--config-file", DEMO_CONFIG, "--dataset", NAME, "--no-plots", "--bootstrap", "0"]
    load_tool("eval").main(common + ["--checkpoint", DEMO_WEIGHTS, "--output",
                                     str(tmp_path / "t")])  # fmt: skip
    load_tool("eval").main(common + ["--checkpoint", exported["model"], "--backend", backend,
                                     "--output", str(tmp_path / "o")])  # fmt: skip
    mt = json.load(open(tmp_path / "t" / "metrics.json"))
    mo = json.load(open(tmp_path / "o" / "metrics.json"))
    for k in ("AP", "AP50"):
        assert mo["coco"][k] == pytest.approx(mt["coco"][k], abs=1e-6)
    assert mo["froc"]["cpm"] == pytest.approx(mt["froc"]["cpm"], abs=1e-6)


def test_onnxruntime_backend_needs_an_onnx_file(tmp_path):
    with pytest.raises(ValueError, match="needs --checkpoint DIR/model.onnx"):
        load_tool("predict").main(["--config-file", DEMO_CONFIG, "--checkpoint", DEMO_WEIGHTS,
                                   "--backend", "onnxruntime", "--input", DEMO_WEIGHTS,
                                   "--classes", ",".join(PHANTOM_CLASSES),
                                   "--output", str(tmp_path / "x")])  # fmt: skip


def test_export_refuses_early_with_the_real_reason(tmp_path):
    """Before any weights are read or anything is written: --int8 / --verify with TorchScript,
    and a classifier config (named as one, not as a model without head_in_features)."""
    import torch

    out = tmp_path / "out"
    for flag in (["--int8"], ["--verify", NAME]):
        with pytest.raises(SystemExit, match=f"{flag[0]} works on the ONNX file"):
            load_tool("export").main(["--config-file", DEMO_CONFIG, "--checkpoint", "absent.pth",
                                      "--format", "torchscript", "--output", str(out), *flag])
    cls_config = DEMO_CONFIG.replace("retinanet_demo.yaml", "classifier_R_50_slim.yaml")
    with pytest.raises(SystemExit, match="CXRClassifier is an image-label classifier"):
        load_tool("export").main(["--config-file", cls_config, "--checkpoint", "absent.pth",
                                  "--output", str(out)])  # fmt: skip
    assert not out.exists()
    # predict.py on a TorchScript file: said so, with what to use instead
    ts = tmp_path / "model.ts"
    torch.jit.save(torch.jit.trace(torch.nn.Linear(2, 1), torch.zeros(1, 2)), str(ts))
    with pytest.raises(ValueError, match="model.ts is a TorchScript program.*model.onnx"):
        load_tool("predict").main(["--config-file", DEMO_CONFIG, "--checkpoint", str(ts),
                                   "--input", DEMO_WEIGHTS, "--classes", ",".join(PHANTOM_CLASSES),
                                   "--output", str(tmp_path / "p")])  # fmt: skip


def test_exported_sizes_win_over_the_config_unless_overridden(phantom_set, tmp_path):
    """A model exported at 128 px, run with the 224 px config: predict and eval run at the
    stored 128 px (same rows as without the config / with 128 given); an explicit KEY VALUE
    size replaces it, with a warning in log.txt."""
    out = tmp_path / "deploy128"
    load_tool("export").main(["--config-file", DEMO_CONFIG, "--checkpoint", DEMO_WEIGHTS,
                              "--output", str(out), "DATASETS.TEST", f"('{NAME}',)",
                              "INPUT.MIN_SIZE_TEST", "128", "INPUT.MAX_SIZE_TEST", "128"])
    onnx = str(out / "model.onnx")
    predict = load_tool("predict").main
    base = ["--backend", "onnxruntime", "--checkpoint", onnx, "--input", phantom_set]
    predict([*base, "--output", str(tmp_path / "own")])  # the stored settings only
    predict([*base, "--config-file", DEMO_CONFIG, "--output", str(tmp_path / "cfg"),
             "DATASETS.TEST", f"('{NAME}',)"])  # fmt: skip
    assert _rows(tmp_path / "own") and _rows(tmp_path / "cfg") == _rows(tmp_path / "own")
    predict([*base, "--config-file", DEMO_CONFIG, "--output", str(tmp_path / "big"),
             "DATASETS.TEST", f"('{NAME}',)", "INPUT.MIN_SIZE_TEST", "224",
             "INPUT.MAX_SIZE_TEST", "224"])  # fmt: skip
    assert _rows(tmp_path / "big") != _rows(tmp_path / "own")
    log = (tmp_path / "big" / "log.txt").read_text()
    assert "INPUT.MIN_SIZE_TEST 224 (KEY VALUE override) replaces the 128 stored in" in log

    ev = ["--backend", "onnxruntime", "--config-file", DEMO_CONFIG, "--checkpoint", onnx,
          "--dataset", NAME, "--bootstrap", "0", "--no-plots"]  # fmt: skip
    load_tool("eval").main([*ev, "--output", str(tmp_path / "e_cfg")])
    load_tool("eval").main([*ev, "--output", str(tmp_path / "e_128"),
                            "INPUT.MIN_SIZE_TEST", "128", "INPUT.MAX_SIZE_TEST", "128"])
    a, b = (json.load(open(tmp_path / d / "predictions.json")) for d in ("e_cfg", "e_128"))
    assert a and a == b

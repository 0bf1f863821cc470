"""Export -> ONNX Runtime detections equal PyTorch's (fused model) on phantom radiographs."""
from __future__ import annotations

import importlib.util
import json

import numpy as np
import pytest
import torch

from cxr.apps.predictor import XrayPredictor
from cxr.engine.inference import instances_to_detections
from cxr.export.exporter import DenseDetectorGraph, export_model
from cxr.export.runtime import OnnxDetector, load_metadata
from cxr.export.verify import compare_backends

NAMES8 = [f"c{i}" for i in range(8)]


_NO_OPENVINO = importlib.util.find_spec("openvino") is None
ENGINES = [
    "onnxruntime",
    pytest.param("openvino", marks=pytest.mark.skipif(_NO_OPENVINO, reason="openvino missing")),
]


def _check(cfg, model, path, images, engine="onnxruntime"):
    predictor = XrayPredictor(cfg, model=model)

    def ref(gray):
        return instances_to_detections(predictor(np.repeat(gray[:, :, None], 3, 2))["instances"])

    report = compare_backends(
        ((str(i), im) for i, im in enumerate(images)),
        ref,
        OnnxDetector(path, num_threads=1, engine=engine),
    )
    assert report.detections > 0
    assert report.passes(), report
    return report


@pytest.mark.parametrize("engine", ENGINES)
def test_demo_retinanet_onnx_equals_torch(demo_retinanet, phantom_images, tmp_path, engine):
    cfg, model = demo_retinanet
    path = export_model(cfg, model, str(tmp_path), class_names=NAMES8, thresholds={"c1": 0.4})
    _check(cfg, model, path, phantom_images, engine)
    meta = load_metadata(path)
    assert meta["class_names"] == NAMES8 and meta["thresholds"] == {"c1": 0.4}
    assert json.loads((tmp_path / "model.json").read_text()) == meta
    # BN was folded before export: no BatchNormalization node in the graph
    import onnx

    ops = {n.op_type for n in onnx.load(path).graph.node}
    assert "BatchNormalization" not in ops


@pytest.mark.parametrize("engine", ENGINES)
def test_random_d0_onnx_equals_torch(random_d0, phantom_images, tmp_path, engine):
    cfg, model = random_d0
    path = export_model(cfg, model, str(tmp_path), class_names=NAMES8)
    report = _check(cfg, model, path, phantom_images, engine)
    assert report.detections >= 30  # the calibrated random model does fire


def test_padded_batch_of_two_sizes_equals_detectron2(demo_retinanet, phantom_images, tmp_path):
    """The eval interface: a batch of two differently sized inputs, as detectron2 pads it."""
    from cxr.engine.inference import OnnxRuntimeModel, instances_to_detections
    from cxr.export.verify import compare_detections

    cfg, model = demo_retinanet
    det = OnnxDetector(export_model(cfg, model, str(tmp_path), class_names=NAMES8))
    inputs = [
        {"image": torch.as_tensor(np.repeat(im[None, :h, :w], 3, 0)), "height": 2 * h, "width": w}
        for im, (h, w) in zip(phantom_images, [(224, 224), (160, 192)])
    ]
    with torch.no_grad():
        ref = model(inputs)
    for r, o in zip(ref, OnnxRuntimeModel(det)(inputs)):
        a, b = instances_to_detections(r["instances"]), instances_to_detections(o["instances"])
        assert len(a) > 0 and compare_detections(a, b)[0] == 0
        assert o["instances"].image_size == r["instances"].image_size


def test_torchscript_export_matches_graph(demo_retinanet, tmp_path):
    cfg, model = demo_retinanet
    path = export_model(cfg, model, str(tmp_path), fmt="torchscript", class_names=NAMES8)
    extra = {"cxr.json": ""}
    loaded = torch.jit.load(path, _extra_files=extra)
    assert json.loads(extra["cxr.json"])["class_names"] == NAMES8
    x = torch.rand(1, 3, 224, 192) * 255
    with torch.no_grad():
        for a, b in zip(loaded(x), DenseDetectorGraph(model)(x)):
            torch.testing.assert_close(a, b)


def test_faster_rcnn_is_refused(tmp_path):
    from cxr.config import load_config
    from cxr.engine import Trainer

    cfg = load_config("configs/quick_schedules/faster_rcnn_R_50_FPN_focal_instant_test.yaml",
                      ["MODEL.DEVICE", "cpu"])  # fmt: skip
    with pytest.raises(TypeError, match="Faster R-CNN is not supported"):
        export_model(cfg, Trainer.build_model(cfg).eval(), str(tmp_path), class_names=NAMES8)


def test_int8_copy_runs_and_keeps_metadata(demo_retinanet, phantom_images, tmp_path):
    from cxr.export.quantize import quantize_int8

    cfg, model = demo_retinanet
    path = export_model(cfg, model, str(tmp_path), class_names=NAMES8)
    q = quantize_int8(path, str(tmp_path / "model.int8.onnx"))
    det = OnnxDetector(q)
    assert det.class_names == NAMES8
    out = det(phantom_images[0])
    assert len(out) > 0 and out.scores.max() <= 1

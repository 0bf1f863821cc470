"""The numpy steps of the ONNX Runtime path against detectron2's / torchvision's own code."""
from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from cxr_runtime import detector as rt

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.mark.parametrize("hw", [(1024, 1024), (2500, 2048), (333, 517), (600, 200), (7, 3000)])
@pytest.mark.parametrize("short,max_size", [(224, 224), (512, 512), (800, 1333)])
def test_resized_shape_is_detectron2s(hw, short, max_size):
    from detectron2.data.transforms import ResizeShortestEdge

    assert rt.resized_shape(*hw, short, max_size) == ResizeShortestEdge.get_output_shape(
        *hw, short, max_size
    )


def test_resize_gray_then_repeat_equals_detectron2_on_rgb():
    from detectron2.data.transforms import ResizeTransform

    gray = np.random.default_rng(0).integers(0, 256, (301, 257), dtype=np.uint8)
    rgb = np.repeat(gray[:, :, None], 3, axis=2)
    ref = ResizeTransform(301, 257, 120, 97).apply_image(rgb)
    ours = rt.resize_image(gray, 120, 97)
    np.testing.assert_array_equal(np.repeat(ours[:, :, None], 3, axis=2), ref)
    np.testing.assert_array_equal(rt.resize_image(rgb, 120, 97), ref)


def test_grid_anchors_equal_detectron2s():
    from detectron2.modeling.anchor_generator import DefaultAnchorGenerator

    gen = DefaultAnchorGenerator(
        sizes=[[32, 40], [64, 80]], aspect_ratios=[[0.5, 1.0, 2.0]], strides=[8, 16], offset=0.5
    )
    sizes = [(7, 5), (4, 3)]
    ref = gen([torch.zeros(1, 1, h, w) for h, w in sizes])
    for cells, stride, (h, w), r in zip(gen.cell_anchors, [8, 16], sizes, ref):
        ours = rt.grid_anchors(cells.numpy(), stride, h, w, 0.5)
        np.testing.assert_allclose(ours, r.tensor.numpy(), atol=1e-5)


def test_decode_equals_box2box_transform():
    from detectron2.modeling.box_regression import Box2BoxTransform

    rng = np.random.default_rng(1)
    anchors = np.sort(rng.uniform(0, 200, (50, 4)).astype(np.float32).reshape(50, 2, 2), axis=1)
    anchors = anchors.transpose(0, 2, 1).reshape(50, 4)[:, [0, 2, 1, 3]]
    deltas = rng.normal(0, 2, (50, 4)).astype(np.float32)  # some beyond the clamp
    t = Box2BoxTransform(weights=(1.0, 1.0, 1.0, 1.0))
    ref = t.apply_deltas(torch.from_numpy(deltas), torch.from_numpy(anchors)).numpy()
    ours = rt._apply_deltas(deltas, anchors, (1.0, 1.0, 1.0, 1.0), t.scale_clamp)
    np.testing.assert_allclose(ours, ref, rtol=1e-5, atol=1e-3)


def test_batched_nms_equals_torchvision():
    from torchvision.ops import batched_nms

    rng = np.random.default_rng(2)
    xy = rng.uniform(0, 100, (300, 2))
    boxes = np.concatenate([xy, xy + rng.uniform(5, 40, (300, 2))], axis=1).astype(np.float32)
    scores = rng.permutation(300).astype(np.float32) / 300  # no ties
    classes = rng.integers(0, 4, 300)
    ref = batched_nms(torch.from_numpy(boxes), torch.from_numpy(scores),
                      torch.from_numpy(classes), 0.5).numpy()  # fmt: skip
    np.testing.assert_array_equal(rt.batched_nms(boxes, scores, classes, 0.5), ref)
    boxes[:3] = [5, 5, 5, 9]  # empty boxes (IoU 0 / 0) are not suppressed by each other
    ref = batched_nms(torch.from_numpy(boxes), torch.from_numpy(scores),
                      torch.from_numpy(classes), 0.5).numpy()  # fmt: skip
    np.testing.assert_array_equal(rt.batched_nms(boxes, scores, classes, 0.5), ref)


def test_batched_nms_max_keep_is_the_prefix_of_the_full_run():
    from torchvision.ops import batched_nms

    rng = np.random.default_rng(3)
    xy = rng.uniform(0, 300, (2000, 2))
    boxes = np.concatenate([xy, xy + rng.uniform(5, 120, (2000, 2))], axis=1).astype(np.float32)
    scores = rng.permutation(2000).astype(np.float32) / 2000
    classes = rng.integers(0, 8, 2000)
    ref = batched_nms(torch.from_numpy(boxes), torch.from_numpy(scores),
                      torch.from_numpy(classes), 0.5).numpy()  # fmt: skip
    assert len(ref) > 100
    for k in (1, 37, 100, len(ref), len(ref) + 5):
        np.testing.assert_array_equal(rt.batched_nms(boxes, scores, classes, 0.5, k), ref[:k])


def test_runtime_imports_neither_torch_nor_detectron2():
    code = (
        "import sys; import cxr_runtime.detector as m;"
        "m.import_onnxruntime(); import PIL.Image;"
        "bad = [k for k in sys.modules if k.split('.')[0] in ('torch', 'detectron2')];"
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO)


def test_missing_metadata_is_named(tmp_path):
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["y"])], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])],
    )  # fmt: skip
    path = str(tmp_path / "plain.onnx")
    onnx.save(helper.make_model(graph), path)
    with pytest.raises(ValueError, match="plain.onnx: no 'cxr' metadata"):
        rt.OnnxDetector(path)

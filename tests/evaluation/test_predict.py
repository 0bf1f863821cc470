"""tools/predict.py and cxr.evaluation.predictor."""

import csv
import os

import numpy as np
import pytest
import torch
from detectron2.structures import Boxes, Instances

from cxr.evaluation.predictor import check_predict_output, predict_files

from ..conftest import write_tiny_images
from .test_tools_eval import REPO, load_tool


class FakePredictor:
    """Two boxes per image: class 0 at 0.9, class 1 at 0.2."""

    def __init__(self):
        self.calls = 0

    def __call__(self, img):
        assert img.ndim == 3 and img.shape[2] == 3 and img.dtype == np.uint8
        self.calls += 1
        inst = Instances(img.shape[:2])
        inst.pred_boxes = Boxes(torch.tensor([[1.0, 2.0, 20.0, 30.0], [5.0, 5.0, 9.0, 9.0]]))
        inst.scores = torch.tensor([0.9, 0.2])
        inst.pred_classes = torch.tensor([0, 1])
        return {"instances": inst}


def test_predict_files_outputs_and_thresholds(tmp_path):
    imgs = tmp_path / "in"
    write_tiny_images(str(imgs), n=3)
    (imgs / "broken.png").write_bytes(b"not a png")
    out = tmp_path / "out"
    stats = predict_files(FakePredictor(), [str(imgs)], str(out), ["a", "b"], {"b": 0.1}, 0.5)
    assert stats == {"images": 3, "detections": 6, "errors": 1, "positive_images": 3}
    rows = list(csv.DictReader(open(out / "predictions.csv")))
    assert len(rows) == 6 and rows[0]["class"] == "a" and float(rows[0]["x2"]) == 20.0
    finds = list(csv.DictReader(open(out / "findings.csv")))
    assert [f["findings"] for f in finds] == ["a;b"] * 3  # b's operating point 0.1 <= 0.2
    assert len(os.listdir(out / "overlays")) == 3
    assert "broken.png" in open(out / "errors.csv").read()
    stats = predict_files(
        FakePredictor(), [str(imgs)], str(tmp_path / "o2"), ["a", "b"], None, 0.5, overlays=False
    )
    finds = list(csv.DictReader(open(tmp_path / "o2" / "findings.csv")))
    assert [f["findings"] for f in finds] == ["a"] * 3


def test_predict_never_writes_beside_inputs(tmp_path):
    imgs = tmp_path / "in"
    write_tiny_images(str(imgs), n=1)
    one = str(imgs / "img_000.png")
    for bad in (imgs, imgs / "sub", tmp_path / "in"):
        with pytest.raises(ValueError, match="input"):
            check_predict_output(str(bad), [str(imgs)])
    with pytest.raises(ValueError, match="input"):
        check_predict_output(str(imgs), [one])
    check_predict_output(str(tmp_path / "elsewhere"), [one, str(imgs)])


def test_predict_tool_end_to_end(tmp_path):
    from cxr.config import load_config
    from cxr.engine import Trainer
    from cxr.engine.checkpoint import CXRCheckpointer

    imgs = tmp_path / "in"
    write_tiny_images(str(imgs), n=2)
    cfg_file = os.path.join(REPO, "configs/nih/retinanet_R_18_FPN.yaml")
    opts = [
        "MODEL.DEVICE",
        "cpu",
        "MODEL.RETINANET.NUM_CLASSES",
        "2",
        "INPUT.MIN_SIZE_TEST",
        "64",
        "INPUT.MAX_SIZE_TEST",
        "64",
    ]
    CXRCheckpointer(Trainer.build_model(load_config(cfg_file, opts)), str(tmp_path)).save("m")
    out = tmp_path / "pred"
    stats = load_tool("predict").main(
        [
            "--config-file",
            cfg_file,
            "--checkpoint",
            str(tmp_path / "m.pth"),
            "--input",
            str(imgs),
            "--output",
            str(out),
            "--classes",
            "a,b",
            *opts,
        ]
    )
    assert stats["images"] == 2 and stats["errors"] == 0
    assert {"predictions.csv", "findings.csv", "overlays"} <= set(os.listdir(out))

"""tools/predict.py end to end with a random-weight RetinaNet."""

import os

import pytest

from ..conftest import write_tiny_images
from .util import REPO, load_tool


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
    tool = load_tool("predict")

    def argv(inputs, output):
        return ["--config-file", cfg_file, "--checkpoint", str(tmp_path / "m.pth"),
                "--input", str(inputs), "--output", str(output), "--classes", "a,b", *opts]  # fmt: skip

    stats = tool.main(argv(imgs, out))
    assert stats["images"] == 2 and stats["errors"] == 0
    assert {"predictions.csv", "findings.csv", "overlays", "log.txt"} <= set(os.listdir(out))
    # nothing readable: a non-zero exit naming errors.csv, which lists the file and why
    junk = tmp_path / "junk"
    junk.mkdir()
    (junk / "IM0001").write_bytes(b"\0" * 300)  # no DICOM preamble, no extension
    with pytest.raises(SystemExit, match="no input image could be read") as e:
        tool.main(argv(junk, tmp_path / "pred2"))
    assert e.value.code != 0
    assert "IM0001" in (tmp_path / "pred2" / "errors.csv").read_text()


def test_predict_with_a_classifier_writes_findings_and_gradcam(tmp_path):
    import csv

    import cv2
    import numpy as np
    import torch

    from cxr.config import load_config
    from cxr.engine import Trainer
    from cxr.engine.checkpoint import CXRCheckpointer
    from cxr.evaluation.operating_points import save_thresholds

    from .test_two_stage import SLIM

    dicts = write_tiny_images(str(tmp_path / "in"), n=3)
    cfg_file = os.path.join(REPO, "configs/phantom/classifier_R_50_slim.yaml")
    torch.manual_seed(0)
    model = Trainer.build_model(load_config(cfg_file, SLIM)).eval()
    CXRCheckpointer(model, str(tmp_path)).save("m")
    # the classifier's own scores of each file (64 px gray PNGs: the test resize is a no-op)
    with torch.no_grad():
        truth = np.stack([model([{"image": torch.as_tensor(np.repeat(
            cv2.imread(d["file_name"], cv2.IMREAD_GRAYSCALE)[None], 3, 0))}])[0]["scores"].numpy()
            for d in dicts])  # fmt: skip
    names = list("abcdefgh")
    # operating points: "c" positive on every image, every other class on none
    thr = {n: (truth[:, i].min() - 1e-4 if n == "c" else 1.0) for i, n in enumerate(names)}
    save_thresholds(str(tmp_path / "thresholds.json"), thr)
    out = tmp_path / "pred"
    stats = load_tool("predict").main(
        ["--config-file", cfg_file, "--checkpoint", str(tmp_path / "m.pth"), "--input",
         str(tmp_path / "in"), "--output", str(out), "--classes", ",".join(names),
         "--thresholds", str(tmp_path / "thresholds.json"), "--gradcam", *SLIM]
    )  # fmt: skip
    assert stats["images"] == 3 and stats["detections"] == 0 and stats["positive_images"] == 3
    rows = list(csv.reader(open(out / "findings.csv", encoding="utf-8")))
    assert rows[0] == ["file", "findings", *[f"score_{n}" for n in names]]
    for row, d, t in zip(rows[1:], dicts, truth):
        assert row[0] == d["file_name"] and row[1] == "c"
        np.testing.assert_allclose([float(v) for v in row[2:]], t, atol=1e-4)
    assert len(list(csv.reader(open(out / "predictions.csv", encoding="utf-8")))) == 1  # no boxes
    for i, d in enumerate(dicts):
        stem = os.path.splitext(os.path.basename(d["file_name"]))[0]
        img = cv2.imread(str(out / "overlays" / f"{i:05d}_{stem}_gradcam.png"))
        assert img.shape == (64, 64, 3)

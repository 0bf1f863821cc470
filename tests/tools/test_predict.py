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

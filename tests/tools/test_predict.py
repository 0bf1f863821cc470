"""tools/predict.py end to end with a random-weight RetinaNet."""

import os

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

"""tools/eval.py and tools/predict.py take a LazyConfig .py config: the same results as with its
YAML twin (the shipped demo weights on generated images)."""

from __future__ import annotations

import json
import os

from ..conftest import write_tiny_images
from .util import REPO, load_tool

WEIGHTS = os.path.join(REPO, "datasets/weights/retinanet_demo_phantom.pth")
DEMO = os.path.join(REPO, "configs/phantom/retinanet_demo")


def _read(path):
    with open(path, encoding="utf-8") as f:
        return f.read()


def test_predict_and_eval_with_lazy_config(tmp_path):
    from cxr.data.datasets.nih import nih_class_names
    from detectron2.data import DatasetCatalog, MetadataCatalog

    imgs = tmp_path / "in"
    dicts = write_tiny_images(str(imgs), n=3)
    name = "cxr_test_lazy_tools"
    if name not in DatasetCatalog.list():
        DatasetCatalog.register(name, lambda: dicts)
        MetadataCatalog.get(name).set(thing_classes=nih_class_names(), evaluator_type="cxr")
    runs = {"yaml": (DEMO + ".yaml", ["MODEL.DEVICE", "cpu"]),
            "py": (DEMO + ".py", ["train.device=cpu"])}  # fmt: skip
    predict, evaluate = load_tool("predict"), load_tool("eval")
    for kind, (cfg, opts) in runs.items():
        predict.main(["--config-file", cfg, "--checkpoint", WEIGHTS, "--input", str(imgs),
                      "--output", str(tmp_path / f"pred_{kind}"), "--cm-threshold", "0.01", "--classes", ",".join(nih_class_names()),
                      *opts])  # fmt: skip
        evaluate.main(["--config-file", cfg, "--checkpoint", WEIGHTS, "--dataset", name,
                       "--bootstrap", "0", "--no-plots", "--output", str(tmp_path / f"eval_{kind}"),
                       *opts])  # fmt: skip
    for f in ("predictions.csv", "findings.csv"):
        a, b = _read(tmp_path / "pred_py" / f), _read(tmp_path / "pred_yaml" / f)
        assert a == b and a.count("\n") >= 2, f
    a = json.load(open(tmp_path / "eval_py" / "metrics.json"))
    b = json.load(open(tmp_path / "eval_yaml" / "metrics.json"))
    assert a == b and "coco" in a

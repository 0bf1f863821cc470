"""CXREvaluator end to end on a registered tiny dataset (evaluator_type "cxr")."""

import json
import math
import os

import numpy as np
import pytest
import torch
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.structures import Boxes, BoxMode, Instances
from detectron2.utils.events import EventStorage

from cxr.config import get_cfg
from cxr.evaluation import CXREvaluator, build_evaluator, load_thresholds

from ..conftest import write_tiny_images
from .cocoref import pycoco_eval

NAME = "cxr_test_tiny_cxr_eval"


@pytest.fixture(scope="module")
def cxr_dataset(tmp_path_factory):
    if NAME not in DatasetCatalog.list():
        dicts = write_tiny_images(str(tmp_path_factory.mktemp("tinycxr")), n=6)
        # one box given as XYWH_ABS: the evaluator converts any BoxMode
        a = dicts[1]["annotations"][0]
        x1, y1, x2, y2 = a["bbox"]
        a["bbox"], a["bbox_mode"] = [x1, y1, x2 - x1, y2 - y1], BoxMode.XYWH_ABS
        DatasetCatalog.register(NAME, lambda: dicts)
        MetadataCatalog.get(NAME).set(thing_classes=["a", "b"], evaluator_type="cxr")
    return NAME


def fake_outputs(dicts, seed=0):
    """Per image: a jittered copy of each box (right class), a random box of each class."""
    rng = np.random.default_rng(seed)
    outs = []
    for d in dicts:
        boxes, scores, classes = [], [], []
        for a in d["annotations"]:
            b = BoxMode.convert(list(a["bbox"]), a.get("bbox_mode", 0), BoxMode.XYXY_ABS)
            boxes.append(np.array(b) + rng.normal(0, 1.5, 4))
            scores.append(rng.uniform(0.3, 1.0)), classes.append(a["category_id"])
        for c in (0, 1):
            x, y = rng.uniform(0, 40, 2)
            boxes.append([x, y, x + 16, y + 16]), scores.append(rng.uniform(0, 0.6))
            classes.append(c)
        inst = Instances((d["height"], d["width"]))
        inst.pred_boxes = Boxes(torch.tensor(np.array(boxes), dtype=torch.float32))
        inst.scores = torch.tensor(scores, dtype=torch.float32)
        inst.pred_classes = torch.tensor(classes)
        outs.append({"instances": inst})
    return outs


def test_evaluator_end_to_end(cxr_dataset, tmp_path):
    cfg = get_cfg()
    cfg.CXR.EVAL.BOOTSTRAP = 50
    out = str(tmp_path / "eval")
    ev = build_evaluator(cfg, cxr_dataset, out)
    assert isinstance(ev, CXREvaluator)
    dicts = DatasetCatalog.get(cxr_dataset)
    ev.reset()
    for d, o in zip(dicts, fake_outputs(dicts)):
        ev.process([d], [o])
    with EventStorage(0) as storage:
        res = ev.evaluate()
        assert "cxr/AP50" in storage.histories() and "cxr/froc_cpm" in storage.histories()
        assert any(name == "cxr/pr_curves" for name, _, _ in storage._vis_data)
    r = res["cxr"]
    for k in ("AP", "AP50", "AP75", "voc_map40", "froc_cpm", "sensitivity_macro"):
        assert k in r
    assert all(isinstance(v, float) for v in r.values())
    files = set(os.listdir(out))
    assert {
        "metrics.json",
        "per_class.csv",
        "predictions.json",
        "thresholds.json",
        "froc.png",
        "pr_curves.png",
        "roc_curves.png",
        "confusion_counts.png",
    } <= files
    m = json.load(open(os.path.join(out, "metrics.json")))
    for k in (
        "coco",
        "voc_map40",
        "voc_ap40",
        "iobb_accuracy",
        "froc",
        "image_level",
        "ci95",
        "num_images",
        "num_gt_boxes",
        "settings",
    ):
        assert k in m, k
    assert m["num_images"] == 6 and m["num_gt_boxes"] == 5
    assert set(m["image_level"]["per_class"]) == {"a", "b"}
    assert "image_level.per_class.a.sensitivity" in m["ci95"]
    assert set(load_thresholds(os.path.join(out, "thresholds.json"))) == {"a", "b"}
    # COCO numbers equal pycocotools on the written predictions.json
    gt = {
        "images": [{"id": d["image_id"]} for d in dicts],
        "categories": [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}],  # COCO: 1-based
        "annotations": [],
    }
    for d in dicts:
        for a in d["annotations"]:
            b = (
                a["bbox"]
                if a.get("bbox_mode") == BoxMode.XYWH_ABS
                else BoxMode.convert(list(a["bbox"]), BoxMode.XYXY_ABS, BoxMode.XYWH_ABS)
            )
            gt["annotations"].append(
                {
                    "id": len(gt["annotations"]) + 1,
                    "image_id": d["image_id"],
                    "category_id": a["category_id"] + 1,
                    "bbox": list(b),
                    "area": b[2] * b[3],
                    "iscrowd": 0,
                }
            )
    preds = json.load(open(os.path.join(out, "predictions.json")))
    ref = pycoco_eval(gt, preds)
    assert abs(r["AP"] - ref.stats[0]) < 1e-9 and abs(r["AP50"] - ref.stats[1]) < 1e-9
    assert abs(r["AP75"] - ref.stats[2]) < 1e-9


def test_evaluator_thresholds_and_no_predictions(cxr_dataset, tmp_path):
    ev = CXREvaluator(cxr_dataset, None, thresholds={"a": 0.5, "b": 0.9})
    ev.reset()
    r = ev.evaluate()["cxr"]  # nothing processed: every image has no detection
    assert r["AP"] == 0.0 and r["sensitivity-a"] == 0.0 and r["specificity-a"] == 1.0
    assert math.isnan(r["APl"])
    assert ev.last_result.metrics["image_level"]["per_class"]["b"]["threshold"] == 0.9


def test_evaluator_rejects_unknown_image(cxr_dataset):
    ev = CXREvaluator(cxr_dataset)
    ev.add_predictions(
        [{"image_id": "nope", "boxes": np.zeros((1, 4)), "scores": [0.5], "classes": [0]}]
    )
    with pytest.raises(ValueError, match="nope"):
        ev.evaluate()

"""COCO JSON: a registered set exported as COCO GT, predictions.json ids, name matching."""

import json
import logging
import os

import pytest
from detectron2.data import DatasetCatalog, MetadataCatalog

from cxr.apps.coco_json import dataset_to_coco, export_coco, load_coco_files
from cxr.apps.evaluate import evaluate_files
from cxr.evaluation import CXREvaluator

from ..conftest import write_tiny_images
from ..evaluation.cocoref import pycoco_eval
from ..evaluation.test_evaluator import fake_outputs

NAME = "cxr_test_coco_ids"


@pytest.fixture(scope="module")
def stem_dataset(tmp_path_factory):
    """Six images whose ids are file stems (as the NIH loader gives them), classes a, b."""
    if NAME not in DatasetCatalog.list():
        dicts = write_tiny_images(str(tmp_path_factory.mktemp("stems")), n=6)
        for d in dicts:
            d["image_id"] = os.path.splitext(os.path.basename(d["file_name"]))[0]
        DatasetCatalog.register(NAME, lambda: dicts)
        MetadataCatalog.get(NAME).set(thing_classes=["a", "b"], evaluator_type="cxr")
    return NAME


@pytest.fixture(scope="module")
def evaluated(stem_dataset, tmp_path_factory):
    """The evaluator's report folder for fake detections on the set."""
    out = str(tmp_path_factory.mktemp("report"))
    ev = CXREvaluator(stem_dataset, out, distributed=False, plots=False)
    dicts = DatasetCatalog.get(stem_dataset)
    for d, o in zip(dicts, fake_outputs(dicts)):
        ev.process([d], [o])
    return ev.evaluate()["cxr"], out


def test_export_layout(stem_dataset, tmp_path):
    coco = dataset_to_coco(stem_dataset)
    assert coco["categories"] == [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}]
    dicts = DatasetCatalog.get(stem_dataset)
    assert [im["id"] for im in coco["images"]] == [d["image_id"] for d in dicts]
    assert coco["images"][0] == {
        "id": "img_000",
        "file_name": "img_000.png",
        "height": 64,
        "width": 64,
        "patient_id": "p0",
    }
    a0 = dicts[0]["annotations"][0]
    x1, y1, x2, y2 = a0["bbox"]
    assert coco["annotations"][0] == {
        "id": 1,
        "image_id": "img_000",
        "category_id": a0["category_id"] + 1,
        "bbox": [x1, y1, x2 - x1, y2 - y1],
        "area": (x2 - x1) * (y2 - y1),
        "iscrowd": 0,
    }
    counts = export_coco(stem_dataset, str(tmp_path / "gt.json"))
    assert counts == {"images": 6, "annotations": 5, "categories": 2}


def test_predictions_json_round_trips(stem_dataset, evaluated, tmp_path):
    """predictions.json scored against the exported GT: the evaluator's own numbers, and
    pycocotools' on the two files."""
    flat, out = evaluated
    gt = str(tmp_path / "gt.json")
    export_coco(stem_dataset, gt)
    preds = os.path.join(out, "predictions.json")
    res = evaluate_files(gt, preds, str(tmp_path / "files"), plots=False, tensorboard=False)
    for k in ("AP", "AP50", "AP75"):
        assert res.metrics["coco"][k] == pytest.approx(flat[k], abs=1e-12)
    assert res.metrics["voc_map40"] == pytest.approx(flat["voc_map40"], abs=1e-12)
    assert res.metrics["froc"]["cpm"] == pytest.approx(flat["froc_cpm"], abs=1e-12)
    ref = pycoco_eval(json.load(open(gt)), json.load(open(preds)))
    assert res.metrics["coco"]["AP"] == pytest.approx(ref.stats[0], abs=1e-9)
    assert res.metrics["settings"]["bootstrap_unit"] == "image"


def test_ids_that_disagree_are_matched_by_name_or_refused(
    stem_dataset, evaluated, tmp_path, caplog
):
    flat, out = evaluated
    gt = str(tmp_path / "gt.json")
    export_coco(stem_dataset, gt)
    preds = json.load(open(os.path.join(out, "predictions.json")))
    # 0-based ids (as predictions.json used to write them): a -> 0, b -> 1
    shifted = [{**p, "category_id": p["category_id"] - 1} for p in preds]
    path = tmp_path / "zero_based.json"
    path.write_text(json.dumps(shifted))
    with caplog.at_level(logging.WARNING, logger="cxr"):
        dset, names, _, _, _ = load_coco_files(gt, str(path))
    assert "matching categories by name" in caplog.text
    ref_set = load_coco_files(gt, os.path.join(out, "predictions.json"))[0]
    assert names == ["a", "b"]
    assert (dset.dt_class == ref_set.dt_class).all() and len(dset.dt_class) == len(preds)
    # names the GT does not have: refused, both lists named
    renamed = [{**p, "category_name": p["category_name"].upper()} for p in shifted]
    path.write_text(json.dumps(renamed))
    with pytest.raises(ValueError) as e:
        load_coco_files(gt, str(path))
    assert "0=A" in str(e.value) and "1=a" in str(e.value) and "2=b" in str(e.value)

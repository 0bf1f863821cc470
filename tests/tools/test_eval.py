"""tools/eval.py in both modes (in-process)."""

import json
import os

import numpy as np
import pytest
import torch

from cxr.config import load_config

from ..evaluation.cocoref import pycoco_eval, random_coco
from ..evaluation.test_evaluator import NAME, cxr_dataset  # noqa: F401  (fixture)
from .util import REPO, load_tool


def test_files_mode_agrees_with_pycocotools(tmp_path):
    gt, dets = random_coco(21, n_images=25, n_classes=3)
    g, d = tmp_path / "gt.json", tmp_path / "det.json"
    g.write_text(json.dumps(gt)), d.write_text(json.dumps(dets))
    out = tmp_path / "out"
    load_tool("eval").main(
        [
            "--gt-json",
            str(g),
            "--detections",
            str(d),
            "--output",
            str(out),
            "--bootstrap",
            "50",
            "--no-plots",
        ]
    )
    m = json.load(open(out / "metrics.json"))
    ref = pycoco_eval(gt, dets)
    for i, k in enumerate(("AP", "AP50", "AP75")):
        assert abs(m["coco"][k] - ref.stats[i]) < 1e-9
    assert {"per_class.csv", "predictions.json", "thresholds.json", "tensorboard"} <= set(
        os.listdir(out)
    )
    assert os.listdir(out / "tensorboard")
    # operating points written here are accepted back with --thresholds
    out2 = tmp_path / "out2"
    load_tool("eval").main(
        [
            "--gt-json",
            str(g),
            "--detections",
            str(d),
            "--output",
            str(out2),
            "--thresholds",
            str(out / "thresholds.json"),
            "--no-plots",
        ]
    )
    m2 = json.load(open(out2 / "metrics.json"))
    t = json.load(open(out / "thresholds.json"))["thresholds"]
    assert {k: v["threshold"] for k, v in m2["image_level"]["per_class"].items()} == t


def test_refuses_output_over_inputs_and_bad_files(tmp_path):
    gt, dets = random_coco(2, n_images=3)
    g, d = tmp_path / "gt.json", tmp_path / "det.json"
    g.write_text(json.dumps(gt)), d.write_text(json.dumps(dets))
    tool = load_tool("eval")
    with pytest.raises(ValueError, match="input"):
        tool.main(["--gt-json", str(g), "--detections", str(d), "--output", str(tmp_path)])
    d.write_text(
        json.dumps(
            [{"image_id": gt["images"][0]["id"], "category_id": 1, "bbox": [0, 0, 5], "score": 0.5}]
        )
    )
    with pytest.raises(ValueError, match=r"det.json: entry 0: field bbox"):
        tool.main(["--gt-json", str(g), "--detections", str(d), "--output", str(tmp_path / "o")])
    with pytest.raises(SystemExit):
        tool.main(["--gt-json", str(g), "--output", str(tmp_path / "o")])


def test_checkpoints_mode_two_checkpoints(cxr_dataset, tmp_path):  # noqa: F811
    from cxr.engine import Trainer
    from cxr.engine.checkpoint import CXRCheckpointer

    opts = [
        "MODEL.DEVICE",
        "cpu",
        "MODEL.RETINANET.NUM_CLASSES",
        "2",
        "INPUT.MIN_SIZE_TEST",
        "64",
        "INPUT.MAX_SIZE_TEST",
        "64",
        "DATALOADER.NUM_WORKERS",
        "0",
        "MODEL.RETINANET.SCORE_THRESH_TEST",
        "0.0",
    ]
    cfg_file = os.path.join(REPO, "configs/nih/retinanet_R_18_FPN.yaml")
    cfg = load_config(cfg_file, opts)
    run = tmp_path / "run"
    run.mkdir()
    torch.manual_seed(0)
    for it in (1, 2):
        model = Trainer.build_model(cfg)
        CXRCheckpointer(model, str(run)).save(f"model_{it:07d}", iteration=it)
    # the same weights as iteration 2 under two more names, with other training state
    CXRCheckpointer(model, str(run)).save("model_final", iteration=2, note="final")
    CXRCheckpointer(model, str(run)).save("model_best", iteration=1)
    out = tmp_path / "eval"
    res = load_tool("eval").main(
        [
            "--config-file",
            cfg_file,
            "--checkpoint",
            str(run),
            "--dataset",
            NAME,
            "--output",
            str(out),
            "--no-plots",
            *opts,
        ]
    )
    assert [r["iteration"] for r in res["checkpoints"]] == [1, 2]
    assert [os.path.basename(r["checkpoint"]) for r in res["checkpoints"]] == [
        "model_0000001.pth",
        "model_0000002.pth",
    ]
    assert res["checkpoints"][0]["same_weights"] == ""
    assert res["checkpoints"][1]["same_weights"] == ";".join(
        str(run / f) for f in ("model_final.pth", "model_best.pth")
    )
    assert res["best"] is not None
    files = set(os.listdir(out))
    assert not {"model_final", "model_best"} & files
    log = open(out / "log.txt", encoding="utf-8").read()
    assert "cxr.apps.evaluate INFO: " in log and "model_final.pth holds the weights of" in log
    assert "Model:" not in log and "\x1b[" not in log  # the model print is DEBUG here
    assert {
        "checkpoints.csv",
        "best.json",
        "tensorboard",
        "model_0000001",
        "model_0000002",
    } <= files
    for sub in ("model_0000001", "model_0000002"):
        assert {"metrics.json", "predictions.json", "per_class.csv", "thresholds.json"} <= set(
            os.listdir(out / sub)
        )
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(out / "tensorboard"))
    acc.Reload()
    steps = [e.step for e in acc.Scalars("cxr/froc_cpm")]
    assert steps == [1, 2]
    assert np.isfinite([e.value for e in acc.Scalars("cxr/AP50")]).all()


def test_image_folder_mode_with_nih_csv(tmp_path):
    import cv2

    from cxr.engine import Trainer
    from cxr.engine.checkpoint import CXRCheckpointer

    imgs = tmp_path / "png"
    imgs.mkdir()
    rng = np.random.default_rng(0)
    for n in ("00000001_000.png", "00000002_000.png"):
        cv2.imwrite(str(imgs / n), rng.integers(0, 255, (64, 64), dtype=np.uint8))
    csv_file = tmp_path / "boxes.csv"
    csv_file.write_text(
        "Image Index,Finding Label,Bbox [x,y,w,h],,,\n"
        "00000001_000.png,Mass,10,10,20,20\n00000002_000.png,Nodule,30,30,8,8\n"
    )
    cfg_file = os.path.join(REPO, "configs/nih/retinanet_R_18_FPN.yaml")
    opts = ["MODEL.DEVICE", "cpu", "MODEL.RETINANET.NUM_CLASSES", "8", "INPUT.MIN_SIZE_TEST", "64"]
    opts += ["INPUT.MAX_SIZE_TEST", "64", "DATALOADER.NUM_WORKERS", "0"]
    CXRCheckpointer(Trainer.build_model(load_config(cfg_file, opts)), str(tmp_path)).save("m")
    out = tmp_path / "out"
    res = load_tool("eval").main(
        ["--config-file", cfg_file, "--checkpoint", str(tmp_path / "m.pth"), "--image-folder",
         str(imgs), "--annotations", str(csv_file), "--output", str(out), "--no-plots", *opts]
    )  # fmt: skip
    m = json.load(open(out / "metrics.json"))
    assert m["num_images"] == 2 and m["num_gt_boxes"] == 2
    assert m["num_gt_boxes_per_class"]["Mass"] == 1 and len(res["checkpoints"]) == 1


def test_checkpoint_eval_writes_gradcam_pngs(cxr_dataset, tmp_path):  # noqa: F811
    import csv

    import cv2
    from detectron2.data import DatasetCatalog

    from cxr.engine import Trainer
    from cxr.engine.checkpoint import CXRCheckpointer

    cfg_file = os.path.join(REPO, "configs/nih/retinanet_R_18_FPN.yaml")
    opts = ["MODEL.DEVICE", "cpu", "MODEL.RETINANET.NUM_CLASSES", "2", "INPUT.MIN_SIZE_TEST", "96",
            "INPUT.MAX_SIZE_TEST", "96", "DATALOADER.NUM_WORKERS", "0",
            "MODEL.RETINANET.SCORE_THRESH_TEST", "0.0",
            "CXR.VIS.GRADCAM_MAX_BOXES", "2"]  # fmt: skip
    torch.manual_seed(0)
    CXRCheckpointer(Trainer.build_model(load_config(cfg_file, opts)), str(tmp_path)).save("m")
    out = tmp_path / "eval"
    load_tool("eval").main(["--config-file", cfg_file, "--checkpoint", str(tmp_path / "m.pth"),
                            "--dataset", NAME, "--output", str(out), "--no-plots",
                            "--cm-threshold", "0", "--gradcam", "2", *opts])  # fmt: skip
    pngs = sorted(f for f in os.listdir(out / "gradcam") if f.endswith(".png"))
    assert pngs == ["00000_img_000.png", "00001_img_001.png"]  # the first two records, in order
    rows = list(csv.DictReader(open(out / "gradcam" / "gradcam.csv", encoding="utf-8")))
    records = DatasetCatalog.get(NAME)
    assert [r["file"] for r in rows] == [records[0]["file_name"], records[1]["file_name"]]
    for png, row, rec in zip(pngs, rows, records):
        assert row["map_in_boxes"] == "" or 0 <= float(row["map_in_boxes"]) <= 1
        explained = row["explained"].split("; ")
        assert len(explained) == 2 and all(e.split()[0] in ("a", "b") for e in explained)
        img = cv2.imread(str(out / "gradcam" / png))
        assert img.shape == (96, 96, 3)  # the model's input size
        gray = cv2.resize(cv2.imread(rec["file_name"], cv2.IMREAD_GRAYSCALE), (96, 96))
        assert np.abs(img.astype(float) - gray[:, :, None]).mean() > 5  # a heat map is blended in


def _register_tiny(name: str, evaluator_type: str, root: str) -> None:
    """The ``tiny_dataset`` images (tests/conftest.py) registered as ``name`` with
    ``evaluator_type``; classification sets get each image's multi-hot ``labels``."""
    from detectron2.data import DatasetCatalog, MetadataCatalog

    from ..conftest import write_tiny_images

    if name in DatasetCatalog.list():
        return
    dicts = write_tiny_images(root)
    if evaluator_type == "cxr_cls":
        for d in dicts:
            d["labels"] = [
                int(any(a["category_id"] == c for a in d["annotations"])) for c in (0, 1)
            ]
    DatasetCatalog.register(name, lambda: dicts)
    MetadataCatalog.get(name).set(thing_classes=["a", "b"], evaluator_type=evaluator_type)


_SLIM_CLASSIFIER = ["MODEL.META_ARCHITECTURE", "CXRClassifier", "MODEL.CLASSIFIER.NUM_CLASSES", "2",
                    "INPUT.MAPPER", "ClassificationMapper", "MODEL.RESNETS.DEPTH", "18",
                    "MODEL.RESNETS.RES2_OUT_CHANNELS", "64"]  # fmt: skip


@pytest.mark.parametrize("evaluator_type", ["coco", "cxr", "cxr_cls"])
def test_eval_and_train_net_eval_only_give_the_same_metrics(tmp_path, evaluator_type):
    """One evaluator per data set, whichever tool evaluates: tools/eval.py's checkpoint mode and
    tools/train_net.py --eval-only return equal metrics for the same checkpoint and data set."""
    import math
    import sys

    from cxr.engine import Trainer
    from cxr.engine.checkpoint import CXRCheckpointer

    from ..engine.helpers import TINY_CONFIG, tiny_opts

    name = f"cxr_test_tiny_{evaluator_type}"
    _register_tiny(name, evaluator_type, str(tmp_path / "images"))
    opts = tiny_opts(name, str(tmp_path / "train_net"), 1, "MODEL.RETINANET.SCORE_THRESH_TEST",
                     "0.0", *(_SLIM_CLASSIFIER if evaluator_type == "cxr_cls" else []))  # fmt: skip
    torch.manual_seed(0)
    ckpt = tmp_path / "m.pth"
    CXRCheckpointer(Trainer.build_model(load_config(TINY_CONFIG, opts)), str(tmp_path)).save("m")
    res = load_tool("eval").main(["--config-file", TINY_CONFIG, "--checkpoint", str(ckpt),
                                  "--dataset", name, "--output", str(tmp_path / "eval"),
                                  "--no-plots", *opts])  # fmt: skip
    sys.path.insert(0, os.path.join(REPO, "tools"))
    import train_net

    argv = ["--config-file", TINY_CONFIG, "--eval-only", *opts, "MODEL.WEIGHTS", str(ckpt),
            "CXR.EVAL.PLOTS", "False"]  # fmt: skip
    ref = train_net.main(train_net.argument_parser().parse_args(argv))
    key = {"coco": "bbox", "cxr": "cxr", "cxr_cls": "cls"}[evaluator_type]
    flat = res["metrics"][0]
    assert set(ref) == {key} and len(flat) > 5 and set(flat) == set(ref[key])
    same = [
        k
        for k in flat
        if flat[k] == ref[key][k] or (math.isnan(flat[k]) and math.isnan(ref[key][k]))
    ]
    assert sorted(same) == sorted(flat)


def test_unknown_evaluator_option_names_the_valid_ones(tiny_dataset, tmp_path):
    from detectron2.data import MetadataCatalog

    from cxr.config import get_cfg
    from cxr.evaluation import build_evaluator

    _register_tiny("cxr_test_tiny_cxr", "cxr", str(tmp_path / "images"))
    with pytest.raises(ValueError, match=r"\['cm_treshold'\].*valid options: .*'cm_threshold'"):
        build_evaluator(get_cfg(), "cxr_test_tiny_cxr", None, cm_treshold=0.5)
    with pytest.raises(ValueError, match=r"COCOEvaluator .*\['bootstrap'\]; valid options: \[\]"):
        build_evaluator(get_cfg(), tiny_dataset, None, bootstrap=10)
    MetadataCatalog.get("cxr_test_unknown_type").set(evaluator_type="lvis")
    with pytest.raises(
        KeyError, match=r"'lvis' has no evaluator; registered: \['coco', 'cxr', 'cxr_cls'\]"
    ):
        build_evaluator(get_cfg(), "cxr_test_unknown_type", None)
    MetadataCatalog.remove("cxr_test_unknown_type")


def test_files_mode_refuses_checkpoint_only_options(tmp_path):
    """--gradcam (and the other checkpoints-mode options) with --gt-json/--detections stop with
    their names instead of being ignored; nothing is written."""
    gt, dets = random_coco(2, n_images=3)
    g, d = tmp_path / "gt.json", tmp_path / "det.json"
    g.write_text(json.dumps(gt)), d.write_text(json.dumps(dets))
    base = ["--gt-json", str(g), "--detections", str(d), "--output", str(tmp_path / "o")]
    for extra, named in ((["--gradcam", "4"], "--gradcam"),
                         (["--best-metric", "AP"], "--best-metric"),
                         (["CXR.EVAL.BOOTSTRAP", "5"], "KEY VALUE overrides")):  # fmt: skip
        with pytest.raises(SystemExit, match=f"{named} has no effect in files mode"):
            load_tool("eval").main(base + extra)
    assert not (tmp_path / "o").exists()

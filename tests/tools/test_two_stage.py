"""Two-stage end to end (in-process, tiny): a classifier trains through tools/train_net.py on a
Data_Entry-format set, tools/eval.py scores its checkpoint (AUROC with patient CIs) and its
predictions file, and a detector trains from its trunk."""

import csv
import glob
import json
import os

import cv2
import numpy as np
import pytest
import torch
from detectron2.data import DatasetCatalog, MetadataCatalog
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from cxr.data.datasets.nih_cls import register_nih_cls

from .util import REPO, load_tool

NIH_ENTRY_HEADER = (
    "Image Index,Finding Labels,Follow-up #,Patient ID,Patient Age,Patient Gender,View Position,"
    "OriginalImage[Width,Height],OriginalImagePixelSpacing[x,y]\n"
)

SLIM = ["MODEL.RESNETS.WIDTH_PER_GROUP", "8", "MODEL.RESNETS.STEM_OUT_CHANNELS", "16",
        "MODEL.RESNETS.RES2_OUT_CHANNELS", "32", "MODEL.FPN.OUT_CHANNELS", "32",
        "INPUT.MIN_SIZE_TRAIN", "(64,)", "INPUT.MAX_SIZE_TRAIN", "64", "INPUT.MIN_SIZE_TEST", "64",
        "INPUT.MAX_SIZE_TEST", "64", "SOLVER.IMS_PER_BATCH", "4", "SOLVER.WARMUP_ITERS", "0",
        "DATALOADER.NUM_WORKERS", "0", "MODEL.DEVICE", "cpu", "TEST.BEST_METRIC", ""]  # fmt: skip


@pytest.fixture
def cls_set(tmp_path):
    """24 images of 12 patients, 8 findings (Nodule = a bright disc), as tiny_nih_cls_*."""
    folder = tmp_path / "cls"
    (folder / "images").mkdir(parents=True)
    rows, rng = [], np.random.default_rng(0)
    for i in range(24):
        name = f"{i // 2 + 1:08d}_{i % 2:03d}.png"
        img = rng.integers(60, 90, (64, 64), dtype=np.uint8)
        label = "No Finding"
        if i % 3 == 0:
            cv2.circle(img, (20 + i, 30), 6, 220, -1)
            label = "Nodule"
        cv2.imwrite(str(folder / "images" / name), img)
        rows.append(f"{name},{label},{i % 2},{i // 2 + 1},50,M,PA,64,64,0.1,0.1\n")
    (folder / "Data_Entry_2017_v2020.csv").write_text(NIH_ENTRY_HEADER + "".join(rows))
    names = register_nih_cls("tiny_nih_cls", str(folder), "no_such_box_set",
                             ("Atelectasis", "Cardiomegaly", "Effusion", "Infiltration", "Mass",
                              "Nodule", "Pneumonia", "Pneumothorax"))  # fmt: skip
    yield "tiny_nih_cls"
    for n in names:
        DatasetCatalog.remove(n)
        MetadataCatalog.remove(n)


def test_classifier_train_eval_and_detector_from_its_trunk(cls_set, tiny_dataset, tmp_path):
    out = tmp_path / "clf"
    train_net = load_tool("train_net")
    cfg = os.path.join(REPO, "configs/phantom/classifier_R_50_slim.yaml")
    train_net.cli(["--config-file", cfg, *SLIM, "DATASETS.TRAIN", f"('{cls_set}_all',)",
                   "DATASETS.TEST", f"('{cls_set}_all',)", "SOLVER.MAX_ITER", "3",
                   "CXR.VIS.PERIOD", "3", "CXR.VIS.NUM_IMAGES", "1",
                   "OUTPUT_DIR", str(out)])  # fmt: skip
    ckpt = out / "model_final.pth"
    assert ckpt.is_file()
    assert (out / "inference" / f"{cls_set}_all" / "roc_curves.png").is_file()
    acc = EventAccumulator(glob.glob(f"{out}/events.out.tfevents.*")[0], {"images": 0}).Reload()
    assert "cxr/gradcam/0" in acc.Tags()["images"]  # Grad-CAM overlay in TensorBoard
    assert "cls/auroc_macro" in acc.Tags()["scalars"]

    ev = tmp_path / "eval"
    res = load_tool("eval").main(["--config-file", cfg, "--checkpoint", str(ckpt), "--dataset",
                                  f"{cls_set}_all", "--bootstrap", "30", "--output", str(ev),
                                  "--gradcam", "1", *SLIM])  # fmt: skip
    assert res["checkpoints"][0]["auroc_macro"] == res["checkpoints"][0]["auroc_macro"]  # not NaN
    m = json.load(open(ev / "metrics.json"))
    assert m["settings"]["bootstrap_unit"] == "patient"
    lo, hi = m["ci95"]["per_class.Nodule.auroc"]
    assert sorted(os.listdir(ev / "gradcam")) == ["00000_00000001_000.png", "gradcam.csv"]
    (row,) = csv.DictReader(open(ev / "gradcam" / "gradcam.csv", encoding="utf-8"))
    names = MetadataCatalog.get(f"{cls_set}_all").thing_classes
    assert row["explained"].split()[0] in names and row["map_in_boxes"] == ""  # top finding
    assert lo <= m["per_class"]["Nodule"]["auroc"] <= hi

    again = load_tool("eval").main(["--dataset", f"{cls_set}_all", "--predictions",
                                    str(ev / "predictions.json"), "--output", str(tmp_path / "f"),
                                    "--no-plots"])  # fmt: skip
    assert again.metrics["per_class"]["Nodule"]["auroc"] == m["per_class"]["Nodule"]["auroc"]

    det = tmp_path / "det"
    det_cfg = os.path.join(REPO, "configs/phantom/retinanet_demo_from_classifier.yaml")
    train_net.cli(["--config-file", det_cfg, *SLIM, "MODEL.TRUNK_WEIGHTS", str(ckpt),
                   "DATASETS.TRAIN", f"('{tiny_dataset}',)", "DATASETS.TEST", "()",
                   "MODEL.RETINANET.NUM_CLASSES", "2", "SOLVER.MAX_ITER", "1",
                   "SOLVER.BASE_LR", "0.0", "DATALOADER.SAMPLER_TRAIN", "TrainingSampler",
                   "OUTPUT_DIR", str(det)])  # fmt: skip
    det_state = torch.load(det / "model_final.pth", weights_only=True)["model"]
    clf_state = torch.load(ckpt, weights_only=True)["model"]
    for k in ("stem.conv1.weight", "res5.0.conv1.weight"):  # trained at LR 0: still equal
        assert torch.equal(det_state[f"backbone.bottom_up.{k}"], clf_state[f"backbone.{k}"])


def test_predict_writes_gradcam_overlays_of_positive_boxes(tmp_path):
    from cxr.config import load_config
    from cxr.engine import Trainer
    from cxr.engine.checkpoint import CXRCheckpointer

    from ..conftest import write_tiny_images

    write_tiny_images(str(tmp_path / "in"), n=2)
    cfg_file = os.path.join(REPO, "configs/nih/retinanet_R_18_FPN.yaml")
    opts = ["MODEL.DEVICE", "cpu", "MODEL.RETINANET.NUM_CLASSES", "2", "INPUT.MIN_SIZE_TEST", "96",
            "INPUT.MAX_SIZE_TEST", "96"]  # fmt: skip
    torch.manual_seed(0)
    CXRCheckpointer(Trainer.build_model(load_config(cfg_file, opts)), str(tmp_path)).save("m")
    out = tmp_path / "pred"
    load_tool("predict").main(["--config-file", cfg_file, "--checkpoint", str(tmp_path / "m.pth"),
                               "--input", str(tmp_path / "in"), "--output", str(out),
                               "--classes", "a,b", "--cm-threshold", "0", "--gradcam",
                               *opts])  # fmt: skip
    cams = sorted(f for f in os.listdir(out / "overlays") if f.endswith("_gradcam.png"))
    assert len(cams) == 2
    img = cv2.imread(str(out / "overlays" / cams[0]))
    assert img.shape == (64, 64, 3)  # the input image's size (the model ran at 96 px)
    assert img.std() > 0


def test_classifier_checkpoints_are_ranked_by_auroc_by_default(cls_set, tmp_path):
    """tools/eval.py on a folder of classifier checkpoints, no --best-metric: ranked by the
    classifier evaluator's auroc_macro (best.json written, summary columns the classifier's);
    a metric the evaluation lacks is an error listing those it has."""
    from detectron2.modeling import build_model

    from cxr.engine import setup_config

    cfg_file = os.path.join(REPO, "configs/phantom/classifier_R_50_slim.yaml")
    cfg = setup_config(cfg_file, SLIM)
    run = tmp_path / "run"
    run.mkdir()
    for i, name in enumerate(("model_0000001.pth", "model_final.pth")):
        torch.manual_seed(i)
        torch.save({"model": build_model(cfg).state_dict(), "iteration": i}, run / name)
    argv = ["--config-file", cfg_file, "--checkpoint", str(run), "--dataset", f"{cls_set}_all",
            "--bootstrap", "0", "--no-plots", *SLIM]  # fmt: skip
    res = load_tool("eval").main([*argv[:-len(SLIM)], "--output", str(tmp_path / "ev"), *SLIM])
    rows = res["checkpoints"]
    assert len(rows) == 2 and "AP50" not in rows[0] and "AP" not in rows[0]
    best = json.load(open(tmp_path / "ev" / "best.json"))
    assert best["metric"] == "auroc_macro"
    assert best["value"] == max(r["auroc_macro"] for r in rows)
    with pytest.raises(ValueError, match=r"--best-metric 'AP50' is not a metric.*auroc_macro"):
        load_tool("eval").main([*argv[:-len(SLIM)], "--best-metric", "AP50",
                                "--output", str(tmp_path / "ev2"), *SLIM])  # fmt: skip

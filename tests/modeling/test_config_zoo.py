"""Every shipped config builds, trains one step on a synthetic batch and infers on CPU."""
from __future__ import annotations

import glob
import os

import pytest
import torch

from cxr.config import load_config
from detectron2.checkpoint import DetectionCheckpointer
from detectron2.modeling import build_model
from detectron2.utils.events import EventStorage

from .synthetic import SMALL_OPTS, num_classes_of, synthetic_batch

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CONFIGS = sorted(
    os.path.relpath(f, REPO)
    for f in glob.glob(os.path.join(REPO, "configs/**/*.yaml"), recursive=True)
    if not os.path.basename(f).startswith("Base-") and "/configs/tune/" not in f  # search spaces
)
DELIVERED = [
    f"configs/nih/{m}.yaml"
    for m in ("retinanet_R_18_FPN", "retinanet_R_50_FPN", "efficientdet_d0", "efficientdet_d1",
              "efficientdet_lite0", "faster_rcnn_R_50_FPN_focal")
]  # fmt: skip


def test_zoo_complete():
    assert set(DELIVERED) <= set(CONFIGS)
    for area in ("vindr", "rsna", "phantom", "quick_schedules"):
        assert any(c.startswith(f"configs/{area}/") for c in CONFIGS), area


PRETRAINED_STARTS = {
    "efficientdet_d0_coco": "pretrained/tf_efficientdet_d0_coco.pth",
    "retinanet_R_50_FPN_coco": "detectron2://COCO-Detection/retinanet_R_50_FPN_3x/",
    "retinanet_R_50_FPN_imagenet": "detectron2://ImageNetPretrained/MSRA/R-50.pkl",
    "retinanet_densenet121_FPN_xrv": "pretrained/xrv-densenet121-res224-all.pth",
}


@pytest.mark.parametrize("area", ["nih", "vindr", "rsna"])
def test_pretrained_starts_per_dataset(area):
    for name, weights in PRETRAINED_STARTS.items():
        cfg = load_config(os.path.join(REPO, f"configs/{area}/{name}.yaml"))
        assert (cfg.MODEL.WEIGHTS or cfg.MODEL.TIMM.WEIGHTS).startswith(weights), name
        assert cfg.SOLVER.BASE_LR < 0.01  # fine-tuning rate, below the from-scratch one


# vindr/ and rsna/ pretrained starts differ from nih/'s only in classes and data sets.
TRAINED = [c for c in CONFIGS if not (c.split("/")[1] in ("vindr", "rsna") and any(
    c.endswith(f"/{name}.yaml") for name in PRETRAINED_STARTS))]  # fmt: skip


@pytest.mark.parametrize("config", TRAINED)
def test_config_trains_a_step_and_infers(config):
    torch.manual_seed(0)
    cfg = load_config(os.path.join(REPO, config), SMALL_OPTS)
    model = build_model(cfg)
    batch = synthetic_batch(num_classes_of(cfg), channels=len(cfg.MODEL.PIXEL_MEAN))
    classifier = cfg.MODEL.META_ARCHITECTURE == "CXRClassifier"
    for i, b in enumerate(batch):  # image labels (multi-hot) for the classifier configs
        b["labels"] = torch.full((cfg.MODEL.CLASSIFIER.NUM_CLASSES,), float(i == 0))
    model.train()
    with EventStorage():
        losses = model(batch)
    total = sum(losses.values())
    assert torch.isfinite(total), losses
    total.backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None for g in grads)  # every trainable parameter took part
    assert any(g.abs().sum() > 0 for g in grads)

    model.eval()
    with torch.no_grad():
        out = model([{k: batch[1][k] for k in ("image", "height", "width")}])
    if classifier:
        scores = out[0]["scores"]
        assert scores.shape == (cfg.MODEL.CLASSIFIER.NUM_CLASSES,)
        assert 0 < scores.min() and scores.max() < 1
        return
    inst = out[0]["instances"]
    assert inst.image_size == (64, 64)
    assert len(inst) <= cfg.TEST.DETECTIONS_PER_IMAGE
    if len(inst):
        assert 0 <= inst.scores.min() and inst.scores.max() <= 1
        assert int(inst.pred_classes.max()) < num_classes_of(cfg)


def test_local_model_weights_load(tmp_path):
    """MODEL.WEIGHTS pointing to a local file restores every tensor (detectron2 checkpointer)."""
    cfg = load_config(os.path.join(REPO, "configs/nih/efficientdet_lite0.yaml"), SMALL_OPTS)
    torch.manual_seed(1)
    src = build_model(cfg)
    path = str(tmp_path / "model.pth")
    torch.save({"model": src.state_dict()}, path)
    torch.manual_seed(2)
    dst = build_model(cfg)
    DetectionCheckpointer(dst).resume_or_load(path, resume=False)
    for (k, a), b in zip(src.state_dict().items(), dst.state_dict().values()):
        assert torch.equal(a, b), k

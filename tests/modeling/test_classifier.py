"""CXRClassifier: build from configs, train/eval outputs, losses against torch, trunk transfer."""

from __future__ import annotations

import os

import pytest
import torch
from detectron2.modeling import build_model
from torch.nn import functional as F

from cxr.config import load_config
from cxr.modeling.meta_arch.classifier import (
    CLASSIFICATION_LOSS_REGISTRY,
    asymmetric_loss,
    positive_weights_from_datasets,
    trunk_of,
)
from cxr.modeling.trunk_transfer import load_classifier_trunk

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SLIM_R50 = [  # the demo's quarter-width ResNet-50: the real architecture, small tensors
    "MODEL.RESNETS.WIDTH_PER_GROUP", 16, "MODEL.RESNETS.STEM_OUT_CHANNELS", 32,
    "MODEL.RESNETS.RES2_OUT_CHANNELS", 64, "MODEL.FPN.OUT_CHANNELS", 32, "MODEL.DEVICE", "cpu",
]  # fmt: skip


def _cfg(path: str, *opts):
    return load_config(os.path.join(REPO, "configs", path), list(opts) + ["MODEL.DEVICE", "cpu"])


def _batch(n=2, size=64, classes=14, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [
        {"image": torch.randint(0, 255, (3, size, size), generator=g, dtype=torch.uint8),
         "labels": (torch.rand(classes, generator=g) < 0.3).float()}
        for _ in range(n)
    ]  # fmt: skip


def test_classifier_trains_and_predicts_probabilities_and_embeddings():
    cfg = _cfg("nih/classifier_R_50.yaml", *SLIM_R50)
    model = build_model(cfg)
    assert type(model).__name__ == "CXRClassifier"
    assert not any(k.startswith("backbone.fpn") for k in model.state_dict())  # trunk only
    batch = _batch()
    losses = model(batch)
    assert set(losses) == {"loss_cls"} and torch.isfinite(losses["loss_cls"])
    losses["loss_cls"].backward()
    assert model.backbone.stem.conv1.weight.grad.abs().sum() > 0  # the trunk learns
    model.eval()
    with torch.no_grad():
        out = model(batch)
    assert len(out) == 2 and out[0]["scores"].shape == (14,)
    assert ((out[0]["scores"] > 0) & (out[0]["scores"] < 1)).all()
    assert out[0]["embedding"].shape == (512,)  # res5 channels of the slim trunk


def test_training_loss_is_bce_with_positive_weights_on_the_head_logits():
    cfg = _cfg("nih/classifier_R_50.yaml", *SLIM_R50, "MODEL.CLASSIFIER.POS_WEIGHT", [2.0] * 14,
               "MODEL.CLASSIFIER.DROPOUT", 0.0)  # fmt: skip
    model = build_model(cfg)
    batch = _batch()
    with torch.no_grad():
        loss = model(batch)["loss_cls"]
        logits = model.head(model.feature_map(model.preprocess_image(batch).tensor).mean((2, 3)))
    targets = torch.stack([b["labels"] for b in batch])
    ref = F.binary_cross_entropy_with_logits(logits, targets, pos_weight=torch.full((14,), 2.0))
    assert torch.allclose(loss, ref, atol=1e-6)


def test_asymmetric_and_focal_reduce_to_bce():
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(5, 7, generator=g) * 3
    t = (torch.rand(5, 7, generator=g) < 0.4).float()
    w = torch.rand(7, generator=g) + 0.5
    ref = F.binary_cross_entropy_with_logits(logits, t, pos_weight=w)
    assert torch.allclose(asymmetric_loss(logits, t, 0.0, 0.0, 0.0, w), ref, atol=1e-6)
    focal = CLASSIFICATION_LOSS_REGISTRY.get("focal")
    assert torch.allclose(focal(logits, t, w, {"focal_gamma": 0.0}), ref, atol=1e-6)
    # hand-computed ASL: a negative with p below the clip margin contributes nothing
    z = torch.tensor([[-4.0]])  # p = 0.018 < 0.05
    assert asymmetric_loss(z, torch.zeros(1, 1), 4.0, 0.0, 0.05).item() == 0.0


def test_positive_weights_count_training_labels():
    from detectron2.data import DatasetCatalog

    name = "cxr_test_cls_counts"
    recs = [{"file_name": f"{i}.png", "labels": [int(i < 1), int(i < 3), 0]} for i in range(4)]
    DatasetCatalog.register(name, lambda: recs)
    try:
        assert positive_weights_from_datasets([name], 3) == [3.0, 1 / 3, 1.0]
        with pytest.raises(ValueError, match="field labels has 3 entries, expected 2"):
            positive_weights_from_datasets([name], 2)
    finally:
        DatasetCatalog.remove(name)


@pytest.mark.parametrize(
    "classifier, detector, opts",
    [
        ("nih/classifier_R_50.yaml", "nih/retinanet_R_50_FPN_from_classifier.yaml", SLIM_R50),
        ("nih/classifier_efficientnet_b0.yaml", "nih/efficientdet_d0_from_classifier.yaml",
         ["MODEL.BIFPN.NUM_LAYERS", 1]),
    ],
)  # fmt: skip
def test_detector_trunk_equals_classifier_trunk_after_transfer(
    tmp_path, classifier, detector, opts
):
    torch.manual_seed(0)
    clf = build_model(_cfg(classifier, *opts))
    path = str(tmp_path / "model_final.pth")
    torch.save({"model": clf.state_dict(), "iteration": 9}, path)
    det_cfg = _cfg(detector, *opts, "MODEL.TRUNK_WEIGHTS", path)
    torch.manual_seed(1)
    det = build_model(det_cfg)
    before = {k: v.clone() for k, v in det.state_dict().items()}
    report = load_classifier_trunk(det, det_cfg.MODEL.TRUNK_WEIGHTS)
    trunk, name = trunk_of(det.backbone)
    assert name in ("bottom_up", "trunk")
    assert not report.missing and not report.shape_mismatch and not report.unused
    clf_state = clf.state_dict()
    for k, v in trunk.state_dict().items():
        assert torch.equal(v, clf_state[f"backbone.{k}"]), k
    after = det.state_dict()
    prefix = f"backbone.{name}."
    changed = [k for k in after if not torch.equal(after[k], before[k])]
    assert changed and all(k.startswith(prefix) for k in changed)  # FPN / BiFPN / head untouched


def test_transfer_prefers_ema_weights_and_refuses_non_classifier_files(tmp_path):
    clf = build_model(_cfg("nih/classifier_R_50.yaml", *SLIM_R50))
    ema = {k: v + 1 if v.is_floating_point() else v for k, v in clf.state_dict().items()}
    path = str(tmp_path / "c.pth")
    torch.save({"model": clf.state_dict(), "ema": {"weights": ema, "updates": 3}}, path)
    det = build_model(_cfg("nih/retinanet_R_50_FPN.yaml", *SLIM_R50))
    load_classifier_trunk(det, path)
    w = det.backbone.bottom_up.stem.conv1.weight
    assert torch.equal(w, ema["backbone.stem.conv1.weight"])
    bad = str(tmp_path / "d.pth")
    torch.save({"model": {"head.0.weight": torch.zeros(1)}}, bad)
    with pytest.raises(ValueError, match="not a classifier checkpoint"):
        load_classifier_trunk(det, bad)
    eff = build_model(_cfg("nih/efficientdet_d0.yaml", "MODEL.BIFPN.NUM_LAYERS", 1))
    with pytest.raises(ValueError, match="no trunk tensor matches backbone.trunk"):
        load_classifier_trunk(eff, path)

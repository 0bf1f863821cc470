"""tools/convert_weights.py end to end: effdet (with OUT.yaml and --eval-only on the converted
D0), torchvision; each prints what it kept, dropped and re-initialized."""
from __future__ import annotations

import os
import sys

import pytest
import torch
import torchvision

from cxr.config import load_config
from detectron2.checkpoint import DetectionCheckpointer
from detectron2.modeling import build_model

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(REPO, "tools"))

import convert_weights  # noqa: E402
import train_net  # noqa: E402

effdet = pytest.importorskip("effdet", reason="effdet (requirements-dev.txt) is not installed")

from tests.checkpoint.effdet_models import random_effdet  # noqa: E402

SMALL = ["MODEL.DEVICE", "cpu", "INPUT.MIN_SIZE_TEST", "64", "INPUT.MAX_SIZE_TEST", "64",
         "DATALOADER.NUM_WORKERS", "0"]  # fmt: skip


@pytest.fixture(scope="module")
def converted_d0(tmp_path_factory) -> str:
    """A random effdet efficientdet_d0 (COCO's 90 classes) converted for 2 classes."""
    tmp = tmp_path_factory.mktemp("d0")
    src = str(tmp / "efficientdet_d0.pth")
    torch.save(random_effdet("efficientdet_d0", 128).state_dict(), src)
    out = str(tmp / "d0_cxr.pth")
    convert_weights.main(["effdet", "--arch", "efficientdet_d0", "--input", src, "--output", out,
                          "--num-classes", "2"])  # fmt: skip
    return out


def test_effdet_writes_checkpoint_config_and_report(converted_d0, capsys, tmp_path):
    out = converted_d0
    cfg = load_config(out[: -len(".pth")] + ".yaml", SMALL)
    assert cfg.MODEL.WEIGHTS == out and cfg.MODEL.RETINANET.NUM_CLASSES == 2
    assert cfg.MODEL.BIFPN.PRESET == "D0" and cfg.INPUT.FORMAT == "RGB"
    assert cfg.DATASETS.TRAIN == ("nih_bbox_train",)  # _BASE_ is the NIH zoo config
    model = build_model(cfg)
    state = torch.load(out, weights_only=True)["model"]
    incompatible = model.load_state_dict(state, strict=True)
    assert not incompatible.missing_keys
    # the report (printed by the fixture's run; rerun to capture it)
    src = str(tmp_path / "d0.pth")
    torch.save(random_effdet("efficientdet_d0", 128, seed=4).state_dict(), src)
    convert_weights.main(["effdet", "--arch", "efficientdet_d0", "--input", src, "--output",
                          str(tmp_path / "x.pth"), "--num-classes", "2"])  # fmt: skip
    text = capsys.readouterr().out
    assert "dropped 2, re-initialized 2" in text
    assert "dropped: class_net.predict.conv_pw.weight" in text
    assert "re-initialized: head.cls_score.1.weight" in text


def test_train_net_eval_only_runs_on_converted_d0(converted_d0, tiny_dataset, tmp_path):
    config = os.path.join(REPO, "configs/nih/efficientdet_d0.yaml")
    argv = ["--eval-only", "--config-file", config,
            "MODEL.WEIGHTS", converted_d0, "MODEL.RETINANET.NUM_CLASSES", "2",
            "DATASETS.TEST", f"('{tiny_dataset}',)", "OUTPUT_DIR", str(tmp_path), *SMALL]  # fmt: skip
    results = train_net.main(train_net.argument_parser().parse_args(argv))
    assert results  # evaluated on the tiny dataset


def test_torchvision_subcommand(tmp_path, capsys):
    torch.manual_seed(0)
    tv = torchvision.models.resnet18(weights=None)
    src = tmp_path / "resnet18.pth"
    torch.save(tv.state_dict(), src)
    out = str(tmp_path / "R-18-tv.pth")
    convert_weights.main(["torchvision", "--input", str(src), "--output", out])
    text = capsys.readouterr().out
    assert "dropped: fc.weight" in text
    # every BatchNorm's counter is dropped: one line with their count, not one line each
    counters = sum(1 for k in tv.state_dict() if k.endswith("num_batches_tracked"))
    assert counters == 20 and text.count("num_batches_tracked") == 1
    assert f"dropped: {counters} tensors named *.num_batches_tracked" in text
    cfg = load_config(os.path.join(REPO, "configs/phantom/retinanet_R_18_FPN.yaml"),
                      ["MODEL.DEVICE", "cpu", "MODEL.RESNETS.STRIDE_IN_1X1", "False"])  # fmt: skip
    model = build_model(cfg)
    DetectionCheckpointer(model).load(out)
    torch.testing.assert_close(model.backbone.bottom_up.res3[0].conv2.weight,
                               tv.layer2[0].conv2.weight, rtol=0, atol=0)  # fmt: skip


def test_coco_efficientdet_start_config_takes_the_90_class_file(tmp_path):
    """configs/nih/efficientdet_d0_coco.yaml loads a tf_efficientdet_d0 conversion that kept
    COCO's 90 classes: every tensor but the class layer, which keeps its prior-bias init."""
    src = str(tmp_path / "tf_d0.pth")
    torch.save(random_effdet("tf_efficientdet_d0", 128).state_dict(), src)
    out = str(tmp_path / "tf_efficientdet_d0_coco.pth")
    convert_weights.main(
        ["effdet", "--arch", "tf_efficientdet_d0", "--input", src, "--output", out]
    )
    cfg = load_config(os.path.join(REPO, "configs/nih/efficientdet_d0_coco.yaml"), SMALL)
    model = build_model(cfg)
    DetectionCheckpointer(model).load(out)
    state = torch.load(out, weights_only=True)["model"]
    for k, v in model.state_dict().items():
        if not k.startswith("head.cls_score.1."):
            assert torch.equal(v, state[k]), k
    torch.testing.assert_close(model.head.cls_score[1].bias, torch.full((72,), -4.59511985013459))


def test_effdet_refuses_a_state_of_another_architecture(tmp_path):
    """An efficientdet_d0 state dict converted as efficientdet_d1: refused before anything is
    written, naming the first tensors that differ (D1's BiFPN is wider, its trunk deeper)."""
    src = str(tmp_path / "d0.pth")
    torch.save(random_effdet("efficientdet_d0", 128).state_dict(), src)
    out = tmp_path / "d1.pth"
    first = r"first: backbone\.laterals\.3\.weight \(64, 320, 1, 1\) vs \(88, 320"
    with pytest.raises(ValueError, match=r"does not fit efficientdet_d1: 310 tensors differ in "
                       r"shape.*" + first):  # fmt: skip
        convert_weights.main(["effdet", "--arch", "efficientdet_d1", "--input", src,
                              "--output", str(out)])  # fmt: skip
    assert not out.exists() and not (tmp_path / "d1.yaml").exists()


def test_loading_a_start_of_another_architecture_stops(converted_d0):
    """A converted D0 loaded into the D1 config: 310 of its tensors the model names would
    be skipped (another shape), so loading stops, naming the key that lets it start anyway."""
    from cxr.engine.checkpoint import WeightsMismatchError, load_model_weights

    cfg = load_config(os.path.join(REPO, "configs/nih/efficientdet_d1.yaml"),
                      [*SMALL, "MODEL.RETINANET.NUM_CLASSES", "2"])  # fmt: skip
    model = build_model(cfg)
    with pytest.raises(WeightsMismatchError, match=r"310 of the \d+ checkpoint tensors.*"
                       r"MODEL\.WEIGHTS_MAX_SKIPPED \(now 0\.25\)"):  # fmt: skip
        load_model_weights(model, converted_d0, max_skipped=cfg.MODEL.WEIGHTS_MAX_SKIPPED)
    load_model_weights(model, converted_d0, max_skipped=1.0)  # the override starts anyway

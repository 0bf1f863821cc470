"""torchxrayvision trunks -> cxr trunks, through torchxrayvision's own loader and a weights file
placed in its cache folder (as offline users do); features equal xrv's within 1e-4 (relative
to the largest activation) under its input convention."""
from __future__ import annotations

import os

import pytest
import torch
import torchvision

from cxr.checkpoint import (
    XRV_PIXEL_MEAN,
    XRV_PIXEL_STD,
    convert_xrv_state,
    load_xrv_model,
    write_checkpoint,
)
from cxr.checkpoint.torchxrayvision import xrv_weights_file
from cxr.config import load_config
from cxr.modeling import TimmBackbone
from detectron2.checkpoint import DetectionCheckpointer
from detectron2.modeling import build_model

from .test_resnet import assert_features_equal, d2_resnet, perturb_bn

xrv = pytest.importorskip("torchxrayvision", reason="torchxrayvision (requirements-dev.txt)")
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _image_pair() -> tuple[torch.Tensor, torch.Tensor]:
    """(xrv input, cxr input) of one 8-bit film: xrv.datasets.normalize vs PIXEL_MEAN/STD."""
    img = torch.randint(0, 256, (64, 96), generator=torch.Generator().manual_seed(3)).float()
    x_xrv = torch.from_numpy(xrv.datasets.normalize(img.numpy(), 255)).float()[None, None]
    x_cxr = ((img - XRV_PIXEL_MEAN[0]) / XRV_PIXEL_STD[0])[None, None]
    torch.testing.assert_close(x_cxr, x_xrv, rtol=0, atol=1e-4)  # float32 rounding at 1024
    return x_xrv, x_cxr


def test_densenet121_res224_all_to_timm_densenet121(tmp_path):
    torch.manual_seed(0)
    src = perturb_bn(xrv.models.DenseNet(weights=None))
    _, path = xrv_weights_file("densenet121-res224-all", str(tmp_path))
    torch.save(src, path)  # the official file is a pickled xrv DenseNet
    model = load_xrv_model("densenet121-res224-all", str(tmp_path))
    state, report = convert_xrv_state("densenet121-res224-all", model.state_dict())
    assert {"classifier.weight", "classifier.bias"} <= set(report.dropped)
    weights = tmp_path / "xrv-densenet121.pth"
    torch.save(state, weights)
    ours = TimmBackbone(name="densenet121", in_chans=1, weights=str(weights)).eval()

    x_xrv, x_cxr = _image_pair()
    ref = {}
    for name in ("denseblock2", "denseblock3", "norm5"):
        getattr(model.features, name).register_forward_hook(
            lambda m, i, o, name=name: ref.__setitem__(name, o)
        )
    with torch.no_grad():
        model.features(x_xrv)
        out = ours(x_cxr)
    ref["norm5"] = torch.relu(ref["norm5"])  # xrv applies its ReLU after the features
    for c, name in zip(("c3", "c4", "c5"), ("denseblock2", "denseblock3", "norm5")):
        scale = max(1.0, float(ref[name].abs().max()))
        assert float((out[c] - ref[name]).abs().max()) <= 1e-4 * scale, c


def test_resnet50_res512_all_to_detectron2_resnet(tmp_path):
    torch.manual_seed(0)
    tv = torchvision.models.resnet50(num_classes=18, weights=None)
    tv.conv1 = torch.nn.Conv2d(1, 64, kernel_size=7, stride=2, padding=3, bias=False)
    perturb_bn(tv)
    _, path = xrv_weights_file("resnet50-res512-all", str(tmp_path))
    torch.save(tv.state_dict(), path)  # the official file is a torchvision state dict
    model = load_xrv_model("resnet50-res512-all", str(tmp_path))
    state, report = convert_xrv_state("resnet50-res512-all", model.state_dict())
    assert [k for k in report.dropped if "num_batches" not in k] == ["fc.bias", "fc.weight"]
    d2 = d2_resnet(50, 1)
    d2.load_state_dict({k.removeprefix("backbone.bottom_up."): v for k, v in state.items()})
    x_xrv, x_cxr = _image_pair()
    assert_features_equal(d2, model.model, x_cxr, x_xrv)

    # the ready config takes the converted file as MODEL.WEIGHTS
    out = tmp_path / "xrv-resnet50-res512-all.pth"
    write_checkpoint(str(out), state, {})
    cfg = load_config(os.path.join(REPO, "configs/nih/retinanet_R_50_FPN_xrv.yaml"),
                      ["MODEL.DEVICE", "cpu", "MODEL.WEIGHTS", str(out)])  # fmt: skip
    detector = build_model(cfg)
    DetectionCheckpointer(detector).load(cfg.MODEL.WEIGHTS)
    torch.testing.assert_close(detector.backbone.bottom_up.stem.conv1.weight, tv.conv1.weight)


def test_missing_weights_offline_names_url_and_place(tmp_path, monkeypatch):
    import requests

    def no_network(*args, **kwargs):
        raise requests.exceptions.ConnectionError("no network")

    monkeypatch.setattr(requests, "get", no_network)
    url, path = xrv_weights_file("densenet121-res224-all", str(tmp_path))
    with pytest.raises(OSError) as e:
        load_xrv_model("densenet121-res224-all", str(tmp_path))
    assert url in str(e.value) and path in str(e.value)
    assert not os.path.exists(path)

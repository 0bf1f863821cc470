"""Any timm trunk under FPN / BiFPN: shapes, 2 training iterations, 1-channel input, weights."""
from __future__ import annotations

import math
import os
import socket

import pytest
import timm
import torch

from cxr.config import load_config
from cxr.modeling import PretrainedWeightsUnavailable, TimmBackbone
from cxr.modeling.backbone.timm_trunk import (
    create_timm_trunk,
    fetch_timm_state_dict,
    freeze_trunk,
)
from detectron2.modeling import build_backbone, build_model
from detectron2.utils.events import EventStorage

from .synthetic import SMALL_OPTS, synthetic_batch

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BASE = os.path.join(REPO, "configs/Base-CXR.yaml")
NECKS = {
    "fpn": ["MODEL.BACKBONE.NAME", "build_timm_fpn_backbone", "MODEL.FPN.OUT_CHANNELS", "32"],
    "bifpn": ["MODEL.BACKBONE.NAME", "build_timm_bifpn_backbone", "MODEL.BIFPN.OUT_CHANNELS", "32",
              "MODEL.BIFPN.NUM_LAYERS", "1", "MODEL.RETINANET.HEAD_NAME", "EfficientDetHead"],
}  # fmt: skip


@pytest.mark.parametrize("neck", sorted(NECKS))
@pytest.mark.parametrize("name", ["densenet121", "resnet50", "convnext_tiny"])
def test_timm_trunk_trains_two_iterations(name, neck):
    opts = SMALL_OPTS + NECKS[neck] + ["MODEL.TIMM.NAME", name, "MODEL.RETINANET.NUM_CONVS", "1"]
    cfg = load_config(BASE, opts)
    torch.manual_seed(0)
    model = build_model(cfg).train()
    assert list(model.backbone.output_shape()) == ["p3", "p4", "p5", "p6", "p7"]
    trunk_param = next(p for p in model.backbone.parameters())  # the stem's first conv
    before = trunk_param.detach().clone()
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.01)
    batch = synthetic_batch(8)
    for _ in range(2):
        with EventStorage():
            losses = model(batch)
        total = sum(losses.values())
        assert torch.isfinite(total), losses
        opt.zero_grad()
        total.backward()
        opt.step()
    assert not torch.equal(before, trunk_param.detach())  # the trunk trained too


def test_single_channel_input_and_strides():
    gray = ["MODEL.TIMM.NAME", "resnet18", "MODEL.PIXEL_MEAN", "[128]", "MODEL.PIXEL_STD", "[64]"]
    cfg = load_config(BASE, SMALL_OPTS + NECKS["fpn"] + gray)
    backbone = build_backbone(cfg).eval()
    assert backbone.bottom_up.trunk.conv1.in_channels == 1
    with torch.no_grad():
        out = backbone(torch.randn(1, 1, 64, 96))
    for k in range(3, 8):
        assert out[f"p{k}"].shape[-2:] == (math.ceil(64 / 2**k), math.ceil(96 / 2**k)), k


def test_local_weights_file_loads_into_trunk(tmp_path):
    """A timm classification state dict (as timm saves it) becomes the trunk's weights."""
    torch.manual_seed(3)
    full = timm.create_model("resnet18", pretrained=False)
    path = tmp_path / "resnet18.pth"
    torch.save(full.state_dict(), path)
    trunk = TimmBackbone(name="resnet18", weights=str(path)).trunk
    for k, v in trunk.state_dict().items():
        torch.testing.assert_close(v, full.state_dict()[k], rtol=0, atol=0, msg=k)
    # 1 channel: timm sums the first conv over its input channels.
    gray = TimmBackbone(name="resnet18", in_chans=1, weights=str(path)).trunk
    torch.testing.assert_close(gray.conv1.weight, full.conv1.weight.sum(1, keepdim=True))


@pytest.mark.parametrize("offline_mode", [True, False])
def test_pretrained_offline_fails_fast_naming_weights(monkeypatch, tmp_path, offline_mode):
    """HF_HUB_OFFLINE set, or no route to the hub (no retries then): an empty cache fails at
    once, naming the weights and MODEL.TIMM.WEIGHTS."""
    import huggingface_hub.constants as hf

    def no_route(*args, **kwargs):
        raise OSError("[Errno -2] Name or service not known")

    import huggingface_hub.utils._http as hub_http

    sent = []
    transport = type(hub_http.get_session()._transport)

    def send(self, request):  # what would go on the wire
        sent.append(str(request.url))
        raise OSError("[Errno -2] Name or service not known")

    monkeypatch.setattr(hf, "HF_HUB_OFFLINE", offline_mode)
    monkeypatch.setattr(socket, "create_connection", no_route)
    monkeypatch.setattr(transport, "handle_request", send)
    monkeypatch.setattr(hf, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    with pytest.raises(PretrainedWeightsUnavailable) as e:
        create_timm_trunk("resnet18", pretrained=True)
    msg = str(e.value)
    assert "timm/resnet18" in msg and "MODEL.TIMM.WEIGHTS" in msg and "resnet18" in msg
    with pytest.raises(PretrainedWeightsUnavailable, match="timm/resnet18"):
        fetch_timm_state_dict("resnet18")  # tools/convert_weights.py timm
    assert not sent  # nothing was sent (unreachable, each request is retried for a minute)


def test_freeze_at_counts_stages():
    trunk = create_timm_trunk("resnet18", out_indices=(2, 3, 4))
    assert freeze_trunk(trunk, 1) == 3  # conv1 weight, bn1 weight and bias
    assert all(not p.requires_grad for p in trunk.conv1.parameters())
    assert all(p.requires_grad for p in trunk.layer1.parameters())
    trunk = create_timm_trunk("resnet18", out_indices=(2, 3, 4))
    freeze_trunk(trunk, 3)  # stages 0 (act1, the stem's output) and 1 (layer1) frozen
    assert all(not p.requires_grad for p in trunk.layer1.parameters())
    assert all(p.requires_grad for p in trunk.layer2.parameters())


def test_freeze_at_matches_efficientnet_stages():
    trunk = create_timm_trunk("efficientnet_b0")
    freeze_trunk(trunk, 2)  # stem + blocks[0], as MODEL.EFFICIENTNET.FREEZE_AT always meant
    frozen = {n.split(".")[0] + ("." + n.split(".")[1] if n.startswith("blocks") else "")
              for n, p in trunk.named_parameters() if not p.requires_grad}  # fmt: skip
    assert frozen == {"conv_stem", "bn1", "blocks.0"}


def test_bad_strides_named():
    with pytest.raises(ValueError, match="OUT_INDICES"):
        create_timm_trunk("resnet18", out_indices=(1, 2, 3))

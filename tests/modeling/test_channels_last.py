"""MODEL.RETINANET.CHANNELS_LAST: a memory layout only (same losses, gradients and detections)."""

import torch
from detectron2.utils.events import EventStorage

from cxr.config import load_config
from detectron2.modeling import build_model

from .synthetic import SMALL_OPTS, synthetic_batch


def _model(channels_last: bool):
    opts = SMALL_OPTS + ["MODEL.RETINANET.CHANNELS_LAST", str(channels_last)]
    opts += ["MODEL.BACKBONE.FREEZE_AT", "0"]  # every parameter gets a gradient to compare
    cfg = load_config("configs/phantom/retinanet_demo_finetune.yaml", opts + ["MODEL.WEIGHTS", ""])
    torch.manual_seed(0)
    return build_model(cfg)


def test_channels_last_gives_the_same_losses_gradients_and_detections():
    # float64: the comparison sees the layout, not float32 summation order
    ref, cl = _model(False).double(), _model(True).double()
    cl.load_state_dict(ref.state_dict())
    conv = cl.backbone.bottom_up.stem.conv1.weight
    assert conv.is_contiguous(memory_format=torch.channels_last) and not conv.is_contiguous()
    batch = synthetic_batch(8)
    for x in batch:
        x["image"] = x["image"].double()
    with EventStorage(0):
        losses = [m(batch) for m in (ref, cl)]
    for k in losses[0]:
        torch.testing.assert_close(losses[0][k], losses[1][k], rtol=1e-9, atol=1e-9)
    for m, ls in zip((ref, cl), losses):
        sum(ls.values()).backward()
    g_ref = dict(ref.named_parameters())
    for n, p in cl.named_parameters():
        err = (p.grad - g_ref[n].grad).norm() / g_ref[n].grad.norm().clamp_min(1e-12)
        assert err < 1e-4, (n, float(err))
    ref.eval(), cl.eval()
    with torch.no_grad():
        a, b = (
            m([{k: v for k, v in x.items() if k != "instances"} for x in batch]) for m in (ref, cl)
        )
    for x, y in zip(a, b):
        torch.testing.assert_close(x["instances"].scores, y["instances"].scores, atol=1e-6, rtol=0)
        torch.testing.assert_close(
            x["instances"].pred_boxes.tensor, y["instances"].pred_boxes.tensor, atol=1e-4, rtol=0
        )

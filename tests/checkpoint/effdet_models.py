"""effdet EfficientDets with random weights (BN statistics, biases and fusion weights perturbed
so that every conversion rule matters), and the cxr model of a converted one."""
from __future__ import annotations

import os
import warnings

import pytest
import torch

from cxr.checkpoint import EFFDET_ARCHS
from cxr.config import load_config
from detectron2.modeling import build_model

effdet = pytest.importorskip("effdet", reason="effdet (requirements-dev.txt) is not installed")

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def random_effdet(arch: str, size: int, num_classes: int = 90, seed: int = 0) -> torch.nn.Module:
    """effdet ``arch`` for ``size`` x ``size`` inputs, random weights, eval mode."""
    torch.manual_seed(seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # effdet calls the deprecated torch.jit.script
        model = effdet.create_model(
            arch, pretrained=False, pretrained_backbone=False, image_size=(size, size),
            num_classes=num_classes,
        )  # fmt: skip
    g = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for name, b in model.named_buffers():
            if name.endswith("running_mean"):
                b.copy_(torch.randn(b.shape, generator=g) * 0.1)
            elif name.endswith("running_var"):
                b.copy_(torch.rand(b.shape, generator=g) + 0.5)
        for name, p in model.named_parameters():
            if name.startswith("backbone."):
                continue
            if name.endswith("edge_weights"):
                p.copy_(torch.rand(p.shape, generator=g) + 0.2)
            elif p.ndim == 1:  # BN affine and conv biases
                p.add_(torch.randn(p.shape, generator=g) * 0.1)
    return model.eval()


def cxr_model(arch: str, size: int, num_classes: int = 90, opts: list | None = None):
    """cxr's model for ``arch`` from its zoo config at ``size`` px, unnormalized input, CPU."""
    a = EFFDET_ARCHS[arch]
    cfg = load_config(
        os.path.join(REPO, "configs/nih", a.zoo_config),
        ["MODEL.BIFPN.PRESET", a.preset, "MODEL.ANCHOR_GENERATOR.ANCHOR_SCALE", str(a.anchor_scale),
         "MODEL.RETINANET.NUM_CLASSES", str(num_classes), "MODEL.DEVICE", "cpu",
         "MODEL.PIXEL_MEAN", "[0.0, 0.0, 0.0]", "MODEL.PIXEL_STD", "[1.0, 1.0, 1.0]",
         "INPUT.MIN_SIZE_TEST", str(size), "INPUT.MAX_SIZE_TEST", str(size), *(opts or [])],
    )  # fmt: skip
    return build_model(cfg).eval()

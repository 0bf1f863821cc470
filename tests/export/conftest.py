"""Fixtures for the export tests: phantom radiographs rendered locally, the shipped demo
RetinaNet, and an EfficientDet-D0 with random weights whose BN statistics are set from images
(:func:`benchmarks.deploy.calibrate_bn`)."""
from __future__ import annotations

import os

import numpy as np
import pytest
import torch

from benchmarks.deploy import calibrate_bn
from cxr.config import load_config
from cxr.data.phantom import render_phantom

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DEMO_CONFIG = os.path.join(REPO, "configs/phantom/retinanet_demo.yaml")
DEMO_WEIGHTS = os.path.join(REPO, "datasets/weights/retinanet_demo_phantom.pth")
D0_CONFIG = os.path.join(REPO, "configs/nih/efficientdet_d0.yaml")
# Lesions of a few real NIH boxes (finding, XYXY at 256 px).
_LESIONS = [
    [("Nodule", 150, 60, 170, 80), ("Cardiomegaly", 80, 120, 190, 200)],
    [("Effusion", 30, 150, 110, 230)],
    [("Mass", 60, 60, 110, 110), ("Atelectasis", 140, 160, 220, 200)],
]


@pytest.fixture(scope="session")
def phantom_images() -> list[np.ndarray]:
    """Three 256 px phantom radiographs (uint8, HxW)."""
    return [render_phantom(b, 256, np.random.default_rng(i)) for i, b in enumerate(_LESIONS)]


def _cfg(path: str, *opts) -> object:
    cfg = load_config(path, ["MODEL.DEVICE", "cpu", *opts])
    cfg.freeze()
    return cfg


@pytest.fixture(scope="session")
def demo_retinanet():
    """(cfg, eval-mode model with the shipped demo weights)."""
    from cxr.engine.inference import load_torch_model

    cfg = _cfg(DEMO_CONFIG)
    return cfg, load_torch_model(cfg, DEMO_WEIGHTS)[0]


@pytest.fixture(scope="session")
def random_d0(phantom_images):
    """(cfg, eval-mode EfficientDet-D0 with random weights) at 256 px."""
    from cxr.engine import Trainer

    cfg = _cfg(D0_CONFIG, "INPUT.MIN_SIZE_TEST", 256, "INPUT.MAX_SIZE_TEST", 256)
    torch.manual_seed(0)
    model = Trainer.build_model(cfg)
    calibrate_bn(model, phantom_images)
    return cfg, model

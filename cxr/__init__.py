"""cxr: a detectron2 plugin for lesion detection on chest X-rays.

``import cxr`` registers everything into detectron2: datasets (NIH ChestX-ray14 boxes, VinDr-CXR,
RSNA Pneumonia, the phantom set), dataset mappers, backbones, meta-architectures, ROI heads and
the medical evaluator. :mod:`cxr.compat` is imported first so that detectron2's source release
runs on today's torch and Pillow.
"""
from . import compat  # noqa: F401  (must come first)
from . import config  # noqa: F401
from . import data  # noqa: F401
from . import modeling  # noqa: F401
from . import evaluation  # noqa: F401
from . import engine  # noqa: F401

__version__ = "0.1.0"

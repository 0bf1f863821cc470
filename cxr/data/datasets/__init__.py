"""Chest X-ray dataset loaders (NIH, VinDr-CXR, RSNA) and their registration."""

from .common import AnnotationError  # noqa: F401
from .nih import load_nih  # noqa: F401
from .rsna import load_rsna  # noqa: F401
from .vindr import load_vindr  # noqa: F401
from .builtin import register_all_cxr  # noqa: F401

"""Data: image I/O, dataset loaders and registration, splits, phantom data, mappers."""

import os as _os

from . import config, mix_config  # noqa: F401  (register their config keys)
from .build import MAPPER_REGISTRY, build_mapper  # noqa: F401
from .io import ImageReadError, read_xray, read_xray_size  # noqa: F401
from . import mapper  # noqa: F401  (registers AlbumentationsMapper)
from . import cls_mapper  # noqa: F401  (registers ClassificationMapper)
from .datasets.builtin import register_all_cxr

register_all_cxr(_os.environ.get("DETECTRON2_DATASETS", "datasets"))

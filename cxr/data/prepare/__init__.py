"""Prepared copies of data sets: each film decoded once, resized by the long side, stored as PNG
files or WebDataset shards with a manifest (``tools/prepare_data.py``; docs/prepare.md).

The on-disk layout is described in :mod:`cxr.data.datasets.prepared`, which registers PNG copies
as ``<name>@<size>``.
"""

from .copy import CopySpec, PrepareError  # noqa: F401
from .film import prepare_film, safe_keys, scale_record  # noqa: F401
from .run import prepare_datasets, resolve_datasets  # noqa: F401
from .writers import PREPARE_FORMATS  # noqa: F401

"""cxr's configuration: new keys on top of detectron2's defaults, and safe-only YAML loading.

``add_cxr_config(cfg)`` adds every key cxr reads, like detectron2's ``add_pointrend_config``.
The keys are declared next to the code that reads them, each with a comment, by functions
registered in :data:`CONFIG_REGISTRY` (each area's ``config.py`` / ``*_config.py``, imported
with its package by ``import cxr``); this module calls them all, so it imports no area.

The files:

- ``cxr/data/config.py``: ``INPUT.MAPPER``, ``INPUT.ALBUMENTATIONS``,
  ``DATALOADER.SKIP_BAD_IMAGES``;
- ``cxr/data/mix_config.py``: ``INPUT.MIX``;
- ``cxr/modeling/config.py``: ``MODEL.TIMM``, ``MODEL.EFFICIENTNET``, ``MODEL.BIFPN`` and cxr's
  keys under ``MODEL.ANCHOR_GENERATOR``, ``MODEL.RETINANET``, ``MODEL.ROI_BOX_HEAD``;
- ``cxr/modeling/classifier_config.py``: ``MODEL.CLASSIFIER``, ``MODEL.TRUNK_WEIGHTS``;
- ``cxr/modeling/tta_config.py``: ``TEST.AUG`` (test-time augmentation);
- ``cxr/evaluation/config.py``: ``CXR.EVAL``;
- ``cxr/engine/config.py``: ``MODEL.EMA``, ``DATALOADER.NEGATIVE_FRACTION``, ``TEST.BEST_*``,
  ``TEST.VAL_LOSS_*``, ``CXR.VIS``;
- ``cxr/engine/swa_config.py``: ``SOLVER.SWA``;
- ``cxr/engine/mlflow_config.py``: ``CXR.MLFLOW`` (experiment tracking).

detectron2's ``CfgNode.load_yaml_with_base`` falls back to ``yaml.unsafe_load`` when
``yaml.safe_load`` fails, so a config file can run code. :class:`CfgNode` here loads every file,
``_BASE_`` files included, with ``yaml.safe_load`` only and refuses anything else with
:class:`UnsafeConfigError` before any of it is constructed.
"""

from __future__ import annotations

import os
from typing import Any

import yaml
from detectron2.config import CfgNode as _D2CfgNode
from detectron2.config import get_cfg as _d2_get_cfg

from .registry import NamedRegistry

__all__ = [
    "CONFIG_REGISTRY",
    "CfgNode",
    "UnsafeConfigError",
    "add_cxr_config",
    "get_cfg",
    "load_config",
    "load_yaml_safely",
]

BASE_KEY = "_BASE_"


class UnsafeConfigError(ValueError):
    """A config file is not plain YAML (e.g. it carries a ``!!python/...`` tag) or is malformed."""


def _merge(a: dict, b: dict) -> None:
    """Merge dict ``a`` into ``b`` recursively (``a`` wins), as detectron2 does for ``_BASE_``."""
    for k, v in a.items():
        if isinstance(v, dict) and isinstance(b.get(k), dict):
            _merge(v, b[k])
        else:
            b[k] = v


def load_yaml_safely(path: str, name: str, error: type[Exception] = UnsafeConfigError):
    """``yaml.safe_load`` of the file at ``path``: a non-standard tag (e.g. ``!!python/object``,
    never executed) or invalid YAML raises ``error`` with a message that starts with ``name``.

    Raises:
        FileNotFoundError: there is no file at ``path``.
    """
    try:
        with open(path, encoding="utf-8") as f:
            return yaml.safe_load(f)
    except yaml.constructor.ConstructorError as e:
        raise error(
            f"{name}: refused: the file needs a non-standard YAML tag ({e.problem}"
            f"{', ' + str(e.problem_mark).strip() if e.problem_mark else ''}). cxr loads configs "
            "with yaml.safe_load only; Python tags such as !!python/object are never executed."
        ) from None
    except yaml.YAMLError as e:
        raise error(f"{name}: not valid YAML: {e}") from None


def _safe_load_with_base(filename: str, _chain: tuple[str, ...] = ()) -> dict:
    path = os.path.abspath(os.path.expanduser(filename))
    if path in _chain:
        raise UnsafeConfigError(f"{filename}: _BASE_ cycle: {' -> '.join(_chain + (path,))}")
    try:
        data = load_yaml_safely(path, filename)
    except FileNotFoundError:
        raise FileNotFoundError(f"config file not found: {filename}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise UnsafeConfigError(
            f"{filename}: top level must be a mapping, got {type(data).__name__}"
        )
    if BASE_KEY in data:
        base = data.pop(BASE_KEY)
        if not isinstance(base, str):
            raise UnsafeConfigError(f"{filename}: field {BASE_KEY} must be a path string")
        base_path = os.path.expanduser(base)
        if not os.path.isabs(base_path):
            base_path = os.path.join(os.path.dirname(path), base_path)
        merged = _safe_load_with_base(base_path, _chain + (path,))
        _merge(data, merged)
        return merged
    return data


class CfgNode(_D2CfgNode):
    """detectron2's ``CfgNode`` with safe-only YAML loading (``allow_unsafe`` is ignored)."""

    @classmethod
    def load_yaml_with_base(cls, filename: str, allow_unsafe: bool = False) -> dict:
        return _safe_load_with_base(filename)

    def merge_from_file(self, cfg_filename: str, allow_unsafe: bool = False) -> None:
        super().merge_from_file(cfg_filename, allow_unsafe=False)


CONFIG_REGISTRY = NamedRegistry("CXR_CONFIG")
CONFIG_REGISTRY.__doc__ = """
Functions ``add_<name>_config(cfg)`` adding one area's keys in place, by name; each adds keys
no other one adds, so their order does not matter (they run sorted by name).
"""


def add_cxr_config(cfg: _D2CfgNode) -> None:
    """Add every cxr key to ``cfg`` in place (idempotent): each :data:`CONFIG_REGISTRY` entry."""
    if cfg.get("CXR") is not None and cfg.CXR.get("_ADDED", False):
        return
    cfg.CXR = _D2CfgNode()
    # Internal marker so that add_cxr_config can be called twice.
    cfg.CXR._ADDED = True
    for name in CONFIG_REGISTRY.names():
        CONFIG_REGISTRY.get(name)(cfg)


def get_cfg() -> CfgNode:
    """detectron2's defaults plus every cxr key, as a safe-loading :class:`CfgNode`."""
    cfg = _d2_get_cfg()
    add_cxr_config(cfg)
    return CfgNode(cfg)


def load_config(config_file: str | None = None, opts: list[Any] | None = None) -> CfgNode:
    """Build a config from ``get_cfg()``, a YAML file (safe-loaded) and ``KEY VALUE`` overrides."""
    cfg = get_cfg()
    if config_file:
        cfg.merge_from_file(config_file)
    if opts:
        cfg.merge_from_list(list(opts))
    return cfg

"""The settings an exported ``model.onnx`` carries (its test sizes) win over a config file's:
:func:`config_for_exported` is what ``tools/eval.py`` and ``tools/predict.py`` apply to their
config when they run an exported model."""

from __future__ import annotations

import logging
import os
from typing import Sequence

from cxr_runtime.detector import load_metadata

from .paths import input_not_found

__all__ = ["EXPORTED_CONFIG_KEYS", "config_for_exported"]

logger = logging.getLogger(__name__)


#: Config keys whose values an exported ``model.onnx`` stores (its metadata names): the model
#: runs at these, whatever the config says.
EXPORTED_CONFIG_KEYS = {
    "INPUT.MIN_SIZE_TEST": "min_size_test",
    "INPUT.MAX_SIZE_TEST": "max_size_test",
}


def _override_keys(opts: Sequence[str]) -> set[str]:
    return {str(k) for k in list(opts)[0::2]}


def config_for_exported(cfg, exported: Sequence[str], opts: Sequence[str] = ()):
    """``cfg`` with the settings stored in the exported models ``exported``
    (:data:`EXPORTED_CONFIG_KEYS`): those of the files win over the config file's; only an
    explicit ``KEY VALUE`` override in ``opts`` replaces them, with a warning.

    Args:
        cfg: the tool's frozen config.
        exported: ``model.onnx`` files (other paths are passed over).
        opts: the tool's ``KEY VALUE`` overrides.

    Returns:
        a frozen copy of ``cfg`` (``cfg`` itself when no exported file is given).

    Raises:
        SystemExit: the exported files store different values (evaluate them one by one).
    """
    for p in exported:
        if str(p).endswith(".onnx") and not os.path.isfile(p):
            raise input_not_found("checkpoint", p, "--checkpoint")
    metas = {p: load_metadata(p) for p in exported if str(p).endswith(".onnx")}
    if not metas:
        return cfg
    cfg = cfg.clone()
    cfg.defrost()
    explicit = _override_keys(opts)
    for key, name in EXPORTED_CONFIG_KEYS.items():
        stored = {m[name] for m in metas.values()}
        if len(stored) > 1:
            raise SystemExit(f"the exported models store different {key} ({sorted(stored)}) in "
                             f"{', '.join(metas)}: evaluate them one at a time")  # fmt: skip
        value, node, leaf = stored.pop(), *_config_node(cfg, key)
        if key in explicit and getattr(node, leaf) != value:
            logger.warning("%s %s (KEY VALUE override) replaces the %s stored in %s: the model "
                           "runs at a size it was not exported at", key, getattr(node, leaf),
                           value, ", ".join(metas))  # fmt: skip
        elif getattr(node, leaf) != value:
            logger.info("%s %s from %s (the config's %s is not used)", key, value,
                        ", ".join(metas), getattr(node, leaf))  # fmt: skip
            setattr(node, leaf, value)
    cfg.freeze()
    return cfg


def _config_node(cfg, key: str):
    *path, leaf = key.split(".")
    node = cfg
    for part in path:
        node = node[part]
    return node, leaf

"""Building a model for inference from a config and a checkpoint (what eval and predict use).

Models come from an inference backend chosen by name (``--backend``) from
:data:`INFERENCE_BACKEND_REGISTRY`: ``torch`` (here), ``onnxruntime`` or ``openvino``
(:mod:`cxr.export.backends`, an exported ``model.onnx``). Each returns a module with detectron2's
model interface; test-time augmentation wraps it when ``TEST.AUG.ENABLED``.
"""

from __future__ import annotations

import hashlib
import logging
import os
from typing import Sequence

import torch
from detectron2.modeling import build_model

from ..engine.checkpoint import load_model_weights
from ..modeling.test_time_augmentation import build_tta_model
from ..registry import NamedRegistry

__all__ = [
    "EXPORTED_CONFIG_KEYS",
    "INFERENCE_BACKEND_REGISTRY",
    "config_for_exported",
    "load_inference_model",
    "load_torch_model",
    "weights_digest",
]

logger = logging.getLogger(__name__)

INFERENCE_BACKEND_REGISTRY = NamedRegistry("INFERENCE_BACKEND")
INFERENCE_BACKEND_REGISTRY.__doc__ = """
Inference backends by name: ``load(cfg, checkpoint, *, allow_pickle) -> (model, extra)``, the
model with detectron2's interface in eval mode, ``extra`` the checkpoint's other entries.
"""


@INFERENCE_BACKEND_REGISTRY.register_as("torch")
def load_torch_model(
    cfg, checkpoint: str, *, allow_pickle: bool = False
) -> tuple[torch.nn.Module, dict]:
    """Build ``cfg``'s model, load ``checkpoint`` (EMA weights when the file has them), put it
    in eval mode and fold its BatchNorms (``fuse_for_inference``, where the model has it).

    The architecture print goes to the DEBUG level (training prints it once, at INFO).

    Args:
        cfg: a config from :func:`cxr.engine.setup_config`.
        checkpoint: ``.pth`` file (``.pkl`` only with ``allow_pickle``).

    Returns:
        ``(model, extra)``: the model and the checkpoint's other entries (e.g. ``iteration``).
    """
    model = build_model(cfg)
    logger.debug("Model:\n%s", model)
    extra = load_model_weights(model, checkpoint, allow_pickle=allow_pickle,
                               max_skipped=cfg.MODEL.WEIGHTS_MAX_SKIPPED)  # fmt: skip
    model.eval()
    if hasattr(model, "fuse_for_inference"):
        model.fuse_for_inference()
    return model, extra


def load_inference_model(
    cfg, checkpoint: str, *, allow_pickle: bool = False, backend: str = "torch"
) -> tuple[torch.nn.Module, dict]:
    """The model of inference backend ``backend`` for ``cfg`` and ``checkpoint``, wrapped in
    test-time augmentation when ``cfg.TEST.AUG.ENABLED``.

    Args:
        cfg: a config from :func:`cxr.engine.setup_config`.
        checkpoint: ``.pth`` file for ``torch`` (``.pkl`` only with ``allow_pickle``);
            ``model.onnx`` from ``tools/export.py`` for ``onnxruntime`` / ``openvino``.
        backend: an :data:`INFERENCE_BACKEND_REGISTRY` name.

    Returns:
        ``(model, extra)``: the model and the checkpoint's other entries (e.g. ``iteration``).
    """
    from .. import export  # noqa: F401  (registers the onnxruntime and openvino backends)

    if backend not in INFERENCE_BACKEND_REGISTRY:
        choices = INFERENCE_BACKEND_REGISTRY.names()
        raise ValueError(f"unknown backend {backend!r}; choose from {choices}")
    load = INFERENCE_BACKEND_REGISTRY.get(backend)
    model, extra = load(cfg, checkpoint, allow_pickle=allow_pickle)
    return build_tta_model(cfg, model), extra


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
    from cxr_runtime.detector import load_metadata

    from .paths import input_not_found

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


def weights_digest(model: torch.nn.Module, checkpoint: str | None = None) -> str:
    """SHA-256 of a model's state (names, dtypes, shapes and bytes of every tensor): equal
    digests mean equal weights, whatever file they came from. A model without tensors (an
    ONNX Runtime session) is identified by the bytes of its ``checkpoint`` file instead."""
    h = hashlib.sha256()
    state = model.state_dict()
    if not state and checkpoint:
        with open(checkpoint, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        return h.hexdigest()
    for name, t in sorted(state.items()):
        t = t.detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()

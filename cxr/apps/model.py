"""Building a model for inference from a config and a checkpoint (what eval and predict use)."""

from __future__ import annotations

import hashlib
import logging

import torch
from detectron2.modeling import build_model

from ..engine.checkpoint import load_model_weights

__all__ = ["load_inference_model", "weights_digest"]

logger = logging.getLogger(__name__)


def load_inference_model(
    cfg, checkpoint: str, *, allow_pickle: bool = False
) -> tuple[torch.nn.Module, dict]:
    """Build ``cfg``'s model, load ``checkpoint`` (EMA weights when the file has them) and put
    it in eval mode.

    The architecture print goes to the DEBUG level (training prints it once, at INFO).

    Args:
        cfg: a config from :func:`cxr.engine.setup_config`.
        checkpoint: ``.pth`` file (``.pkl`` only with ``allow_pickle``).

    Returns:
        ``(model, extra)``: the model and the checkpoint's other entries (e.g. ``iteration``).
    """
    model = build_model(cfg)
    logger.debug("Model:\n%s", model)
    extra = load_model_weights(model, checkpoint, allow_pickle=allow_pickle)
    model.eval()
    return model, extra


def weights_digest(model: torch.nn.Module) -> str:
    """SHA-256 of a model's state (names, dtypes, shapes and bytes of every tensor): equal
    digests mean equal weights, whatever file they came from."""
    h = hashlib.sha256()
    for name, t in sorted(model.state_dict().items()):
        t = t.detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()

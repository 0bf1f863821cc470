"""Crash-safe checkpoints and safe checkpoint loading.

:class:`CXRCheckpointer` is detectron2's ``DetectionCheckpointer`` with

* atomic writes: a checkpoint and the ``last_checkpoint`` tag are written to a temporary file
  in the same folder, flushed and fsync'ed, then renamed over the target, so a kill at any
  instant leaves the previous complete checkpoint (and a tag pointing at a complete file);
* safe loading: ``.pth`` files through ``torch.load(weights_only=True)`` (tensors and plain
  containers only, no code); pickle-based ``.pkl`` files (detectron2 model-zoo format) are
  refused unless ``allow_pickle=True``, because unpickling can run arbitrary code.
"""
from __future__ import annotations

import logging
import os
from typing import Any

import torch
from detectron2.checkpoint import DetectionCheckpointer

from ..fileio import atomic_write, write_bytes_atomic

__all__ = ["CXRCheckpointer", "UnsafeCheckpointError", "load_model_weights"]

logger = logging.getLogger(__name__)


class UnsafeCheckpointError(ValueError):
    """A checkpoint file would need pickle (or unsafe torch.load) to be read."""


class CXRCheckpointer(DetectionCheckpointer):
    """DetectionCheckpointer with atomic saves and pickle-free loading (see module docstring)."""

    def __init__(self, model, save_dir: str = "", *, allow_pickle: bool = False, **checkpointables):
        super().__init__(model, save_dir, **checkpointables)
        self.allow_pickle = allow_pickle
        if save_dir and self.save_to_disk:
            self._remove_stale_temporaries()

    def _remove_stale_temporaries(self) -> None:
        """Delete temp files a killed save left behind (never a complete checkpoint)."""
        for name in os.listdir(self.save_dir) if os.path.isdir(self.save_dir) else []:
            if name.startswith(".") and name.endswith(".tmp"):
                os.unlink(os.path.join(self.save_dir, name))
                self.logger.info("Removed the partial file %s of an interrupted save", name)

    def save(self, name: str, **kwargs: Any) -> None:
        if not self.save_dir or not self.save_to_disk:
            return
        data = {"model": self.model.state_dict()}
        for key, obj in self.checkpointables.items():
            data[key] = obj.state_dict()
        data.update(kwargs)
        basename = f"{name}.pth"
        save_file = os.path.join(self.save_dir, basename)
        self.logger.info("Saving checkpoint to %s", save_file)
        atomic_write(save_file, lambda f: torch.save(data, f))
        self.tag_last_checkpoint(basename)

    def tag_last_checkpoint(self, last_filename_basename: str) -> None:
        write_bytes_atomic(
            os.path.join(self.save_dir, "last_checkpoint"), last_filename_basename.encode()
        )

    def _load_file(self, filename: str) -> dict:
        if filename.endswith(".pkl") and not self.allow_pickle:
            raise UnsafeCheckpointError(
                f"{filename}: refused: .pkl checkpoints are Python pickles and can run code when "
                "loaded. Convert it to .pth, or pass --allow-pickle if you trust its source."
            )
        if filename.endswith(".pkl"):
            return super()._load_file(filename)
        try:
            with open(filename, "rb") as f:
                loaded = torch.load(f, map_location="cpu", weights_only=True)
        except FileNotFoundError:
            raise
        except Exception as e:  # torch raises UnpicklingError/RuntimeError for unsafe content
            raise UnsafeCheckpointError(
                f"{filename}: cannot be loaded with torch.load(weights_only=True): {e}"
            ) from None
        if not isinstance(loaded, dict):
            raise UnsafeCheckpointError(f"{filename}: not a checkpoint dict")
        if "model" not in loaded:
            loaded = {"model": loaded}
        return loaded


def load_model_weights(model, path: str, *, use_ema: bool = True, allow_pickle: bool = False) -> dict:
    """Load a checkpoint into ``model`` for evaluation or inference.

    When the checkpoint carries EMA weights (key ``"ema"``, written when ``MODEL.EMA.ENABLED``)
    and ``use_ema`` is True, those are loaded instead of the live weights.

    Returns:
        The remaining checkpoint entries (e.g. ``iteration``).
    """
    checkpointer = CXRCheckpointer(model, allow_pickle=allow_pickle)
    checkpoint = checkpointer._load_file(path)
    ema = checkpoint.pop("ema", None)
    if use_ema and ema is not None:
        logger.info("Loading the EMA weights of %s", path)
        checkpoint["model"] = ema["weights"]
    checkpointer._load_model(checkpoint)
    return {k: v for k, v in checkpoint.items() if k != "model"}


def export_model_weights(src: str, dst: str, *, use_ema: bool = True, half: bool = False) -> dict:
    """Write the model weights of training checkpoint ``src`` alone to ``dst`` (atomically).

    Optimizer, scheduler, sampler and trainer state are dropped; the EMA weights replace the live
    ones when present and ``use_ema``. ``half`` stores floating-point tensors as float16 (they
    load back into float32 models). Returns the small metadata dict stored beside the weights.
    """
    ckpt = CXRCheckpointer(None)._load_file(src)
    weights = ckpt["ema"]["weights"] if use_ema and "ema" in ckpt else ckpt["model"]
    if half:
        weights = {k: v.half() if v.dtype == torch.float32 else v for k, v in weights.items()}
    meta = {"source": os.path.basename(src), "iteration": ckpt.get("iteration"), "ema": use_ema and "ema" in ckpt}
    atomic_write(dst, lambda f: torch.save({"model": weights, "meta": meta}, f))
    return meta

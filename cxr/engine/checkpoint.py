"""Crash-safe checkpoints and safe checkpoint loading.

:class:`CXRCheckpointer` is detectron2's ``DetectionCheckpointer`` with

* atomic writes: a checkpoint and the ``last_checkpoint`` tag are written to a temporary file
  in the same folder, flushed and fsync'ed, then renamed over the target, so a kill at any
  instant leaves the previous complete checkpoint (and a tag pointing at a complete file);
* safe loading: ``.pth`` files through ``torch.load(weights_only=True)`` (tensors and plain
  containers only, no code); ``.pkl`` files (detectron2 / Detectron / Caffe2 model-zoo format:
  numpy arrays in dicts) through a restricted unpickler that admits numpy arrays, numpy scalars
  and plain containers only, refusing any other global by name before anything runs;
  ``allow_pickle=True`` reads other pickles with plain pickle (trusted files only);
* remote weights: ``detectron2://...`` and ``https://...`` paths resolve through detectron2's
  path handlers (downloaded once into the iopath cache, ``$FVCORE_CACHE``); without network and
  without a cached copy they fail at once, naming the URL and where to put the file.
"""
from __future__ import annotations

import logging
import os
import pickle
import socket
from typing import Any

import torch
from detectron2.checkpoint import DetectionCheckpointer
from detectron2.utils.file_io import PathManager

from ..fileio import atomic_write, write_bytes_atomic
from ..torch_io import load_weights_only

__all__ = [
    "CXRCheckpointer",
    "UnsafeCheckpointError",
    "WeightsMismatchError",
    "WeightsUnavailableError",
    "load_model_weights",
    "load_numpy_pickle",
    "resolve_weights_path",
]

# Globals a numpy-only pickle needs: array / scalar / dtype reconstruction (numpy 1 and 2 module
# names; _frombuffer for protocol 5), OrderedDict, and the bytes encoder of protocol-2 pickles
# written by Python 3. Each only builds arrays, dicts or bytes from data.
_NUMPY_PICKLE_GLOBALS = frozenset(
    [(f"numpy.{core}.multiarray", "_reconstruct") for core in ("core", "_core")]
    + [(f"numpy.{core}.multiarray", "scalar") for core in ("core", "_core")]
    + [(f"numpy.{core}.numeric", "_frombuffer") for core in ("core", "_core")]
    + [("numpy", "ndarray"), ("numpy", "dtype"), ("collections", "OrderedDict")]
    + [("_codecs", "encode")]
)
# Seconds a download may wait on the network before the offline message is raised.
_NETWORK_TIMEOUT_S = 20.0

logger = logging.getLogger(__name__)


#: Default of ``MODEL.WEIGHTS_MAX_SKIPPED``: the largest share of a checkpoint's tensors (those
#: whose names the model has) that loading may skip for another shape.
MAX_SKIPPED_SHARE = 0.25


class WeightsMismatchError(ValueError):
    """A checkpoint whose tensors mostly do not fit the model (another architecture)."""


class UnsafeCheckpointError(ValueError):
    """A checkpoint file would need pickle (or unsafe torch.load) to be read."""


class WeightsUnavailableError(OSError):
    """Remote weights could not be downloaded and are not cached locally."""


class _NumpyOnlyUnpickler(pickle.Unpickler):
    def __init__(self, file, filename: str):
        super().__init__(file, encoding="latin1")  # Python 2 (Caffe2) pickles hold str bytes
        self.filename = filename

    def find_class(self, module: str, name: str):
        if (module, name) in _NUMPY_PICKLE_GLOBALS:
            return super().find_class(module, name)
        raise UnsafeCheckpointError(
            f"{self.filename}: refused: the pickle needs the global {module}.{name}; only numpy "
            "arrays and plain containers load without --allow-pickle (unpickling other objects "
            "can run code). Pass --allow-pickle only if you trust its source."
        )


def load_numpy_pickle(filename: str) -> Any:
    """Unpickle ``filename`` admitting only numpy arrays / scalars / dtypes and plain containers.

    Raises:
        UnsafeCheckpointError: naming the first other global; nothing of the payload runs.
    """
    try:
        with open(filename, "rb") as f:
            return _NumpyOnlyUnpickler(f, filename).load()
    except (UnsafeCheckpointError, FileNotFoundError):
        raise
    except Exception as e:  # truncated or not a pickle
        raise UnsafeCheckpointError(f"{filename}: not a readable pickle: {e}") from None


def _as_detectron2_checkpoint(data: Any, filename: str) -> dict:
    """detectron2's reading of a model-zoo pickle: its own format (``model`` + ``__author__``)
    as is; otherwise Caffe2 / Detectron blobs, with detectron2's name-matching heuristics."""
    if not isinstance(data, dict):
        raise UnsafeCheckpointError(f"{filename}: not a checkpoint dict")
    if "model" in data and "__author__" in data:
        logger.info("Reading %s written by %r", filename, data["__author__"])
        return data
    blobs = data.get("blobs", data)  # detection models nest their arrays under "blobs"
    blobs = {k: v for k, v in blobs.items() if not k.endswith("_momentum")}
    return {"model": blobs, "__author__": "Caffe2", "matching_heuristics": True}


def resolve_weights_path(path: str) -> str:
    """A local file for ``path``: itself, or the cached download of a ``detectron2://`` /
    ``https://`` path (detectron2's path handlers; fetched once into the iopath cache).

    Raises:
        WeightsUnavailableError: no network (or an unreachable host) and no cached copy.
    """
    if not path or os.path.isfile(path) or "://" not in path:
        return path
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(_NETWORK_TIMEOUT_S)
    try:
        return PathManager.get_local_path(path)
    except OSError as e:  # URLError, socket timeout, DNS failure
        url = path.replace("detectron2://", "https://dl.fbaipublicfiles.com/detectron2/")
        cache = os.path.expanduser(os.getenv("FVCORE_CACHE", "~/.torch/iopath_cache"))
        raise WeightsUnavailableError(
            f"MODEL.WEIGHTS {path}: cannot download {url} ({e}). Offline: fetch that URL on a "
            "machine with internet, copy the file here and set MODEL.WEIGHTS to its local path "
            f"(or place it in the download cache under {cache}/, same sub-folders as the URL)."
        ) from None
    finally:
        socket.setdefaulttimeout(previous)


class CXRCheckpointer(DetectionCheckpointer):
    """DetectionCheckpointer with atomic saves and pickle-free loading (see module docstring)."""

    def __init__(self, model, save_dir: str = "", *, allow_pickle: bool = False,
                 max_skipped: float = MAX_SKIPPED_SHARE, **checkpointables):  # fmt: skip
        """
        Args:
            allow_pickle: read non-numpy ``.pkl`` files with plain pickle (trusted files only).
            max_skipped: the largest share of the checkpoint's tensors named like model
                tensors that may be skipped for another shape (``MODEL.WEIGHTS_MAX_SKIPPED``);
                above it loading stops (1.0: never).
        """
        super().__init__(model, save_dir, **checkpointables)
        self.allow_pickle = allow_pickle
        self.max_skipped = max_skipped
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

    def load(self, path: str, *args: Any, **kwargs: Any) -> dict:
        """As detectron2's, with ``detectron2://`` / URL paths resolved (or an offline error)."""
        return super().load(resolve_weights_path(path), *args, **kwargs)

    def _load_model(self, checkpoint: Any):
        """detectron2's loading, then :data:`MAX_SKIPPED_SHARE`'s rule (before detectron2 logs
        a line per skipped tensor)."""
        incompatible = super()._load_model(checkpoint)
        skipped = len(incompatible.incorrect_shapes)
        # the model tensors the checkpoint names (skipped ones are reported as missing too)
        named = len(self.model.state_dict()) - len(incompatible.missing_keys) + skipped
        if named and skipped / named > self.max_skipped:
            first = "; ".join(f"{k} {tuple(a)} vs {tuple(b)}"
                              for k, a, b in incompatible.incorrect_shapes[:3])  # fmt: skip
            raise WeightsMismatchError(
                f"{skipped} of the {named} checkpoint tensors the model has would be skipped "
                f"(another shape, e.g. {first}): the weights are for another architecture or "
                f"size. Use weights of this architecture, or raise MODEL.WEIGHTS_MAX_SKIPPED "
                f"(now {self.max_skipped}) to start anyway"
            )
        return incompatible

    def _log_incompatible_keys(self, incompatible) -> None:
        """detectron2's report, except that a class layer for another class count (a
        ``cls_score`` tensor differing in its output dimension only, e.g. a COCO start's 90-class
        layer in an 8-class model) is one INFO line: it keeps its initialization, as meant."""
        layer = [(k, a, b) for k, a, b in incompatible.incorrect_shapes
                 if "cls_score" in k.split(".") and tuple(a[1:]) == tuple(b[1:])]  # fmt: skip
        if layer:
            names = {k for k, _, _ in layer}
            self.logger.info(
                "Class layer %s keeps its initialization: %d outputs in the checkpoint, %d in "
                "this model (another class count)", ", ".join(sorted(names)), layer[0][1][0],
                layer[0][2][0],
            )  # fmt: skip
            incompatible = incompatible._replace(
                incorrect_shapes=[x for x in incompatible.incorrect_shapes if x[0] not in names],
                missing_keys=[k for k in incompatible.missing_keys if k not in names],
            )
        super()._log_incompatible_keys(incompatible)

    def _load_file(self, filename: str) -> dict:
        if filename.endswith(".pkl"):
            try:
                data = load_numpy_pickle(filename)
            except UnsafeCheckpointError:
                if not self.allow_pickle:
                    raise
                self.logger.warning("%s: not numpy-only; unpickled (--allow-pickle)", filename)
                return super()._load_file(filename)
            return _as_detectron2_checkpoint(data, filename)
        loaded = load_weights_only(filename, error=UnsafeCheckpointError)
        if not isinstance(loaded, dict):
            raise UnsafeCheckpointError(f"{filename}: not a checkpoint dict")
        if "model" not in loaded:
            loaded = {"model": loaded}
        return loaded


def load_model_weights(
    model, path: str, *, use_ema: bool = True, allow_pickle: bool = False,
    max_skipped: float = MAX_SKIPPED_SHARE,
) -> dict:
    """Load a checkpoint into ``model`` for evaluation or inference.

    When the checkpoint carries EMA weights (key ``"ema"``, written when ``MODEL.EMA.ENABLED``)
    and ``use_ema`` is True, those are loaded instead of the live weights.

    Returns:
        The remaining checkpoint entries (e.g. ``iteration``).

    Raises:
        WeightsMismatchError: more than ``max_skipped`` of the tensors would be skipped.
    """
    checkpointer = CXRCheckpointer(model, allow_pickle=allow_pickle, max_skipped=max_skipped)
    checkpoint = checkpointer._load_file(resolve_weights_path(path))
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
    meta = {
        "source": os.path.basename(src),
        "iteration": ckpt.get("iteration"),
        "ema": use_ema and "ema" in ckpt,
    }
    atomic_write(dst, lambda f: torch.save({"model": weights, "meta": meta}, f))
    return meta

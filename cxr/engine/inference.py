"""Building a model for inference from a config and a checkpoint (what eval, predict and export
use).

Models come from an inference backend chosen by name (``--backend``) from
:data:`INFERENCE_BACKEND_REGISTRY`: ``torch`` (the config's model and a ``.pth`` checkpoint),
``onnxruntime`` or ``openvino`` (an exported ``model.onnx`` run by the torch-free
:class:`~cxr_runtime.detector.OnnxDetector`; only :class:`OnnxRuntimeModel` turns its arrays
into detectron2 ``Instances``). Each returns a module with detectron2's model interface;
test-time augmentation wraps it when ``TEST.AUG.ENABLED``. This module sits below both
:mod:`cxr.apps` and :mod:`cxr.export`, which use it.
"""

from __future__ import annotations

import hashlib
import logging

import numpy as np
import torch
from cxr_runtime.detector import Detections, OnnxDetector
from detectron2.modeling import build_model
from detectron2.structures import Boxes, Instances
from torch import nn

from ..modeling.test_time_augmentation import build_tta_model
from ..registry import NamedRegistry
from .checkpoint import load_model_weights

__all__ = [
    "INFERENCE_BACKEND_REGISTRY",
    "OnnxRuntimeModel",
    "detections_to_instances",
    "instances_to_detections",
    "load_inference_model",
    "load_onnxruntime_model",
    "load_openvino_model",
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


def instances_to_detections(inst: Instances) -> Detections:
    """detectron2 ``Instances`` (pred_boxes XYXY_ABS, scores, pred_classes) -> Detections."""
    inst = inst.to("cpu")
    return Detections(
        inst.pred_boxes.tensor.numpy().astype(np.float32),
        inst.scores.numpy().astype(np.float32),
        inst.pred_classes.numpy().astype(np.int64),
    )


def detections_to_instances(det: Detections, image_hw: tuple[int, int]) -> Instances:
    """Detections (boxes XYXY_ABS) -> detectron2 ``Instances`` of an image of ``image_hw``."""
    return Instances(
        tuple(image_hw),
        pred_boxes=Boxes(torch.from_numpy(det.boxes)),
        scores=torch.from_numpy(det.scores),
        pred_classes=torch.from_numpy(det.classes),
    )


class OnnxRuntimeModel(nn.Module):
    """An :class:`OnnxDetector` behind detectron2's model interface.

    Inputs are the test mapper's dicts (``image``: (C, h, w) resized pixels; ``height`` /
    ``width``: the original size); outputs ``[{"instances": Instances}]`` in original pixels.
    The buffer ``file_sha256`` (the ONNX file's digest) makes two exports of the same weights
    compare equal, and different ones not, in :func:`weights_digest`.
    """

    def __init__(self, detector: OnnxDetector):
        super().__init__()
        self.detector = detector
        with open(detector.path, "rb") as f:
            digest = hashlib.sha256(f.read()).digest()
        self.register_buffer("file_sha256", torch.frombuffer(bytearray(digest), dtype=torch.uint8))

    def forward(self, batched_inputs: list[dict]) -> list[dict]:
        images = [x["image"].numpy().astype(np.float32) for x in batched_inputs]
        sizes = [(x.get("height", i.shape[1]), x.get("width", i.shape[2]))
                 for x, i in zip(batched_inputs, images)]  # fmt: skip
        dets = self.detector.run_resized(images, sizes)
        return [{"instances": detections_to_instances(d, s)} for d, s in zip(dets, sizes)]


def _load_exported(checkpoint: str, engine: str):
    if not checkpoint.endswith(".onnx"):
        raise ValueError(
            f"--backend {engine} needs --checkpoint DIR/model.onnx (tools/export.py), "
            f"got {checkpoint!r}"
        )
    return OnnxRuntimeModel(OnnxDetector(checkpoint, engine=engine)).eval(), {}


@INFERENCE_BACKEND_REGISTRY.register_as("onnxruntime")
def load_onnxruntime_model(cfg, checkpoint: str, *, allow_pickle: bool = False):
    """``checkpoint`` = an exported ``model.onnx``, run by ONNX Runtime on the CPU.

    Returns:
        ``(OnnxRuntimeModel, {})``.
    """
    return _load_exported(checkpoint, "onnxruntime")


@INFERENCE_BACKEND_REGISTRY.register_as("openvino")
def load_openvino_model(cfg, checkpoint: str, *, allow_pickle: bool = False):
    """``checkpoint`` = an exported ``model.onnx``, compiled by OpenVINO for the CPU.

    Returns:
        ``(OnnxRuntimeModel, {})`` (the adapter is the same; only the engine differs).
    """
    return _load_exported(checkpoint, "openvino")


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
    if backend not in INFERENCE_BACKEND_REGISTRY:
        choices = INFERENCE_BACKEND_REGISTRY.names()
        raise ValueError(f"unknown backend {backend!r}; choose from {choices}")
    load = INFERENCE_BACKEND_REGISTRY.get(backend)
    model, extra = load(cfg, checkpoint, allow_pickle=allow_pickle)
    return build_tta_model(cfg, model), extra


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

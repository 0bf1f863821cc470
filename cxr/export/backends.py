"""The ``onnxruntime`` inference backend (``--backend onnxruntime`` of ``tools/predict.py`` and
``tools/eval.py``): an exported ``model.onnx`` behind detectron2's model interface.

Registered in :data:`cxr.apps.model.INFERENCE_BACKEND_REGISTRY` next to ``torch``. The graph
and the numpy post-processing run without torch (:class:`~cxr.export.runtime.OnnxDetector`);
only this adapter turns arrays into detectron2 ``Instances``.
"""
from __future__ import annotations

import hashlib
import logging

import numpy as np
import torch
from torch import nn

from detectron2.structures import Boxes, Instances

from ..apps.model import INFERENCE_BACKEND_REGISTRY
from .runtime import Detections, OnnxDetector

__all__ = [
    "OnnxRuntimeModel",
    "detections_to_instances",
    "instances_to_detections",
    "load_onnxruntime_model",
    "load_openvino_model",
]

logger = logging.getLogger(__name__)


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
    compare equal, and different ones not, in :func:`cxr.apps.model.weights_digest`.
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

"""Inference backends for ``tools/predict.py`` and ``tools/eval.py`` (``--backend``).

Each backend is built by name from :data:`INFERENCE_BACKEND_REGISTRY` as
``build(cfg, checkpoint) -> nn.Module`` with detectron2's model interface
(``model(batched_inputs)`` -> ``[{"instances": Instances}]``, inputs resized by the test mapper,
boxes XYXY_ABS in each input's ``height`` x ``width``), so evaluation loops and
:class:`ModelDetector` (one image in, :class:`Detections` out) run any of them.
:func:`build_inference_backend` adds test-time augmentation when ``TEST.AUG.ENABLED``.

``torch``: the detectron2 model from ``cfg``, weights from the ``.pth`` checkpoint, BatchNorm
folded (``fuse_for_inference``). ``onnxruntime``: ``model.onnx`` written by ``tools/export.py``,
run by :class:`~cxr.export.runtime.OnnxDetector` (the graph and post-processing need no torch).
"""
from __future__ import annotations

import logging
import numpy as np
import torch
from torch import nn

from detectron2.structures import Boxes, Instances

from ..registry import NamedRegistry
from .runtime import Detections, OnnxDetector

__all__ = [
    "INFERENCE_BACKEND_REGISTRY",
    "OnnxRuntimeModel",
    "ModelDetector",
    "build_inference_backend",
    "detections_to_instances",
    "instances_to_detections",
]

logger = logging.getLogger(__name__)

INFERENCE_BACKEND_REGISTRY = NamedRegistry("INFERENCE_BACKEND")
INFERENCE_BACKEND_REGISTRY.__doc__ = """
Inference backends by ``--backend`` name: ``build(cfg, checkpoint) -> nn.Module`` (detectron2's
model interface).
"""


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


class ModelDetector:
    """A model with detectron2's interface as a :class:`Detections` detector: resize as
    ``ResizeShortestEdge`` (``INPUT.MIN_SIZE_TEST`` / ``MAX_SIZE_TEST``), run, boxes XYXY_ABS in
    the input image's pixels.

    A gray 2-D image is repeated over the model's input channels (the same in RGB and BGR).
    """

    def __init__(self, cfg, model: nn.Module):
        import detectron2.data.transforms as T

        self.model = model
        self.channels = len(cfg.MODEL.PIXEL_MEAN)
        self.aug = T.ResizeShortestEdge(
            [cfg.INPUT.MIN_SIZE_TEST, cfg.INPUT.MIN_SIZE_TEST], cfg.INPUT.MAX_SIZE_TEST
        )

    def __call__(self, image: np.ndarray) -> Detections:
        if image.ndim == 2:
            image = np.repeat(image[:, :, None], self.channels, axis=2)
        h, w = image.shape[:2]
        img = self.aug.get_transform(image).apply_image(image)
        t = torch.as_tensor(np.ascontiguousarray(img.transpose(2, 0, 1)).astype("float32"))
        with torch.no_grad():
            out = self.model([{"image": t, "height": h, "width": w}])[0]
        return instances_to_detections(out["instances"])


class OnnxRuntimeModel(nn.Module):
    """An :class:`OnnxDetector` behind detectron2's model interface (for evaluation loops).

    Inputs are the test mapper's dicts (``image``: (C, h, w) resized pixels; ``height`` /
    ``width``: the original size); outputs ``[{"instances": Instances}]`` in original pixels.
    """

    def __init__(self, detector: OnnxDetector):
        super().__init__()
        self.detector = detector

    def forward(self, batched_inputs: list[dict]) -> list[dict]:
        images = [x["image"].numpy().astype(np.float32) for x in batched_inputs]
        sizes = [(x.get("height", i.shape[1]), x.get("width", i.shape[2]))
                 for x, i in zip(batched_inputs, images)]  # fmt: skip
        dets = self.detector.run_resized(images, sizes)
        return [{"instances": detections_to_instances(d, s)} for d, s in zip(dets, sizes)]


@INFERENCE_BACKEND_REGISTRY.register_as("torch")
def torch_backend(cfg, checkpoint: str) -> nn.Module:
    """The cfg's model with ``checkpoint`` (.pth) loaded, in eval mode, BatchNorm folded."""
    from ..engine import Trainer
    from ..engine.checkpoint import load_model_weights

    model = Trainer.build_model(cfg)
    load_model_weights(model, checkpoint)
    model.eval()
    if hasattr(model, "fuse_for_inference"):
        model.fuse_for_inference()
    return model


@INFERENCE_BACKEND_REGISTRY.register_as("onnxruntime")
def onnxruntime_backend(cfg, checkpoint: str) -> nn.Module:
    """``checkpoint`` = an exported ``model.onnx``, run by ONNX Runtime on the CPU."""
    if not checkpoint.endswith(".onnx"):
        raise ValueError(
            f"--backend onnxruntime needs --checkpoint DIR/model.onnx (tools/export.py), "
            f"got {checkpoint!r}"
        )
    return OnnxRuntimeModel(OnnxDetector(checkpoint)).eval()


def build_inference_backend(name: str, cfg, checkpoint: str) -> nn.Module:
    """Backend ``name`` ("torch" or "onnxruntime") for ``cfg`` and ``checkpoint``, wrapped in
    test-time augmentation when ``cfg.TEST.AUG.ENABLED``."""
    from ..modeling.test_time_augmentation import build_tta_model

    if name not in INFERENCE_BACKEND_REGISTRY:
        choices = sorted(k for k, _ in INFERENCE_BACKEND_REGISTRY)
        raise ValueError(f"unknown backend {name!r}; choose from {choices}")
    return build_tta_model(cfg, INFERENCE_BACKEND_REGISTRY.get(name)(cfg, checkpoint))

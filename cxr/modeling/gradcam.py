"""Grad-CAM (Selvaraju et al. 2017) for the classifier and, per box, for RetinaNet detectors.

``cam = relu(sum_k alpha_k A_k)``, ``alpha_k`` = the spatial mean of ``d target / d A_k``, where
``A`` is a feature map and ``target`` a pre-sigmoid score. ``method="hirescam"`` (Draelos & Carin
2020) weights element-wise instead: ``cam = relu(sum_k (d target / d A_k) * A_k)``, so a map
keeps only the places whose features moved the target. With the classifier's average pooling
(``POOL: avg``) the gradient is the same at every place, so the two coincide; for a detector's
box (one anchor's logit) HiResCAM stays near the box (:data:`CAM_METHOD_REGISTRY`).

- classifier (:func:`classifier_cam`): ``A`` = the pooled trunk map, target = the class logit;
- detector (:func:`detection_box_cams`): per detected box, ``A`` = the FPN / BiFPN level of the
  anchor that produced the box (found by decoding every anchor: the one whose box equals the
  detection, i.e. the highest IoU), target = that anchor's logit of the box's class.

Maps are returned at the model's input resolution (the resized, unpadded image: pixels of
``inputs["image"]``), scaled to [0, 1] (all zero when the target has no positive evidence);
:func:`overlay` draws one on the image.
"""

from __future__ import annotations

import cv2
import numpy as np
import torch
from detectron2.layers import cat
from detectron2.structures import Boxes, pairwise_iou
from torch.nn import functional as F

from ..registry import NamedRegistry
from .meta_arch.classifier import global_pool

__all__ = [
    "CAM_METHOD_REGISTRY",
    "cam_from_gradients",
    "classifier_cam",
    "detection_box_cams",
    "image_classifier_cam",
    "image_detection_cam",
    "overlay",
]


CAM_METHOD_REGISTRY = NamedRegistry("CAM_METHOD")
CAM_METHOD_REGISTRY.__doc__ = """
Class activation map rules by name: ``fn(features, grads) -> (1, 1, h, w)`` unrectified map
from a feature map and the target's gradient (both (1, D, h, w)).
"""


@CAM_METHOD_REGISTRY.register_as("gradcam")
def _gradcam(features: torch.Tensor, grads: torch.Tensor) -> torch.Tensor:
    return (grads.mean((2, 3), keepdim=True) * features).sum(1, keepdim=True)


@CAM_METHOD_REGISTRY.register_as("hirescam")
def _hirescam(features: torch.Tensor, grads: torch.Tensor) -> torch.Tensor:
    return (grads * features).sum(1, keepdim=True)


def cam_from_gradients(
    features: torch.Tensor, grads: torch.Tensor, size: tuple[int, int], method: str = "gradcam"
):
    """The map of one image from ``features`` / ``grads`` (1, D, h, w) by ``method`` (a
    :data:`CAM_METHOD_REGISTRY` name), rectified, upsampled (bilinear) to ``size`` = (H, W) of
    the padded input and scaled to [0, 1]. Returns (H, W) numpy."""
    cam = F.relu(CAM_METHOD_REGISTRY.get(method)(features, grads))
    cam = F.interpolate(cam, size=size, mode="bilinear", align_corners=False)[0, 0]
    peak = cam.max()
    return (cam / peak if peak > 0 else cam).detach().cpu().numpy()


def classifier_cam(model, inputs: dict, class_index: int, method: str = "gradcam") -> np.ndarray:
    """Grad-CAM of a :class:`~cxr.modeling.meta_arch.classifier.CXRClassifier` for one class.

    Args:
        inputs: one mapped record (``image`` uint8 CHW).
        method: a :data:`CAM_METHOD_REGISTRY` name.
    Returns:
        (H, W) float map in [0, 1] at the size of ``inputs["image"]``.
    """
    was_training = model.training
    model.eval()
    try:
        with torch.enable_grad():
            images = model.preprocess_image([inputs])
            feats = model.feature_map(images.tensor).float()
            feats.retain_grad()
            logit = model.head(global_pool(feats, model.pool))[0, class_index]
            model.zero_grad(set_to_none=True)
            logit.backward()
            size = tuple(images.tensor.shape[-2:])
            cam = cam_from_gradients(feats, feats.grad, size, method)
    finally:
        model.train(was_training)
    h, w = images.image_sizes[0]
    return cam[:h, :w]


def detection_box_cams(
    model, inputs: dict, boxes: np.ndarray, classes: np.ndarray, method: str = "gradcam"
) -> list:
    """Grad-CAM of each detection of a detectron2 dense detector (RetinaNet / CXRRetinaNet).

    Args:
        inputs: one mapped record (``image`` uint8 CHW).
        boxes: (n, 4) detections, XYXY_ABS pixels of ``inputs["image"]`` (the model input, not
            the original image); classes: (n,) their class indices.
        method: a :data:`CAM_METHOD_REGISTRY` name.
    Returns:
        n (H, W) maps in [0, 1] at the size of ``inputs["image"]``.
    """
    was_training = model.training
    model.eval()
    out = []
    try:
        with torch.enable_grad():
            images = model.preprocess_image([inputs])
            feats = model.backbone(images.tensor)
            feats = [feats[f] for f in model.head_in_features]
            for f in feats:
                f.retain_grad()
            logits, deltas = model.head(feats)
            K = model.num_classes
            level_logits = [x.permute(0, 2, 3, 1).reshape(1, -1, K)[0] for x in logits]
            level_deltas = [x.permute(0, 2, 3, 1).reshape(1, -1, 4)[0] for x in deltas]
            anchors = model.anchor_generator(feats)
            decoded = Boxes(cat([model.box2box_transform.apply_deltas(d.detach(), a.tensor)
                                 for d, a in zip(level_deltas, anchors)]))  # fmt: skip
            sizes = np.cumsum([0] + [len(a) for a in anchors])
            iou = pairwise_iou(Boxes(torch.as_tensor(boxes, dtype=torch.float32)), decoded)
            for j, c in enumerate(np.asarray(classes, np.int64)):
                idx = int(iou[j].argmax())
                lvl = int(np.searchsorted(sizes, idx, side="right") - 1)
                model.zero_grad(set_to_none=True)
                for f in feats:
                    f.grad = None
                level_logits[lvl][idx - sizes[lvl], c].backward(retain_graph=True)
                size = tuple(images.tensor.shape[-2:])
                cam = cam_from_gradients(feats[lvl], feats[lvl].grad, size, method)
                h, w = images.image_sizes[0]
                out.append(cam[:h, :w])
    finally:
        model.train(was_training)
    return out


def overlay(image: np.ndarray, cam: np.ndarray, alpha: float = 0.4) -> np.ndarray:
    """``image`` (H, W) or (H, W, 3) uint8 gray/RGB with ``cam`` (H, W, [0, 1]) as a JET heat
    map blended in; returns (H, W, 3) uint8 RGB."""
    rgb = image if image.ndim == 3 else np.repeat(image[:, :, None], 3, axis=2)
    heat = cv2.applyColorMap(np.uint8(np.clip(cam, 0, 1) * 255), cv2.COLORMAP_JET)[:, :, ::-1]
    return np.uint8(np.clip((1 - alpha) * rgb + alpha * heat, 0, 255))


def _predictor_inputs(predictor, image: np.ndarray) -> tuple[dict, float, float]:
    """The model input ``predictor`` makes of ``image`` (channel order, resize) and the
    (y, x) scale from ``image`` pixels to input pixels."""
    img = image[:, :, ::-1] if predictor.input_format == "RGB" else image
    resized = predictor.aug.get_transform(img).apply_image(img)
    inputs = {"image": torch.as_tensor(np.ascontiguousarray(resized.transpose(2, 0, 1)))}
    return inputs, resized.shape[0] / image.shape[0], resized.shape[1] / image.shape[1]


def image_classifier_cam(
    predictor, image: np.ndarray, class_index: int, method: str = "gradcam"
) -> np.ndarray:
    """:func:`classifier_cam` of one class for an image as given to a predictor.

    Args:
        predictor: a detectron2 ``DefaultPredictor``-like object (``model``, ``aug``,
            ``input_format``) whose model is a ``CXRClassifier``.
        image: (H, W, C) uint8, as given to the predictor.
        method: a :data:`CAM_METHOD_REGISTRY` name.

    Returns:
        (H, W) float map in [0, 1] at the image size.
    """
    inputs, _, _ = _predictor_inputs(predictor, image)
    cam = classifier_cam(predictor.model, inputs, class_index, method)
    return cv2.resize(cam, (image.shape[1], image.shape[0]), interpolation=cv2.INTER_LINEAR)


def image_detection_cam(
    predictor, image: np.ndarray, boxes: np.ndarray, classes, method: str = "gradcam"
) -> np.ndarray:
    """The per-box Grad-CAMs of one image's detections, combined by maximum, at the image size.

    Args:
        predictor: a detectron2 ``DefaultPredictor``-like object (``model``, ``aug``,
            ``input_format``) whose model is a RetinaNet-family detector.
        image: (H, W, C) uint8, as given to the predictor.
        boxes: (n, 4) detections XYXY_ABS in ``image`` pixels; classes: (n,) class indices.
        method: a :data:`CAM_METHOD_REGISTRY` name.

    Returns:
        (H, W) float map in [0, 1] (zeros when there is no box).
    """
    h, w = image.shape[:2]
    if len(boxes) == 0:
        return np.zeros((h, w), np.float32)
    inputs, sy, sx = _predictor_inputs(predictor, image)
    scaled = np.asarray(boxes, np.float64) * [sx, sy, sx, sy]
    cams = detection_box_cams(predictor.model, inputs, scaled, classes, method)
    return cv2.resize(np.max(cams, 0), (w, h), interpolation=cv2.INTER_LINEAR)

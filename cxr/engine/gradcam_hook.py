"""Grad-CAM images of the first records of a data set, for classifiers and RetinaNet detectors.

:class:`GradCAMRenderer` draws them (what each image explains: a classifier's top finding, a
detector's top boxes at their operating points); training puts them into TensorBoard
(``cxr/gradcam/<i>``) at every evaluation (``CXR.VIS.GRADCAM_IMAGES``, through
:func:`put_gradcam_images`) or, for a classifier, every ``CXR.VIS.PERIOD`` iterations
(:class:`GradCAMVisHook`); ``tools/eval.py`` writes them as PNGs (:mod:`cxr.apps.evaluate`).
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Iterator, Sequence

import cv2
import numpy as np
import torch
from detectron2.config import configurable
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data.detection_utils import convert_image_to_rgb
from detectron2.engine import HookBase
from detectron2.modeling.meta_arch.retinanet import RetinaNet
from detectron2.utils import comm
from detectron2.utils.events import get_event_storage

from ..data import build_mapper
from ..evaluation.config import eval_kwargs_from_cfg
from ..evaluation.operating_points import class_thresholds, load_thresholds, positive_findings
from ..modeling.gradcam import classifier_cam, detection_box_cams, overlay
from ..modeling.meta_arch.classifier import CXRClassifier
from ..modeling.test_time_augmentation import DetectorWithTTA
from .ema import unwrap

__all__ = [
    "GradCAMPicture",
    "GradCAMRenderer",
    "GradCAMVisHook",
    "explained_model",
    "put_gradcam_images",
]

logger = logging.getLogger(__name__)


def explained_model(model: torch.nn.Module) -> torch.nn.Module | None:
    """The module Grad-CAM explains (DDP and test-time augmentation unwrapped): a
    ``CXRClassifier`` or a RetinaNet-family detector; None for other models (e.g. Faster R-CNN,
    an ONNX Runtime session)."""
    model = unwrap(model)
    if isinstance(model, DetectorWithTTA):
        model = model.model
    return model if isinstance(model, (CXRClassifier, RetinaNet)) else None


@dataclasses.dataclass
class GradCAMPicture:
    """One Grad-CAM picture of :class:`GradCAMRenderer`.

    Attributes:
        index: position of the record among the renderer's records.
        record: the explained record (detectron2 dataset dict).
        image: (H, W, 3) uint8 RGB overlay at the model's input size.
        caption: what it explains, ``"<class> <score>"`` ``;``-joined.
        in_boxes: a detector's share of the map's mass inside the explained boxes (NaN for a
            classifier, or an empty map).
    """

    index: int
    record: dict
    image: np.ndarray
    caption: str
    in_boxes: float = float("nan")


def _mass_in_boxes(cam: np.ndarray, boxes: np.ndarray) -> float:
    """Share of ``cam``'s sum inside the union of ``boxes`` (XYXY_ABS pixels of ``cam``)."""
    inside = np.zeros(cam.shape, bool)
    for x1, y1, x2, y2 in np.round(boxes).astype(int):
        inside[max(y1, 0) : max(y2, 0), max(x1, 0) : max(x2, 0)] = True
    total = float(cam.sum())
    return float(cam[inside].sum()) / total if total > 0 else float("nan")


def _draw_boxes(rgb: np.ndarray, boxes: np.ndarray, labels: Sequence[str]) -> np.ndarray:
    """``rgb`` with ``boxes`` (XYXY_ABS pixels of ``rgb``) outlined in white, each labelled."""
    out = np.ascontiguousarray(rgb)
    thick = max(1, round(max(rgb.shape[:2]) / 400))
    for box, label in zip(np.round(boxes).astype(int), labels):
        x1, y1, x2, y2 = (int(v) for v in box)
        cv2.rectangle(out, (x1, y1), (x2, y2), (255, 255, 255), thick)
        org = (x1, max(y1 - 3 * thick, 8))
        cv2.putText(out, label, org, cv2.FONT_HERSHEY_SIMPLEX, 0.35 * thick, (255, 255, 255), thick)
    return out


class GradCAMRenderer:
    """Grad-CAM overlays of the first ``num_images`` records of a data set.

    - ``CXRClassifier``: the map of its highest-scoring finding;
    - RetinaNet-family detector: the maps of its ``max_boxes`` highest-scoring boxes that reach
      their class's operating point (:func:`~cxr.evaluation.operating_points.positive_findings`),
      combined by maximum, the boxes drawn on it; when no box reaches one, its top box (the
      caption says so).

    Overlays are (H, W, 3) uint8 RGB at the model's input size (the mapped ``image``).
    """

    @configurable
    def __init__(
        self,
        *,
        mapper,
        records: Sequence[dict],
        class_names: Sequence[str],
        thresholds: Sequence[float],
        max_boxes: int = 3,
        input_format: str = "BGR",
        method: str = "gradcam",
    ):
        """
        Args:
            mapper: the test mapper (record -> model input).
            records: the records to explain (detectron2 dataset dicts).
            class_names: names by class index.
            thresholds: (C,) operating point per class (detectors).
            max_boxes: detections explained per image.
            input_format: ``INPUT.FORMAT`` of the mapped image.
            method: the map rule (:data:`~cxr.modeling.gradcam.CAM_METHOD_REGISTRY` name).
        """
        self.mapper, self.records = mapper, list(records)
        self.class_names, self.max_boxes = list(class_names), int(max_boxes)
        self.thresholds = np.asarray(thresholds, np.float64)
        self.input_format, self.method = input_format, method

    @classmethod
    def from_config(
        cls, cfg, dataset_name: str, num_images: int, thresholds=None, cm_threshold=None
    ) -> dict:
        """Operating points as the evaluation's: ``thresholds`` (class name -> threshold), else
        ``CXR.EVAL.THRESHOLDS_FILE``; other classes ``cm_threshold``, else
        ``CXR.EVAL.CM_THRESHOLD``."""
        names = MetadataCatalog.get(dataset_name).thing_classes
        kw = eval_kwargs_from_cfg(cfg, cm_threshold=cm_threshold)
        if thresholds is None and kw["thresholds"]:
            thresholds = load_thresholds(kw["thresholds"])
        return {
            "mapper": build_mapper(cfg, False),
            "records": DatasetCatalog.get(dataset_name)[:num_images],
            "class_names": names,
            "thresholds": class_thresholds(names, thresholds, kw["cm_threshold"]),
            "max_boxes": cfg.CXR.VIS.GRADCAM_MAX_BOXES,
            "input_format": cfg.INPUT.FORMAT,
            "method": cfg.CXR.VIS.GRADCAM_METHOD,
        }

    def _rgb(self, inputs: dict) -> np.ndarray:
        image = inputs["image"].permute(1, 2, 0).numpy()
        if image.shape[2] == 1:
            return np.repeat(image, 3, axis=2)
        return convert_image_to_rgb(image, self.input_format)

    def _classifier(self, model, inputs: dict) -> tuple[np.ndarray, str, float]:
        with torch.no_grad():
            scores = model([inputs])[0]["scores"].float().cpu()
        c = int(scores.argmax())
        cam = classifier_cam(model, inputs, c, self.method)
        rgb = overlay(self._rgb(inputs), cam)
        return rgb, f"{self.class_names[c]} {float(scores[c]):.2f}", float("nan")

    def _detector(self, model, inputs: dict) -> tuple[np.ndarray, str, float]:
        x = {"image": inputs["image"]}  # no height/width: boxes in input pixels
        with torch.no_grad():
            inst = model([x])[0]["instances"].to("cpu")
        rgb = self._rgb(inputs)
        if len(inst) == 0:
            return rgb, "no detection", float("nan")
        scores = inst.scores.numpy().astype(np.float64)
        classes = inst.pred_classes.numpy().astype(np.int64)
        order = np.argsort(-scores, kind="stable")
        pos = positive_findings(scores[order], self.thresholds[classes[order]])
        chosen, note = order[pos][: self.max_boxes], ""
        if len(chosen) == 0:
            chosen, note = order[:1], " (below its operating point)"
        boxes = inst.pred_boxes.tensor.numpy()[chosen]
        cam = np.max(detection_box_cams(model, x, boxes, classes[chosen], self.method), 0)
        labels = [f"{self.class_names[c]} {scores[j]:.2f}" for j, c in zip(chosen, classes[chosen])]
        rgb = _draw_boxes(overlay(rgb, cam), boxes, labels)
        return rgb, "; ".join(labels) + note, _mass_in_boxes(cam, boxes)

    def render(self, model, record: dict, index: int = 0) -> GradCAMPicture:
        """The picture of one record (:class:`GradCAMPicture`).

        Raises:
            TypeError when ``model`` is neither a classifier nor a RetinaNet-family detector.
        """
        net = explained_model(model)
        if net is None:
            raise TypeError(
                f"Grad-CAM explains CXRClassifier and RetinaNet-family models, not "
                f"{type(unwrap(model)).__name__}"
            )
        inputs = self.mapper(dict(record))
        was_training = net.training
        net.eval()
        try:
            if isinstance(net, CXRClassifier):
                return GradCAMPicture(index, record, *self._classifier(net, inputs))
            return GradCAMPicture(index, record, *self._detector(net, inputs))
        finally:
            net.train(was_training)

    def __call__(self, model) -> Iterator[GradCAMPicture]:
        """The picture of each record, in order."""
        for i, record in enumerate(self.records):
            yield self.render(model, record, i)


def put_gradcam_images(renderer: GradCAMRenderer, model) -> None:
    """Put ``cxr/gradcam/<i>`` (the renderer's overlays of ``model``) into the current event
    storage, which detectron2's TensorBoard writer writes; main process only."""
    if not comm.is_main_process():
        return
    storage = get_event_storage()
    for pic in renderer(model):
        storage.put_image(f"cxr/gradcam/{pic.index}", pic.image.transpose(2, 0, 1))


class GradCAMVisHook(HookBase):
    """Every ``period`` iterations (and at the last one), :func:`put_gradcam_images` of the
    trainer's model (a ``CXRClassifier``'s ``CXR.VIS.PERIOD`` images)."""

    def __init__(self, period: int, renderer: GradCAMRenderer):
        self._period = period
        self._renderer = renderer

    def after_step(self):
        it = self.trainer.iter + 1
        if it % self._period == 0 or it == self.trainer.max_iter:
            put_gradcam_images(self._renderer, self.trainer.model)

"""TensorBoard Grad-CAM images of a classifier during training (``CXR.VIS.PERIOD``)."""

from __future__ import annotations

import numpy as np
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.engine import HookBase
from detectron2.utils import comm

from ..modeling.gradcam import classifier_cam, overlay
from .ema import unwrap

__all__ = ["GradCAMVisHook"]


class GradCAMVisHook(HookBase):
    """Every ``period`` iterations (and at the last one), puts ``cxr/gradcam/<i>``: the first
    ``num_images`` records of ``dataset_name`` with the Grad-CAM of their highest-scoring finding
    blended in (:func:`cxr.modeling.gradcam.classifier_cam`), for a ``CXRClassifier``."""

    def __init__(self, period: int, mapper, dataset_name: str, num_images: int):
        self._period = period
        self._mapper = mapper
        self._dicts = DatasetCatalog.get(dataset_name)[:num_images]
        self._names = MetadataCatalog.get(dataset_name).thing_classes

    def render(self, model, record: dict) -> tuple[np.ndarray, str]:
        """(H, W, 3) uint8 overlay and the explained finding's name."""
        inputs = self._mapper(dict(record))
        was_training = model.training
        model.eval()
        try:
            scores = model([inputs])[0]["scores"]
        finally:
            model.train(was_training)
        c = int(scores.argmax())
        cam = classifier_cam(model, inputs, c)
        return overlay(inputs["image"][0].numpy(), cam), self._names[c]

    def after_step(self):
        it = self.trainer.iter + 1
        due = it % self._period == 0 or it == self.trainer.max_iter
        if not comm.is_main_process() or not due:
            return
        model = unwrap(self.trainer.model)
        for i, record in enumerate(self._dicts):
            img, _ = self.render(model, record)
            self.trainer.storage.put_image(f"cxr/gradcam/{i}", img.transpose(2, 0, 1))

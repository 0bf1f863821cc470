"""``ClassificationMapper``: the radiograph mapper for image-label (classification) records.

Same reading, resize and Albumentations presets as :class:`~cxr.data.mapper.AlbumentationsMapper`
(``INPUT.*`` keys); the record's ``labels`` (multi-hot list) become a float tensor. Records need
no ``height`` / ``width``: they are filled in from the decoded image.
"""

from __future__ import annotations

import numpy as np
import torch
from detectron2.data import transforms as T

from .build import MAPPER_REGISTRY
from .mapper import _CHANNELS, AlbumentationsMapper

__all__ = ["ClassificationMapper"]


@MAPPER_REGISTRY.register()
class ClassificationMapper(AlbumentationsMapper):
    """Map one classification record to model input.

    Returns a copy of the dict with ``image`` (uint8 CHW tensor, channels by ``INPUT.FORMAT``),
    ``labels`` ((C,) float32 0/1) and ``height`` / ``width`` (decoded size, pixels). Training
    applies the Albumentations pipeline to the image alone; unreadable files are skipped (None)
    when ``DATALOADER.SKIP_BAD_IMAGES`` and training, else raise.
    """

    def __call__(self, dataset_dict: dict) -> dict | None:
        # A shallow copy is enough: nothing nested is changed (labels become a new tensor).
        dataset_dict = dict(dataset_dict)
        image = self._read(dataset_dict)
        if image is None:
            return None
        dataset_dict.setdefault("height", image.shape[0])
        dataset_dict.setdefault("width", image.shape[1])
        aug_input = T.AugInput(image)
        self.augmentations(aug_input)
        image = aug_input.image
        if self.albumentations is not None:
            image, _ = self._albumentations(image, [])
        chw = np.empty((_CHANNELS[self.image_format],) + image.shape[:2], np.uint8)
        chw[:] = image
        dataset_dict["image"] = torch.from_numpy(chw)
        if "labels" in dataset_dict:
            dataset_dict["labels"] = torch.as_tensor(dataset_dict["labels"], dtype=torch.float32)
        dataset_dict.pop("annotations", None)
        return dataset_dict

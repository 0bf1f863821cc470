"""``AlbumentationsMapper``: detectron2's ``DatasetMapper`` for radiographs, plus Albumentations.

Per image: :func:`cxr.data.io.read_xray` (PNG/JPEG/DICOM, decoded by OpenCV / pydicom to one
gray channel), detectron2's own resize (``ResizeShortestEdge`` from ``INPUT.MIN_SIZE_*`` /
``MAX_SIZE_*``) and ``INPUT.RANDOM_FLIP`` applied once to that single channel, then (training
only) the Albumentations pipeline of ``INPUT.ALBUMENTATIONS``, then replication to
``INPUT.FORMAT``. With the pipeline off, the output equals ``DatasetMapper``'s on gray 8-bit
files. Horizontal flips swap laterality (see :mod:`cxr.data.augmentations`).
"""

from __future__ import annotations

import copy
import logging
import os
from typing import Sequence

import numpy as np
import torch
from detectron2.config import configurable
from detectron2.data import detection_utils as utils
from detectron2.data import transforms as T

from .augmentations import build_albumentations
from .build import MAPPER_REGISTRY
from .io import ImageReadError
from .wds import read_record_image

__all__ = ["AlbumentationsMapper"]

logger = logging.getLogger(__name__)

_CHANNELS = {"BGR": 3, "RGB": 3, "L": 1}


class ResizeShortestEdgeOrKeep(T.ResizeShortestEdge):
    """detectron2's ``ResizeShortestEdge`` that leaves a film already at its target size alone
    (a prepared copy at the training size): the same pixels and boxes without the PIL round
    trip, since resizing to the same size copies."""

    def get_transform(self, image):
        t = super().get_transform(image)
        return T.NoOpTransform() if (t.new_h, t.new_w) == (t.h, t.w) else t


def _keep_size(aug):
    if type(aug) is not T.ResizeShortestEdge:
        return aug
    return ResizeShortestEdgeOrKeep(aug.short_edge_length, aug.max_size, aug.sample_style,
                                    aug.interp)  # fmt: skip


@MAPPER_REGISTRY.register()
class AlbumentationsMapper:
    """Map one dataset dict (boxes XYXY_ABS or any detectron2 BoxMode) to model input.

    Returns a copy of the dict with ``image`` (uint8 CHW tensor, 3 identical channels for
    BGR/RGB, 1 for L) and, in training, ``instances`` (``gt_boxes`` XYXY_ABS in resized pixels,
    ``gt_classes``); ``annotations`` removed. ``height``/``width`` stay the original size.
    """

    @configurable
    def __init__(
        self,
        is_train: bool,
        *,
        augmentations: Sequence,
        image_format: str = "BGR",
        albumentations=None,
        skip_bad_images: bool = False,
    ):
        """
        Args:
            is_train: training mode (annotations kept, Albumentations applied, bad files skipped
                when ``skip_bad_images``).
            augmentations: detectron2 augmentations (resize, flip) applied first.
            image_format: ``BGR``, ``RGB`` (gray replicated to 3 channels) or ``L`` (1 channel).
            albumentations: an ``A.Compose`` with ``pascal_voc`` bbox params and label field
                ``ann_idx`` (see :func:`build_albumentations`), or None.
            skip_bad_images: return None for an unreadable file (train only).
        """
        if image_format not in _CHANNELS:
            raise ValueError(f"INPUT.FORMAT {image_format!r} not supported; use BGR, RGB or L")
        self.is_train = is_train
        self.augmentations = T.AugmentationList(augmentations)
        self.image_format = image_format
        self.albumentations = albumentations if is_train else None
        self.skip_bad_images = skip_bad_images and is_train
        self.num_skipped = 0
        self._seeded_pid = None
        mode = "training" if is_train else "inference"
        logger.info(
            f"[AlbumentationsMapper] {mode}: {augmentations}, albumentations={albumentations}"
        )

    @classmethod
    def from_config(cls, cfg, is_train: bool = True) -> dict:
        albu = None
        if is_train:
            albu = build_albumentations(
                cfg.INPUT.ALBUMENTATIONS.PRESET, cfg.INPUT.ALBUMENTATIONS.MIN_VISIBILITY
            )
        return {
            "is_train": is_train,
            "augmentations": [_keep_size(a) for a in utils.build_augmentation(cfg, is_train)],
            "image_format": cfg.INPUT.FORMAT,
            "albumentations": albu,
            "skip_bad_images": cfg.DATALOADER.SKIP_BAD_IMAGES,
        }

    def _albumentations(self, image: np.ndarray, annos: list[dict]):
        if self._seeded_pid != os.getpid():
            # Each DataLoader worker draws its own stream from detectron2's per-worker np seed.
            self.albumentations.set_random_seed(int(np.random.randint(2**31)))
            self._seeded_pid = os.getpid()
        h, w = image.shape[:2]
        idx = [
            i
            for i, a in enumerate(annos)
            if a["bbox"][2] > a["bbox"][0] and a["bbox"][3] > a["bbox"][1]
        ]
        boxes = [np.clip(np.asarray(annos[i]["bbox"], np.float64), 0, [w, h, w, h]) for i in idx]
        out = self.albumentations(image=image, bboxes=np.array(boxes).reshape(-1, 4), ann_idx=idx)
        kept = []
        for box, i in zip(out["bboxes"], out["ann_idx"]):
            annos[int(i)]["bbox"] = np.asarray(box, np.float64)
            kept.append(annos[int(i)])
        return out["image"], kept

    def _read(self, dataset_dict: dict) -> np.ndarray | None:
        """The decoded film of the record (its file, or the shard bytes a streamed record
        carries: :func:`~cxr.data.wds.read_record_image`), or None (counted, logged) for an
        unreadable one when skipping."""
        try:
            return read_record_image(dataset_dict)
        except ImageReadError as e:
            if not self.skip_bad_images:
                raise
            self.num_skipped += 1
            logger.warning(
                "skipping unreadable image (%d so far in this process): %s", self.num_skipped, e
            )
            return None

    def __call__(self, dataset_dict: dict) -> dict | None:
        """
        Args:
            dataset_dict: one record (``file_name``, ``height``, ``width``, ``annotations``).

        Returns:
            the model input dict, or None when the file is unreadable and skipping is on.
        """
        dataset_dict = copy.deepcopy(dataset_dict)
        image = self._read(dataset_dict)
        if image is None:
            return None
        utils.check_image_size(dataset_dict, image)
        aug_input = T.AugInput(image)
        transforms = self.augmentations(aug_input)
        image = aug_input.image
        if not self.is_train:
            dataset_dict.pop("annotations", None)
        elif "annotations" in dataset_dict:
            annos = []
            for obj in dataset_dict.pop("annotations"):
                if obj.get("iscrowd", 0) == 0:
                    obj.pop("segmentation", None)  # boxes only, like DatasetMapper's default
                    obj.pop("keypoints", None)
                    annos.append(
                        utils.transform_instance_annotations(obj, transforms, image.shape[:2])
                    )
            if self.albumentations is not None:
                image, annos = self._albumentations(image, annos)
            instances = utils.annotations_to_instances(annos, image.shape[:2])
            dataset_dict["instances"] = utils.filter_empty_instances(instances)
        # One copy into a writable CHW buffer (the resized array may be a read-only view).
        chw = np.empty((_CHANNELS[self.image_format],) + image.shape[:2], np.uint8)
        chw[:] = image
        dataset_dict["image"] = torch.from_numpy(chw)
        return dataset_dict

"""Albumentations pipelines for chest films, chosen by ``cfg.INPUT.ALBUMENTATIONS.PRESET``.

Presets are registered by name in :data:`ALBUMENTATIONS_PRESETS` (``none``, ``light``,
``strong``; ``ALBUMENTATIONS_PRESETS.names()`` lists them); any other value is read as a path
to a pipeline serialized with ``albumentations.save`` (``.json``, ``.yaml`` or ``.yml``).

The pipelines run on the resized single-channel uint8 image, after detectron2's resize and
flip, so each image is resized once. No preset flips: a horizontal flip swaps laterality (the
heart appears on the right, a left-sided finding becomes right-sided), which misleads models
whose findings depend on side. Enable flips knowingly via ``INPUT.RANDOM_FLIP`` or a custom file.
"""

from __future__ import annotations

import os

import albumentations as A
import cv2

from ..registry import NamedRegistry

__all__ = ["ALBUMENTATIONS_PRESETS", "build_albumentations", "compose_with_boxes"]

ALBUMENTATIONS_PRESETS = NamedRegistry("CXR_ALBUMENTATIONS_PRESET")
ALBUMENTATIONS_PRESETS.__doc__ = (
    "INPUT.ALBUMENTATIONS.PRESET name -> () -> list of Albumentations transforms (empty: none)."
)


@ALBUMENTATIONS_PRESETS.register_as("none")
def _none() -> list:
    return []


@ALBUMENTATIONS_PRESETS.register_as("light")
def _light() -> list:
    # Small geometric jitter and exposure changes seen between scanners.
    return [
        A.Affine(scale=(0.9, 1.1), translate_percent=(-0.05, 0.05), rotate=(-5, 5),
                 border_mode=cv2.BORDER_CONSTANT, fill=0, p=0.5),
        A.RandomBrightnessContrast(brightness_limit=0.1, contrast_limit=0.1, p=0.5),
        A.RandomGamma(gamma_limit=(90, 110), p=0.3),
    ]  # fmt: skip


@ALBUMENTATIONS_PRESETS.register_as("strong")
def _strong() -> list:
    return [
        A.Affine(scale=(0.8, 1.2), translate_percent=(-0.1, 0.1), rotate=(-10, 10),
                 border_mode=cv2.BORDER_CONSTANT, fill=0, p=0.7),
        A.RandomBrightnessContrast(brightness_limit=0.2, contrast_limit=0.2, p=0.7),
        A.RandomGamma(gamma_limit=(80, 120), p=0.5),
        A.CLAHE(clip_limit=2.0, tile_grid_size=(8, 8), p=0.3),
        A.OneOf([A.GaussianBlur(blur_limit=(3, 5)), A.GaussNoise(std_range=(0.01, 0.05))], p=0.3),
    ]  # fmt: skip


def compose_with_boxes(transforms: list, min_visibility: float = 0.3) -> A.Compose:
    """``transforms`` composed with box handling.

    Boxes are passed as ``pascal_voc`` (XYXY_ABS pixels) with a label field ``ann_idx``; a box
    keeping less than ``min_visibility`` of its area is dropped; boxes are clipped to the image.
    """
    bbox_params = A.BboxParams(
        format="pascal_voc", label_fields=["ann_idx"], min_visibility=min_visibility, clip=True
    )
    return A.Compose(transforms, bbox_params=bbox_params)


def build_albumentations(preset: str, min_visibility: float = 0.3) -> A.Compose | None:
    """The pipeline for ``preset`` (see :func:`compose_with_boxes`), or None without transforms.

    Raises:
        ValueError: ``preset`` is neither a registered preset nor an existing file.
    """
    if preset in ALBUMENTATIONS_PRESETS:
        transforms = ALBUMENTATIONS_PRESETS.get(preset)()
    elif os.path.isfile(preset):
        ext = os.path.splitext(preset)[1].lower()
        if ext not in (".json", ".yaml", ".yml"):
            raise ValueError(f"INPUT.ALBUMENTATIONS.PRESET: {preset}: expected .json/.yaml/.yml")
        try:  # albumentations reads with json / yaml.safe_load: a !!python tag never runs
            transforms = [A.load(preset, data_format="json" if ext == ".json" else "yaml")]
        except Exception as e:  # yaml, json and albumentations' registry raise many types
            raise ValueError(
                f"INPUT.ALBUMENTATIONS.PRESET: {preset}: not a valid albumentations pipeline "
                f"({type(e).__name__}: {e})"
            ) from None
    else:
        raise ValueError(
            f"INPUT.ALBUMENTATIONS.PRESET: {preset!r} is neither a preset "
            f"({', '.join(ALBUMENTATIONS_PRESETS.names())}) nor an existing file"
        )
    if not transforms:
        return None
    return compose_with_boxes(transforms, min_visibility)

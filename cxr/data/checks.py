"""Fast checks of a data set before long work starts on it."""

from __future__ import annotations

import logging
import os
from typing import Sequence

__all__ = ["check_class_count", "check_image_files"]

logger = logging.getLogger(__name__)


def check_image_files(
    dataset_dicts: Sequence[dict],
    *,
    skip_bad_images: bool = False,
    what: str = "training",
    examples: int = 5,
) -> list[str]:
    """Check that every record's ``file_name`` exists (a stat per file; nothing is decoded).

    Args:
        dataset_dicts: detectron2 records with ``file_name``.
        skip_bad_images: ``DATALOADER.SKIP_BAD_IMAGES``: warn instead of raising (the loader
            then skips the missing files).
        what: names the set in the message (e.g. ``"training (nih_bbox_train)"``).
        examples: how many missing names the message shows.

    Returns:
        the missing paths.

    Raises:
        FileNotFoundError naming the count, the first missing files and their folder, unless
        ``skip_bad_images``.
    """
    missing = [d["file_name"] for d in dataset_dicts if not os.path.isfile(d["file_name"])]
    if not missing:
        return missing
    folders = sorted({os.path.dirname(os.path.abspath(p)) for p in missing})
    msg = (
        f"{len(missing)} of {len(dataset_dicts)} {what} images are missing, e.g. "
        + ", ".join(os.path.basename(p) for p in missing[:examples])
        + f" (looked in {folders[0]}"
        + (f" and {len(folders) - 1} other folders)" if len(folders) > 1 else ")")
    )
    if not skip_bad_images:
        raise FileNotFoundError(
            msg + "; put the images there (check DETECTRON2_DATASETS), or set "
            "DATALOADER.SKIP_BAD_IMAGES True to train without them"
        )
    logger.warning("%s; they are skipped (DATALOADER.SKIP_BAD_IMAGES)", msg)
    return missing


def check_class_count(num_classes: int, dataset_names: Sequence[str], model: str = "model") -> None:
    """Check that each data set's ``thing_classes`` (metadata) has ``num_classes`` names, so
    that a config never trains or scores a model with another class count than its data.

    Data sets without ``thing_classes`` are passed over.

    Raises:
        ValueError naming the model's count, the data set and its count and classes.
    """
    from detectron2.data import MetadataCatalog

    for name in dataset_names:
        classes = MetadataCatalog.get(name).get("thing_classes", None)
        if classes is not None and len(classes) != num_classes:
            raise ValueError(
                f"the config's {model} has {num_classes} classes but data set {name} has "
                f"{len(classes)} ({', '.join(classes)}): set the config's NUM_CLASSES "
                f"(MODEL.RETINANET / ROI_HEADS / CLASSIFIER) to {len(classes)}, or use data "
                f"with {num_classes} classes"
            )

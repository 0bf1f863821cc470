"""Shared fixtures: a tiny registered detection dataset of generated images."""
from __future__ import annotations

import os
import warnings

import numpy as np
import pytest

warnings.filterwarnings("ignore", category=FutureWarning)
os.environ.setdefault("OMP_NUM_THREADS", "2")

import cxr  # noqa: E402,F401


def write_tiny_images(root: str, n: int = 4, size: int = 64, seed: int = 0) -> list[dict]:
    """Write ``n`` gray PNGs with one bright square each (the last image has none).

    Returns detectron2 dataset dicts; boxes are XYXY_ABS pixels of the written images.
    """
    import cv2
    from detectron2.structures import BoxMode

    rng = np.random.default_rng(seed)
    os.makedirs(root, exist_ok=True)
    dicts = []
    for i in range(n):
        img = rng.integers(40, 80, size=(size, size), dtype=np.uint8)
        annos = []
        if i < n - 1:
            x0, y0 = rng.integers(4, size // 2, size=2)
            w = h = int(size // 4)
            img[y0 : y0 + h, x0 : x0 + w] = 220
            annos.append(
                {
                    "bbox": [float(x0), float(y0), float(x0 + w), float(y0 + h)],
                    "bbox_mode": BoxMode.XYXY_ABS,
                    "category_id": i % 2,
                }
            )
        path = os.path.join(root, f"img_{i:03d}.png")
        cv2.imwrite(path, img)
        dicts.append(
            {
                "file_name": path,
                "image_id": i,
                "height": size,
                "width": size,
                "annotations": annos,
                "patient_id": f"p{i}",
            }
        )
    return dicts


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory) -> str:
    """Name of a registered 4-image, 2-class dataset (one image without boxes)."""
    from detectron2.data import DatasetCatalog, MetadataCatalog

    name = "cxr_test_tiny"
    if name not in DatasetCatalog.list():
        root = str(tmp_path_factory.mktemp("tiny"))
        dicts = write_tiny_images(root)
        DatasetCatalog.register(name, lambda: dicts)
        MetadataCatalog.get(name).set(thing_classes=["a", "b"], evaluator_type="coco")
    return name

"""ClassificationMapper: image + label vector, detectron2 resize, Albumentations on the image."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from cxr.config import get_cfg
from cxr.data import build_mapper
from cxr.data.io import ImageReadError


@pytest.fixture
def record(tmp_path):
    img = np.tile(np.arange(80, dtype=np.uint8), (60, 1))  # 60 x 80 gradient
    path = str(tmp_path / "00000001_000.png")
    cv2.imwrite(path, img)
    return {"file_name": path, "image_id": "00000001_000", "labels": [0, 1, 0, 1]}


def _cfg(*opts):
    cfg = get_cfg()
    cfg.merge_from_list(["INPUT.MAPPER", "ClassificationMapper", "INPUT.MIN_SIZE_TEST", 30,
                         "INPUT.MAX_SIZE_TEST", 1000, *opts])  # fmt: skip
    return cfg


def test_maps_image_resized_and_labels_as_float_vector(record):
    out = build_mapper(_cfg(), False)(record)
    assert out["labels"].dtype == torch.float32 and out["labels"].tolist() == [0, 1, 0, 1]
    assert out["image"].shape == (3, 30, 40) and out["image"].dtype == torch.uint8
    assert (out["height"], out["width"]) == (60, 80)  # filled in from the decoded file
    ref = cv2.resize(cv2.imread(record["file_name"], 0), (40, 30), interpolation=cv2.INTER_LINEAR)
    assert np.abs(out["image"][0].numpy().astype(int) - ref).max() <= 1
    assert record["labels"] == [0, 1, 0, 1]  # the record itself is not modified


def test_training_applies_the_albumentations_preset(record):
    cfg = _cfg("INPUT.MIN_SIZE_TRAIN", (30,), "INPUT.MAX_SIZE_TRAIN", 1000,
               "INPUT.ALBUMENTATIONS.PRESET", "strong")  # fmt: skip
    mapper = build_mapper(cfg, True)
    plain = build_mapper(_cfg(), False)(record)["image"]
    outs = [mapper(record)["image"] for _ in range(4)]
    assert all(o.shape == plain.shape for o in outs)
    assert any(not torch.equal(o, plain) for o in outs)


def test_unreadable_file_raises_or_is_skipped_in_training(tmp_path, record):
    bad = dict(record, file_name=str(tmp_path / "missing.png"))
    with pytest.raises(ImageReadError):
        build_mapper(_cfg(), False)(bad)
    cfg = _cfg("DATALOADER.SKIP_BAD_IMAGES", True)
    assert build_mapper(cfg, True)(bad) is None

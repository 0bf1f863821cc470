"""AlbumentationsMapper: equal to detectron2's DatasetMapper with augmentations off; presets."""

from __future__ import annotations

import copy
import os

import numpy as np
import pytest
import torch
from dataformats import write_dicom
from detectron2.data import DatasetMapper
from detectron2.structures import BoxMode

from cxr.config import get_cfg
from cxr.data import build_mapper
from cxr.data.io import ImageReadError
from cxr.data.mapper import AlbumentationsMapper


def _cfg(**kw):
    cfg = get_cfg()
    cfg.INPUT.MIN_SIZE_TRAIN = (48,)
    cfg.INPUT.MAX_SIZE_TRAIN = 80
    cfg.INPUT.MIN_SIZE_TEST = 40
    cfg.INPUT.MAX_SIZE_TEST = 80
    cfg.INPUT.RANDOM_FLIP = "none"
    for k, v in kw.items():
        cfg.merge_from_list([k, v])
    return cfg


@pytest.fixture(scope="module")
def records(tmp_path_factory):
    import cv2

    root = tmp_path_factory.mktemp("mapper")
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (70, 100), np.uint8)
    img[0, 0], img[0, 1] = 0, 255  # min-max scaling of the window-less DICOM is the identity
    cv2.imwrite(str(root / "a.png"), img)
    boxes = [[5.0, 6.0, 40.0, 30.0], [60.0, 20.0, 99.0, 69.0]]
    rec = {
        "file_name": str(root / "a.png"), "image_id": "a", "height": 70, "width": 100,
        "patient_id": "p", "annotations": [
            {"bbox": b, "bbox_mode": BoxMode.XYXY_ABS, "category_id": i}
            for i, b in enumerate(boxes)
        ],
    }  # fmt: skip
    dcm = dict(copy.deepcopy(rec), file_name=write_dicom(str(root / "a.dcm"), img))
    return rec, dcm


@pytest.mark.parametrize("is_train", [True, False])
@pytest.mark.parametrize("fmt", ["BGR", "RGB", "L"])
def test_equals_detectron2_dataset_mapper(records, is_train, fmt):
    rec, _ = records
    cfg = _cfg(**{"INPUT.FORMAT": fmt})
    ours = build_mapper(cfg, is_train)
    assert isinstance(ours, AlbumentationsMapper)
    ref = DatasetMapper(cfg, is_train)(copy.deepcopy(rec))
    out = ours(copy.deepcopy(rec))
    assert set(out) == set(ref)
    assert out["image"].dtype == ref["image"].dtype == torch.uint8
    assert out["image"].shape == ref["image"].shape
    assert torch.equal(out["image"], ref["image"])
    for k in ("file_name", "image_id", "height", "width", "patient_id"):
        assert out[k] == ref[k]
    if is_train:
        assert torch.equal(out["instances"].gt_boxes.tensor, ref["instances"].gt_boxes.tensor)
        assert torch.equal(out["instances"].gt_classes, ref["instances"].gt_classes)
        assert out["instances"].image_size == ref["instances"].image_size


def test_flip_matches_detectron2(records):
    rec, _ = records
    cfg = _cfg(**{"INPUT.RANDOM_FLIP": "horizontal"})
    ours, ref = AlbumentationsMapper(cfg, True), DatasetMapper(cfg, True)
    for seed in range(4):  # both draw the flip from np.random
        np.random.seed(seed)
        a = ours(copy.deepcopy(rec))
        np.random.seed(seed)
        b = ref(copy.deepcopy(rec))
        assert torch.equal(a["image"], b["image"])
        assert torch.equal(a["instances"].gt_boxes.tensor, b["instances"].gt_boxes.tensor)


def test_dicom_record_equals_png(records):
    rec, dcm = records
    mapper = AlbumentationsMapper(_cfg(), True)
    a, b = mapper(copy.deepcopy(rec)), mapper(copy.deepcopy(dcm))
    assert torch.equal(a["image"], b["image"])
    assert torch.equal(a["instances"].gt_boxes.tensor, b["instances"].gt_boxes.tensor)


@pytest.mark.parametrize("preset", ["light", "strong"])
def test_presets_keep_boxes_aligned(records, preset):
    rec, _ = records
    cfg = _cfg(**{"INPUT.ALBUMENTATIONS.PRESET": preset})
    mapper = AlbumentationsMapper(cfg, True)
    np.random.seed(0)
    for _ in range(8):
        out = mapper(copy.deepcopy(rec))
        h, w = out["image"].shape[1:]
        inst = out["instances"]
        assert len(inst.gt_boxes) == len(inst.gt_classes) <= 2
        b = inst.gt_boxes.tensor
        assert (b[:, 0] >= 0).all() and (b[:, 2] <= w).all() and (b[:, 3] <= h).all()
        assert (b[:, 2] > b[:, 0]).all()
    # Test mode ignores the preset: identical to DatasetMapper.
    ref = DatasetMapper(cfg, False)(copy.deepcopy(rec))
    assert torch.equal(AlbumentationsMapper(cfg, False)(copy.deepcopy(rec))["image"], ref["image"])


def test_crop_away_keeps_negative(records, tmp_path):
    import albumentations as A

    rec, _ = records
    path = str(tmp_path / "crop.json")
    A.save(A.Compose([A.Crop(x_min=0, y_min=0, x_max=10, y_max=10, p=1.0)]), path)
    mapper = AlbumentationsMapper(_cfg(**{"INPUT.ALBUMENTATIONS.PRESET": path}), True)
    out = mapper(copy.deepcopy(rec))
    assert tuple(out["image"].shape) == (3, 10, 10)
    # Box 0 resized to [3.45, 4.11, 27.4, 20.6]: 6.55 x 5.89 of 24 x 16.5 inside (10 %) < 30 %.
    assert len(out["instances"]) == 0
    with pytest.raises(ValueError, match="PRESET"):
        AlbumentationsMapper(_cfg(**{"INPUT.ALBUMENTATIONS.PRESET": "heavy"}), True)


def test_skip_bad_images(records, tmp_path):
    rec, _ = records
    bad = dict(copy.deepcopy(rec), file_name=str(tmp_path / "nope.png"))
    with pytest.raises(ImageReadError, match="nope.png"):
        AlbumentationsMapper(_cfg(), True)(bad)
    cfg = _cfg(**{"DATALOADER.SKIP_BAD_IMAGES": True})
    mapper = AlbumentationsMapper(cfg, True)
    assert mapper(bad) is None and mapper.num_skipped == 1
    with pytest.raises(ImageReadError):  # never at test time
        AlbumentationsMapper(cfg, False)(bad)
    assert os.path.isfile(rec["file_name"])


def test_skipped_image_is_replaced_by_detectron2_map_dataset(records, tmp_path):
    from detectron2.data.common import MapDataset

    rec, _ = records
    bad = dict(copy.deepcopy(rec), file_name=str(tmp_path / "empty.png"), image_id="bad")
    open(bad["file_name"], "wb").close()
    mapper = AlbumentationsMapper(_cfg(**{"DATALOADER.SKIP_BAD_IMAGES": True}), True)
    out = MapDataset([bad, rec], mapper)[0]
    assert out["image_id"] == "a" and mapper.num_skipped == 1


def test_a_film_already_at_the_training_size_is_not_resized_and_stays_identical():
    from detectron2.data import transforms as T

    from cxr.data.mapper import ResizeShortestEdgeOrKeep

    img = np.random.default_rng(0).integers(0, 255, (64, 48), dtype=np.uint8)
    keep = ResizeShortestEdgeOrKeep((48,), 64, "choice")
    assert isinstance(keep.get_transform(img), T.NoOpTransform)
    d2 = T.ResizeShortestEdge((48,), 64, "choice").get_transform(img)
    np.testing.assert_array_equal(d2.apply_image(img), img)  # detectron2: a same-size copy
    other = ResizeShortestEdgeOrKeep((32,), 64, "choice").get_transform(img)
    np.testing.assert_array_equal(
        other.apply_image(img),
        T.ResizeShortestEdge((32,), 64, "choice").get_transform(img).apply_image(img),
    )

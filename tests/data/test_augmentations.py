"""Augmentation presets: the registry, box handling, files, and the errors that name the key."""
from __future__ import annotations

import albumentations as A
import numpy as np
import pytest

from cxr.data.augmentations import ALBUMENTATIONS_PRESETS, build_albumentations, compose_with_boxes


def test_presets_by_name():
    assert build_albumentations("none") is None  # no transform: the mapper skips the step
    for name in ("light", "strong"):
        pipeline = build_albumentations(name)
        assert isinstance(pipeline, A.Compose) and len(pipeline.transforms) >= 3
        assert not any(isinstance(t, A.HorizontalFlip) for t in pipeline.transforms)
    with pytest.raises(ValueError, match=r"PRESET: 'heavy' is neither a preset \(light, none, "):
        build_albumentations("heavy")
    assert "strong" in ALBUMENTATIONS_PRESETS


def test_boxes_are_clipped_and_small_remainders_dropped():
    img = np.zeros((40, 40), np.uint8)
    crop = compose_with_boxes([A.Crop(x_min=0, y_min=0, x_max=20, y_max=20, p=1.0)], 0.3)
    out = crop(image=img, bboxes=[[5, 5, 30, 15], [15, 15, 40, 40]], ann_idx=[0, 1])
    # box 0 keeps 15 x 10 of 25 x 10 (60 %), clipped; box 1 keeps 5 x 5 of 25 x 25 (4 %)
    assert [list(map(float, b)) for b in out["bboxes"]] == [[5.0, 5.0, 20.0, 15.0]]
    assert list(out["ann_idx"]) == [0]


def test_pipeline_file(tmp_path):
    path = tmp_path / "p.json"
    A.save(A.Compose([A.RandomGamma(p=1.0)]), str(path))
    assert isinstance(build_albumentations(str(path)), A.Compose)
    bad = tmp_path / "p.txt"
    bad.write_text("x")
    with pytest.raises(ValueError, match=r"p.txt: expected \.json/\.yaml/\.yml"):
        build_albumentations(str(bad))
    broken = tmp_path / "broken.yaml"
    broken.write_text("!!python/object/apply:os.system ['echo hi']\n")
    with pytest.raises(ValueError, match="not a valid albumentations pipeline"):
        build_albumentations(str(broken))

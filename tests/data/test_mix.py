"""Mixup / CutMix / Mosaic: pixels and boxes against hand-computed cases; the mapper wrapper."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from detectron2.structures import Boxes, Instances

from cxr.config import get_cfg
from cxr.data.mix import MixMapper, build_mix_mapper, cutmix, mixup, mosaic


def _s(value, h, w, boxes=(), classes=None):
    b = np.asarray(boxes, np.float64).reshape(-1, 4)
    c = np.arange(len(b)) if classes is None else np.asarray(classes)
    return np.full((1, h, w), value, np.uint8), b, c


def test_mixup_blends_pads_and_keeps_every_box():
    a = _s(100, 4, 6, [[0, 0, 2, 2]], [0])
    b = _s(200, 5, 4, [[1, 1, 3, 4], [0, 0, 1, 1]], [1, 2])
    img, boxes, cls = mixup(a, b, 0.25)
    assert img.shape == (1, 5, 6)
    assert img[0, 0, 0] == 175  # 0.25 * 100 + 0.75 * 200
    assert img[0, 4, 0] == 150  # a padded with 0 there: 0.75 * 200
    assert img[0, 0, 5] == 25  # b padded with 0 there: 0.25 * 100
    assert boxes.tolist() == [[0, 0, 2, 2], [1, 1, 3, 4], [0, 0, 1, 1]] and cls.tolist() == [
        0,
        1,
        2,
    ]


def test_cutmix_pastes_the_rectangle_and_drops_covered_or_cut_boxes():
    a = _s(10, 10, 10, [[0, 0, 4, 4], [5, 5, 9, 9], [2, 2, 6, 4]], [0, 1, 2])
    b = _s(90, 10, 10, [[6, 6, 8, 8], [0, 0, 10, 10], [3, 3, 5, 5]], [3, 4, 5])
    img, boxes, cls = cutmix(a, b, (4, 4, 10, 10), min_visibility=0.3)
    assert (img[0, 4:, 4:] == 90).all() and (img[0, :4] == 10).all() and (img[0, :, :4] == 10).all()
    # a: box 0 untouched; box 1 fully covered -> dropped; box 2 (2..6 x 2..4) not covered -> kept
    # b: box 3 inside -> kept; box 4 clipped to 36/100 of its area -> kept; box 5 keeps 1/4: no
    assert cls.tolist() == [0, 2, 3, 4]
    assert boxes.tolist() == [[0, 0, 4, 4], [2, 2, 6, 4], [6, 6, 8, 8], [4, 4, 10, 10]]
    # a box of a half covered stays at 0.5, goes at 0.6
    a2 = _s(10, 10, 10, [[0, 4, 4, 8]], [7])
    assert cutmix(a2, _s(90, 10, 10), (0, 6, 10, 10), 0.5)[2].tolist() == [7]
    assert cutmix(a2, _s(90, 10, 10), (0, 6, 10, 10), 0.6)[2].tolist() == []


def test_mosaic_places_quadrants_and_moves_boxes():
    h = w = 8
    samples = [_s(v, h, w, [[0, 0, 8, 8]], [k]) for k, v in enumerate((10, 20, 30, 40))]
    # box in the bottom-right of a (full size 4..8): at half scale 2..4, shifted by (-2, -2)
    samples[0] = _s(10, h, w, [[4, 4, 8, 8], [0, 0, 2, 2]], [0, 9])
    img, boxes, cls = mosaic(samples, (2, 2), min_visibility=0.3)
    assert img[0, 0, 0] == 10 and img[0, 0, 5] == 20 and img[0, 5, 0] == 30 and img[0, 5, 5] == 40
    # a's box 1 (top-left corner) lands at -2..-1: outside its quadrant -> dropped
    assert cls.tolist() == [0, 1, 2, 3]
    assert boxes.tolist() == [
        [0, 0, 2, 2],  # a: 4..8 -> 2..4 -> shifted by -2
        [2, 0, 6, 2],  # b: 0..8 -> 0..4 at (2, -2), clipped to the top-right quadrant
        [0, 2, 2, 6],  # c: at (-2, 2), clipped to the bottom-left quadrant
        [2, 2, 6, 6],  # d: at (2, 2), whole
    ]


def _mapped(value, boxes, classes):
    inst = Instances((8, 8))
    inst.gt_boxes = Boxes(torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4))
    inst.gt_classes = torch.tensor(classes, dtype=torch.int64)
    return {"image": torch.full((3, 8, 8), value, dtype=torch.uint8), "instances": inst}


def test_mix_mapper_draws_partners_and_rebuilds_instances():
    records = [{"v": 50, "b": [[0, 0, 4, 4]], "c": [0]}, {"v": 150, "b": [[4, 4, 8, 8]], "c": [1]}]

    def base(r):
        return _mapped(r["v"], r["b"], r["c"])

    np.random.seed(0)
    out = MixMapper(base, records[1:], mixup_prob=1.0)(records[0])
    assert out["mix"] == "mixup" and len(out["instances"]) == 2
    assert out["instances"].gt_classes.tolist() == [0, 1]
    assert 50 < int(out["image"][0, 0, 0]) < 150
    out = MixMapper(base, records, mosaic_prob=1.0)(records[0])
    assert out["mix"] == "mosaic" and out["image"].shape == (3, 8, 8)
    untouched = MixMapper(base, records, cutmix_prob=0.0)(records[0])
    assert "mix" not in untouched and int(untouched["image"][0, 0, 0]) == 50
    with pytest.raises(ValueError, match="INPUT.MIX.MIXUP_PROB"):
        MixMapper(base, records, mixup_prob=2.0)


def test_config_switch_off_by_default():
    cfg = get_cfg()
    base = object()
    assert build_mix_mapper(cfg, base, [{}]) is base
    cfg.INPUT.MIX.CUTMIX_PROB = 0.5
    assert isinstance(build_mix_mapper(cfg, base, [{}]), MixMapper)

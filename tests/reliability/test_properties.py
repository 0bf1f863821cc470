"""Property-based tests (hypothesis): CSV readers, box conversions, augmentation pipeline.

Valid random inputs keep every box inside its image and with its own label; invalid random
inputs raise only the documented error types.
"""
from __future__ import annotations

import csv
import io
import logging

import albumentations as A
import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from cxr.data.augmentations import ALBUMENTATIONS_PRESETS, build_albumentations, compose_with_boxes
from cxr.data.datasets.common import AnnotationError, RowChecker
from cxr.data.datasets.nih import NIH_CLASSES, load_nih
from cxr.evaluation.evaluator import dataset_to_detection_set

from .corpus import IMG_H, IMG_W, NIH_BBOX_HEADER, _nih_images

SETTINGS = settings(max_examples=50, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture])  # fmt: skip


@pytest.fixture(autouse=True, scope="module")
def _quiet_cxr_logs():
    """Thousands of generated rows: keep the loaders' warnings out of the output."""
    log = logging.getLogger("cxr")
    level = log.level
    log.setLevel(logging.ERROR)
    yield
    log.setLevel(level)


coord = st.floats(0, 1, allow_nan=False).map(lambda v: round(v, 2))


@st.composite
def nih_rows(draw):
    """Valid NIH rows (images 64 x 80): (image, label, x, y, w, h), all distinct."""
    n = draw(st.integers(1, 8))
    rows = []
    for _ in range(n):
        x = round(draw(coord) * (IMG_W - 2), 2)
        y = round(draw(coord) * (IMG_H - 2), 2)
        w = max(round(draw(coord) * (IMG_W - x), 2), 0.5)
        h = max(round(draw(coord) * (IMG_H - y), 2), 0.5)
        img = draw(st.sampled_from(["00000001_000.png", "00000002_000.png"]))
        rows.append((img, draw(st.sampled_from(NIH_CLASSES)), x, y, w, h))
    return list(dict.fromkeys(rows))


@pytest.fixture(scope="module")
def nih_root(tmp_path_factory):
    folder = str(tmp_path_factory.mktemp("nihprop"))
    return folder, _nih_images(folder)


def _write_csv(path, rows, quoting, newline):
    buf = io.StringIO()
    csv.writer(buf, quoting=quoting, lineterminator=newline).writerows(rows)
    with open(path, "w", newline="") as f:
        f.write(NIH_BBOX_HEADER.replace("\n", newline) + buf.getvalue())


@SETTINGS
@given(rows=nih_rows(), quoting=st.sampled_from([csv.QUOTE_MINIMAL, csv.QUOTE_ALL]),
       newline=st.sampled_from(["\n", "\r\n"]))  # fmt: skip
def test_nih_valid_rows_round_trip_inside_image_with_their_labels(nih_root, rows, quoting, newline):
    folder, root = nih_root
    path = f"{folder}/valid.csv"
    _write_csv(path, rows, quoting, newline)
    out = load_nih(path, root)
    got = sorted((d["file_name"].rsplit("/", 1)[1], NIH_CLASSES[a["category_id"]],
                  *np.round(a["bbox"], 2)) for d in out for a in d["annotations"])  # fmt: skip
    want = sorted((r[0], r[1], r[2], r[3], round(r[2] + r[4], 2), round(r[3] + r[5], 2))
                  for r in rows)  # fmt: skip
    assert [g[:2] for g in got] == [w_[:2] for w_ in want]  # every row, with its own label
    np.testing.assert_allclose([g[2:] for g in got], [w_[2:] for w_ in want], atol=0.011)
    for d in out:
        assert (d["height"], d["width"]) == (IMG_H, IMG_W)
        for a in d["annotations"]:
            x0, y0, x1, y1 = a["bbox"]
            assert 0 <= x0 < x1 <= IMG_W and 0 <= y0 < y1 <= IMG_H


cell = st.one_of(st.text(max_size=12), st.floats(allow_nan=True, allow_infinity=True).map(str),
                 st.integers(-10**6, 10**6).map(str), st.just(""), st.just("../x.png"))  # fmt: skip


@SETTINGS
@given(rows=st.lists(st.lists(cell, min_size=0, max_size=9), min_size=0, max_size=6),
       strict=st.booleans())  # fmt: skip
def test_nih_random_rows_raise_only_annotation_error(nih_root, rows, strict):
    folder, root = nih_root
    path = f"{folder}/random.csv"
    _write_csv(path, rows, csv.QUOTE_MINIMAL, "\n")
    try:
        out = load_nih(path, root, strict=strict)
    except AnnotationError as e:
        assert e.file == path and str(path) in str(e)
        return
    for d in out:  # whatever was kept is a valid box inside its image
        for a in d["annotations"]:
            x0, y0, x1, y1 = a["bbox"]
            assert 0 <= x0 < x1 <= d["width"] and 0 <= y0 < y1 <= d["height"]
            assert 0 <= a["category_id"] < len(NIH_CLASSES)


any_float = st.floats(-1e4, 1e4, allow_nan=False)


@SETTINGS
@given(box=st.lists(any_float, min_size=4, max_size=4), h=st.integers(1, 2000),
       w=st.integers(1, 2000), strict=st.booleans())  # fmt: skip
def test_box_check_clips_inside_or_refuses(box, h, w, strict):
    check = RowChecker("f.csv", strict=strict)
    try:
        out = check.box_xyxy(7, ("x0", "y0", "x1", "y1"), box, h, w)
    except AnnotationError as e:
        assert strict and e.row == 7 and e.field in ("x0", "y0", "x1", "y1")
        return
    if out is None:
        assert not strict and check.num_skipped == 1
        return
    x0, y0, x1, y1 = out
    assert 0 <= x0 < x1 <= w and 0 <= y0 < y1 <= h
    if strict:  # only boxes within the 2 px tolerance pass unrepaired, clipped to the image
        assert np.allclose(out, np.clip(box, 0, [w, h, w, h]))


@SETTINGS
@given(boxes=st.lists(st.tuples(st.floats(0, 500), st.floats(0, 500), st.floats(0.01, 300),
                                st.floats(0.01, 300)), min_size=1, max_size=6))  # fmt: skip
def test_xywh_and_xyxy_dicts_give_the_same_detection_set(boxes):
    xywh = [{"bbox": list(b), "bbox_mode": 1, "category_id": 0} for b in boxes]
    xyxy = [{"bbox": [b[0], b[1], b[0] + b[2], b[1] + b[3]], "bbox_mode": 0, "category_id": 0}
            for b in boxes]  # fmt: skip
    a, _, _ = dataset_to_detection_set([{"image_id": 1, "annotations": xywh}], 1, [])
    b, _, _ = dataset_to_detection_set([{"image_id": 1, "annotations": xyxy}], 1, [])
    np.testing.assert_allclose(a.gt_boxes, b.gt_boxes, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(a.gt_boxes_xywh, np.asarray(boxes), rtol=1e-9, atol=1e-6)
    np.testing.assert_allclose(b.gt_boxes_xywh, np.asarray(boxes), rtol=1e-9, atol=1e-6)


@st.composite
def image_with_boxes(draw):
    """An image with up to 4 non-overlapping filled boxes (one per quadrant), value per label."""
    h, w = draw(st.integers(48, 160)), draw(st.integers(48, 160))
    img = np.full((h, w), 20, np.uint8)
    boxes, labels = [], []
    for q in draw(st.lists(st.integers(0, 3), min_size=1, max_size=4, unique=True)):
        qx, qy = (q % 2) * w // 2, (q // 2) * h // 2
        bw = draw(st.integers(10, w // 2 - 4))
        bh = draw(st.integers(10, h // 2 - 4))
        x0, y0 = qx + draw(st.integers(0, w // 2 - bw)), qy + draw(st.integers(0, h // 2 - bh))
        label = draw(st.integers(0, 2))
        img[y0 : y0 + bh, x0 : x0 + bw] = 80 + 70 * label
        boxes.append([x0, y0, x0 + bw, y0 + bh]), labels.append(label)
    return img, np.asarray(boxes, np.float64), labels


def _run(pipeline, img, boxes, seed):
    pipeline.set_random_seed(seed)
    return pipeline(image=img, bboxes=boxes, ann_idx=list(range(len(boxes))))


@SETTINGS
@given(data=image_with_boxes(), preset=st.sampled_from(["light", "strong"]),
       seed=st.integers(0, 2**31 - 1))  # fmt: skip
def test_presets_keep_boxes_inside_and_labels_attached(data, preset, seed):
    img, boxes, labels = data
    out = _run(build_albumentations(preset), img, boxes, seed)
    h, w = out["image"].shape[:2]
    assert len(out["bboxes"]) == len(out["ann_idx"]) <= len(boxes)
    assert len(set(map(int, out["ann_idx"]))) == len(out["ann_idx"])
    for x0, y0, x1, y1 in out["bboxes"]:
        assert 0 <= x0 < x1 <= w and 0 <= y0 < y1 <= h


@SETTINGS
@given(data=image_with_boxes(), seed=st.integers(0, 2**31 - 1))
def test_geometric_part_moves_each_box_with_its_own_pixels(data, seed):
    img, boxes, labels = data
    affine = ALBUMENTATIONS_PRESETS.get("strong")()[0]  # the geometric transform of "strong"
    assert isinstance(affine, A.Affine)
    affine.p = 1.0
    pipeline = compose_with_boxes([affine], min_visibility=0.9)
    out = _run(pipeline, img, boxes, seed)
    assume(len(out["bboxes"]))
    for (x0, y0, x1, y1), i in zip(out["bboxes"], out["ann_idx"]):
        cx, cy = int((x0 + x1) / 2), int((y0 + y1) / 2)
        # The output box's centre lies on its own lesion: the value drawn for its label.
        assert abs(int(out["image"][cy, cx]) - (80 + 70 * labels[int(i)])) <= 2

"""Prepared films are scored in the original films' pixels: the same detections expressed in
both frames give equal metrics (COCO AP and its area ranges, mAP@0.4, FROC, IoBB)."""

from __future__ import annotations

import math

import numpy as np
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.structures import BoxMode

from cxr.evaluation import CXREvaluator
from cxr.evaluation.frames import to_original_frame

SCALE = 1024 / 3000  # a 3000 x 2500 film prepared at 1024
# sides in original pixels: small (< 32), medium (32-96) and large (> 96) in COCO's area ranges,
# which a prepared frame would shift (60 px -> 20 px: medium -> small)
SIDES = (24.0, 60.0, 80.0, 400.0)


def _original(n=8, seed=0):
    rng = np.random.default_rng(seed)
    dicts, preds = [], []
    for i in range(n):
        annos, boxes, scores, classes = [], [], [], []
        for k, side in enumerate(SIDES[: 1 + i % len(SIDES)]):
            x, y = rng.uniform(100, 2000), rng.uniform(100, 2400)
            box = [x, y, x + side * rng.uniform(0.8, 1.2), y + side]
            annos.append({"bbox": [box[0], box[1], box[2] - box[0], side],
                          "bbox_mode": BoxMode.XYWH_ABS, "category_id": k % 2})  # fmt: skip
            boxes.append(np.array(box) + rng.normal(0, side * 0.08, 4))
            scores.append(rng.uniform(0.2, 1.0)), classes.append(k % 2)
        for c in (0, 1):  # false positives
            x, y = rng.uniform(0, 2000, 2)
            boxes.append([x, y, x + 50, y + 70]), scores.append(rng.uniform(0, 0.7))
            classes.append(c)
        dicts.append({"file_name": f"f{i}.dicom", "image_id": f"f{i}", "height": 3000,
                      "width": 2500, "patient_id": f"p{i // 2}", "annotations": annos})  # fmt: skip
        preds.append({"image_id": f"f{i}", "boxes": np.array(boxes), "scores": np.array(scores),
                      "classes": np.array(classes)})  # fmt: skip
    return dicts, preds


def _prepared(dicts, preds):
    out = []
    for d in dicts:
        annos = []
        for a in d["annotations"]:
            box = BoxMode.convert(a["bbox"], a["bbox_mode"], BoxMode.XYXY_ABS)
            annos.append({**a, "bbox": [v * SCALE for v in box], "bbox_mode": BoxMode.XYXY_ABS})
        out.append({**d, "file_name": f"{d['image_id']}.png", "annotations": annos,
                    "height": round(3000 * SCALE), "width": round(2500 * SCALE),
                    "orig_height": 3000, "orig_width": 2500, "scale": SCALE})  # fmt: skip
    return out, [{**p, "boxes": p["boxes"] * SCALE} for p in preds]


def _metrics(name, dicts, preds):
    if name in DatasetCatalog.list():
        DatasetCatalog.remove(name)
    DatasetCatalog.register(name, lambda: dicts)
    MetadataCatalog.get(name).set(thing_classes=["a", "b"], evaluator_type="cxr")
    ev = CXREvaluator(name, None, plots=False, html_report=False, distributed=False)
    ev.add_predictions(preds)
    flat = ev.evaluate()["cxr"]
    nested = {k: v for k, v in ev.last_result.metrics.items() if k != "settings"}
    return {**flat, **_flatten(nested, "")}


def _flatten(obj, prefix: str) -> dict:
    """Every number of a nested metrics structure, keyed by its path."""
    if isinstance(obj, dict):
        return {
            k: v for key, val in obj.items() for k, v in _flatten(val, f"{prefix}/{key}").items()
        }
    if isinstance(obj, (list, tuple)):
        return {
            k: v for i, val in enumerate(obj) for k, v in _flatten(val, f"{prefix}/{i}").items()
        }
    return {prefix: float(obj)} if isinstance(obj, (int, float, np.number)) else {}


def _same(a: dict, b: dict) -> list[str]:
    return [
        k
        for k in a
        if not (
            a[k] == b[k]
            or (math.isnan(a[k]) and math.isnan(b[k]))
            or math.isclose(a[k], b[k], rel_tol=1e-9, abs_tol=1e-12)
        )
    ]


def test_prepared_and_original_frames_give_equal_metrics():
    dicts, preds = _original()
    small_dicts, small_preds = _prepared(dicts, preds)
    orig = _metrics("cxr_test_frames_orig", dicts, preds)
    prep = _metrics("cxr_test_frames_prepared", small_dicts, small_preds)
    assert set(orig) == set(prep)
    for key in ("AP", "APs", "APm", "APl", "voc_map40", "froc_cpm", "/iobb_accuracy/"):
        assert any(k.startswith(key) for k in orig), key
    assert _same(orig, prep) == []
    # without the mapping the area ranges differ: the check above can fail
    unscaled = [{k: v for k, v in d.items() if k != "scale"} for d in small_dicts]
    raw = _metrics("cxr_test_frames_raw", unscaled, small_preds)
    assert {"APs", "APm"} & set(_same(orig, raw))


def test_to_original_frame_maps_boxes_and_leaves_inputs():
    dicts, preds = _original(n=2)
    small_dicts, small_preds = _prepared(dicts, preds)
    back, back_preds = to_original_frame(small_dicts, small_preds)
    for d, b in zip(dicts, back):
        assert (b["height"], b["width"]) == (3000, 2500)
        for a, x in zip(d["annotations"], b["annotations"]):
            want = BoxMode.convert(a["bbox"], a["bbox_mode"], BoxMode.XYXY_ABS)
            np.testing.assert_allclose(x["bbox"], want, rtol=1e-12)
    np.testing.assert_allclose(back_preds[0]["boxes"], preds[0]["boxes"], rtol=1e-12)
    assert (
        small_dicts[0]["scale"] == SCALE and small_preds[0]["boxes"] is not back_preds[0]["boxes"]
    )
    same, same_preds = to_original_frame(dicts, preds)  # originals: unchanged
    assert same == dicts and same_preds[0]["boxes"] is preds[0]["boxes"]

"""tools/ensemble.py fuses COCO result files; tools/eval.py --gt-json scores the result."""
from __future__ import annotations

import json

import numpy as np
import pytest

from ..evaluation.cocoref import random_coco
from .util import load_tool


def _jitter(dets, seed, drop):
    rng = np.random.default_rng(seed)
    out = []
    for d in dets:
        if rng.uniform() < drop:
            continue
        x, y, w, h = d["bbox"]
        out.append(dict(d, bbox=[x + rng.normal(0, 1), y + rng.normal(0, 1), w, h],
                        score=float(np.clip(d["score"] + rng.normal(0, 0.05), 0, 1))))  # fmt: skip
    return out


def test_fuse_two_files_then_evaluate(tmp_path):
    gt, dets = random_coco(5, n_images=20, n_classes=3)
    paths = []
    for i, drop in enumerate((0.3, 0.3)):
        p = tmp_path / f"model{i}.json"
        p.write_text(json.dumps(_jitter(dets, i, drop)))
        paths.append(str(p))
    g = tmp_path / "gt.json"
    g.write_text(json.dumps(gt))
    fused = tmp_path / "fused.json"
    summary = load_tool("ensemble").main(["--detections", *paths, "--weights", "2", "1",
                                          "--method", "wbf", "--iou", "0.55", "--gt-json", str(g),
                                          "--output", str(fused)])  # fmt: skip
    out = json.load(open(fused))
    assert summary["fused"] == len(out) > 0
    assert {d["image_id"] for d in out} <= {im["id"] for im in gt["images"]}
    assert all(0 <= d["score"] <= 1 and d["bbox"][2] >= 0 for d in out)
    load_tool("eval").main(["--gt-json", str(g), "--detections", str(fused), "--output",
                            str(tmp_path / "eval"), "--no-plots", "--bootstrap", "0"])  # fmt: skip
    metrics = json.load(open(tmp_path / "eval" / "metrics.json"))
    assert 0 < metrics["coco"]["AP50"] <= 1


@pytest.mark.parametrize("method", ["nms", "soft-nms", "nmw"])
def test_other_methods(tmp_path, method):
    gt, dets = random_coco(6, n_images=5, n_classes=2)
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    a.write_text(json.dumps(dets)), b.write_text(json.dumps(_jitter(dets, 1, 0.0)))
    out = tmp_path / f"{method}.json"
    load_tool("ensemble").main(["--detections", str(a), str(b), "--method", method,
                                "--output", str(out)])  # fmt: skip
    fused = json.load(open(out))
    assert 0 < len(fused) <= 2 * len(dets)


def test_bad_file_is_named(tmp_path):
    p = tmp_path / "bad.json"
    p.write_text('[{"image_id": 1, "bbox": [0, 0, 1, 1], "score": 0.5}]')
    with pytest.raises(ValueError, match=r"bad.json: detection 0, field 'category_id': missing"):
        load_tool("ensemble").main(["--detections", str(p), "--output", str(tmp_path / "o.json")])

"""Box fusion through ensemble-boxes: pixel <-> normalized wrapping, methods, COCO files."""
from __future__ import annotations

import json

import numpy as np
import pytest
from ensemble_boxes import weighted_boxes_fusion

from cxr.ensemble import fuse_boxes
from cxr.ensemble.coco import fuse_coco_results, read_coco_results

B1 = np.array([[10, 10, 50, 50], [100, 100, 150, 160]], float)
B2 = np.array([[14, 6, 54, 46], [300, 20, 340, 60]], float)
S1, S2 = np.array([0.9, 0.5]), np.array([0.6, 0.7])
L1, L2 = np.array([0, 1]), np.array([0, 1])


def test_wbf_hand_computed():
    boxes, scores, labels = fuse_boxes([B1[:1], B2[:1]], [S1[:1], S2[:1]], [L1[:1], L2[:1]])
    # one cluster: score-weighted mean box, mean score (both lists present)
    np.testing.assert_allclose(boxes[0], (0.9 * B1[0] + 0.6 * B2[0]) / 1.5, atol=1e-3)
    assert scores[0] == pytest.approx(0.75, abs=1e-6) and labels.tolist() == [0]


def test_wbf_equals_the_library_on_normalized_boxes():
    size = np.array([400, 200, 400, 200], float)
    ours = fuse_boxes([B1, B2], [S1, S2], [L1, L2], scale=(400, 200), weights=[2, 1], iou_thr=0.5)
    ref = weighted_boxes_fusion([B1 / size, B2 / size], [S1, S2], [L1, L2], weights=[2, 1],
                                iou_thr=0.5)  # fmt: skip
    order = np.argsort(-ref[1], kind="stable")
    np.testing.assert_allclose(ours[0], ref[0][order] * size, atol=1e-3)
    np.testing.assert_allclose(ours[1], ref[1][order], atol=1e-6)


@pytest.mark.parametrize("method", ["wbf", "nms", "soft-nms", "nmw"])
def test_scale_does_not_change_the_result(method):
    a = fuse_boxes([B1, B2], [S1, S2], [L1, L2], method=method, scale=(1000, 800))
    b = fuse_boxes([B1, B2], [S1, S2], [L1, L2], method=method)  # scaled by the boxes' extent
    for x, y in zip(a, b):
        np.testing.assert_allclose(x, y, atol=1e-3)


def test_nms_keeps_original_boxes_and_skip_score_drops():
    boxes, scores, _ = fuse_boxes([B1, B2], [S1, S2], [L1, L2], method="nms", iou_thr=0.5)
    assert {tuple(b) for b in boxes} == {tuple(B1[0]), tuple(B1[1]), tuple(B2[1])}
    _, scores, _ = fuse_boxes([B1, B2], [S1, S2], [L1, L2], method="nms", skip_box_thr=0.65)
    np.testing.assert_allclose(sorted(scores), [0.7, 0.9])


def test_empty_and_bad_arguments():
    e = np.zeros((0, 4))
    assert len(fuse_boxes([e, e], [np.zeros(0)] * 2, [np.zeros(0)] * 2)[0]) == 0
    with pytest.raises(ValueError, match="unknown fusion method 'mean'"):
        fuse_boxes([B1], [S1], [L1], method="mean")
    with pytest.raises(ValueError, match="1 weights for 2"):
        fuse_boxes([B1, B2], [S1, S2], [L1, L2], weights=[1])


def _coco(boxes, scores, labels, image_id=7):
    return [{"image_id": image_id, "category_id": int(c), "score": float(s),
             "bbox": [b[0], b[1], b[2] - b[0], b[3] - b[1]]}
            for b, s, c in zip(boxes.tolist(), scores, labels)]  # fmt: skip


def test_coco_fusion_equals_box_fusion():
    fused = fuse_coco_results([_coco(B1, S1, L1), _coco(B2, S2, L2) + _coco(B1, S1, L1, 8)])
    boxes, scores, _ = fuse_boxes([B1, B2], [S1, S2], [L1, L2])
    seven = [d for d in fused if d["image_id"] == 7]
    assert [d["score"] for d in seven] == pytest.approx(scores.tolist())
    x, y, w, h = seven[0]["bbox"]
    np.testing.assert_allclose([x, y, x + w, y + h], boxes[0], atol=1e-6)
    assert len([d for d in fused if d["image_id"] == 8]) == 2  # only one list: halved scores
    assert [d["score"] for d in fused if d["image_id"] == 8] == pytest.approx([0.45, 0.25])


@pytest.mark.parametrize(
    "content,msg",
    [
        ('{"a": 1}', "expected a JSON list"),
        ('[{"image_id": 1, "category_id": 0, "score": 0.5}]', "detection 0, field 'bbox': missing"),
        ('[{"image_id": 1, "category_id": 0, "bbox": [0, 0, -1, 2], "score": 0.5}]', "'bbox'"),
        ('[{"image_id": 1, "category_id": 0, "bbox": [0, 0, 1, 2], "score": 1.5}]', "'score'"),
    ],
)
def test_bad_results_files_are_named(tmp_path, content, msg):
    p = tmp_path / "r.json"
    p.write_text(content)
    with pytest.raises(ValueError, match=msg):
        read_coco_results(str(p))
    assert json.loads(content) is not None

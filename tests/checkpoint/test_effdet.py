"""effdet -> cxr EfficientDet: the converted model computes effdet's function (random weights)."""
from __future__ import annotations

import pytest
import torch

from cxr.checkpoint import convert_effdet_state

from .effdet_models import cxr_model, effdet, random_effdet

SIZE = 128
LEVELS = ["p3", "p4", "p5", "p6", "p7"]
ARCHS = ["efficientdet_d0", "tf_efficientdet_d0", "tf_efficientdet_d1", "tf_efficientdet_lite0"]


def _box_order(channels: int) -> torch.Tensor:
    """effdet's (ty, tx, th, tw) channel of each of cxr's (dx, dy, dw, dh) channels."""
    return torch.tensor([a * 4 + j for a in range(channels // 4) for j in (1, 0, 3, 2)])


def _detections_alike(src, ours, x: torch.Tensor) -> None:
    """Both post-process alike: all (anchor, class) candidates (effdet's top 5000 fall within
    cxr's top 5000 per level), class-wise NMS at IoU 0.5, 100 kept; then, as detectron2's
    detector_postprocess does, boxes clipped to the image and those left empty dropped."""
    bench = effdet.DetBenchPredict(src).eval()
    with torch.no_grad():
        det = bench(x)[0]
        inst = ours([{"image": x[0], "height": SIZE, "width": SIZE}])[0]["instances"]
    boxes = det[:, :4].clamp(0, SIZE)
    det = det[(boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])]
    boxes, scores, classes = det[:, :4].clamp(0, SIZE), det[:, 4], det[:, 5].long() - 1
    assert len(inst) == len(det) > 50
    # order by score (ties, if any, may be ordered differently): match each effdet detection
    for b, s, c in zip(boxes, scores, classes):
        close = (inst.pred_classes == c) & ((inst.scores - s).abs() <= 1e-4)
        close &= (inst.pred_boxes.tensor - b).abs().max(dim=1).values <= 0.5
        assert close.any(), (b, s, c)


@pytest.mark.parametrize("arch", ARCHS)
def test_converted_model_computes_effdets_function(arch):
    src = random_effdet(arch, SIZE)
    state, report = convert_effdet_state(src.state_dict())
    assert not report.dropped and not report.reinitialized
    ours = cxr_model(arch, SIZE, opts=["MODEL.RETINANET.SCORE_THRESH_TEST", "0.0",
                                       "MODEL.RETINANET.TOPK_CANDIDATES_TEST", "5000"])  # fmt: skip
    assert set(ours.state_dict()) == set(state)
    ours.load_state_dict(state)
    x = torch.randn(1, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        feats_src = src.fpn(src.backbone(x))
        feats = ours.backbone(x)
        for name, a in zip(LEVELS, feats_src):
            torch.testing.assert_close(feats[name], a, rtol=0, atol=1e-4, msg=name)
        cls_src, box_src = src.class_net(feats_src), src.box_net(feats_src)
        cls, box = ours.head([feats[k] for k in LEVELS])
    for lvl in range(5):
        torch.testing.assert_close(cls[lvl], cls_src[lvl], rtol=0, atol=1e-4)
        order = _box_order(box[lvl].shape[1])
        torch.testing.assert_close(box[lvl], box_src[lvl][:, order], rtol=0, atol=1e-4)

    anchors_src = effdet.anchors.Anchors.from_config(src.config).boxes[:, [1, 0, 3, 2]]
    anchors = torch.cat([b.tensor for b in ours.anchor_generator([feats[k] for k in LEVELS])])
    torch.testing.assert_close(anchors, anchors_src, rtol=0, atol=1e-3)
    _detections_alike(src, ours, x)


def test_tf_weights_need_same_padding():
    """tf_efficientdet weights in the symmetric-padding D0 (same tensor names) compute another
    function: the padding mode is what makes the conversion exact."""
    src = random_effdet("tf_efficientdet_d0", SIZE)
    state, _ = convert_effdet_state(src.state_dict())
    sym = cxr_model("tf_efficientdet_d0", SIZE, opts=["MODEL.BIFPN.PRESET", "D0"])
    sym.load_state_dict(state)
    x = torch.randn(1, 3, SIZE, SIZE)
    with torch.no_grad():
        diff = (sym.backbone(x)["p3"] - src.fpn(src.backbone(x))[0]).abs().max()
    assert diff > 1e-3  # 10x the equivalence tolerance


def test_class_count_change_reinitializes_only_the_class_layer():
    src = random_effdet("efficientdet_d0", SIZE)
    same, _ = convert_effdet_state(src.state_dict())
    state, report = convert_effdet_state(src.state_dict(), num_classes=8)
    cls_w, cls_b = "head.cls_score.1.weight", "head.cls_score.1.bias"
    assert report.reinitialized == [cls_w, cls_b]
    assert report.dropped == ["class_net.predict.conv_pw.weight", "class_net.predict.conv_pw.bias"]
    assert state[cls_w].shape[0] == 9 * 8
    torch.testing.assert_close(state[cls_b], torch.full((72,), -4.59511985013459))  # prior 0.01
    assert 0.005 < float(state[cls_w].std()) < 0.015
    for k, v in same.items():
        if k not in (cls_w, cls_b):
            assert torch.equal(state[k], v), k
    ours = cxr_model("efficientdet_d0", SIZE, num_classes=8)
    ours.load_state_dict(state)  # strict: every tensor has its place


def test_not_an_effdet_state_dict_is_named():
    with pytest.raises(ValueError, match="not an effdet"):
        convert_effdet_state({"conv1.weight": torch.zeros(1)})

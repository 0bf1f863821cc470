"""Test-time augmentation: views mapped back to the original image and merged by WBF."""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from detectron2.structures import Boxes, Instances

from cxr.config import get_cfg
from cxr.modeling.test_time_augmentation import DetectorWithTTA, build_tta_model, tta_sizes


class BrightBlobDetector(nn.Module):
    """Finds the bright square of each input image: one box (class 1, score 0.8) around the
    pixels > 128, in the input's ``height`` x ``width`` (as detectron2 models report)."""

    def __init__(self):
        super().__init__()
        self.seen = []

    def forward(self, batched_inputs):
        out = []
        for x in batched_inputs:
            img = x["image"][0].numpy()
            self.seen.append(img.shape)
            ys, xs = np.nonzero(img > 128)
            sy, sx = x["height"] / img.shape[0], x["width"] / img.shape[1]
            box = [xs.min() * sx, ys.min() * sy, (xs.max() + 1) * sx, (ys.max() + 1) * sy]
            out.append({"instances": Instances(
                (x["height"], x["width"]), pred_boxes=Boxes(torch.tensor([box])),
                scores=torch.tensor([0.8]), pred_classes=torch.tensor([1]),
            )})  # fmt: skip
        return out


def _input():
    img = np.full((200, 300), 40, np.uint8)
    img[50:90, 30:110] = 230  # off-centre: a wrong flip inversion would move it
    # as the test mapper gives it: resized to 100 x 150, original size 400 x 600
    small = img[::2, ::2]
    return {"image": torch.as_tensor(np.repeat(small[None], 3, 0)), "height": 400, "width": 600}


def test_views_map_back_to_the_original_box():
    det = BrightBlobDetector()
    tta = DetectorWithTTA(model=det, min_sizes=[80, 100, 140], max_size=1000, flip=True)
    inst = tta([_input()])[0]["instances"]
    assert len(det.seen) == 6 and {s[0] for s in det.seen} == {80, 100, 140}
    assert inst.image_size == (400, 600) and inst.pred_classes.tolist() == [1]
    np.testing.assert_allclose(inst.pred_boxes.tensor[0].numpy(), [60, 100, 220, 180], atol=3)
    assert abs(inst.scores.item() - 0.8) < 1e-6  # all six views agree: WBF keeps the score


def test_config_defaults_and_switch():
    cfg = get_cfg()
    assert not cfg.TEST.AUG.ENABLED and not cfg.TEST.AUG.FLIP  # flips swap laterality
    cfg.INPUT.MIN_SIZE_TEST, cfg.INPUT.MAX_SIZE_TEST = 224, 224
    assert tta_sizes(cfg) == ([179, 224, 269], 269)
    model = BrightBlobDetector()
    assert build_tta_model(cfg, model) is model
    cfg.TEST.AUG.ENABLED = True
    wrapped = build_tta_model(cfg, model)
    assert isinstance(wrapped, DetectorWithTTA) and wrapped.views.min_sizes == [179, 224, 269]


class OverlappingBoxesDetector(nn.Module):
    """Three class-0 boxes in the input's ``height`` x ``width`` (scaled from the view's
    pixels), two of them overlapping with IoU ~0.67, as a detector with a loose NMS gives."""

    def forward(self, batched_inputs):
        out = []
        for x in batched_inputs:
            sy, sx = x["height"] / x["image"].shape[1], x["width"] / x["image"].shape[2]
            boxes = torch.tensor([[10.0, 10, 50, 50], [14, 14, 54, 54], [80, 20, 120, 60]])
            boxes *= torch.tensor([sx, sy, sx, sy], dtype=torch.float32)
            out.append({"instances": Instances(
                (x["height"], x["width"]), pred_boxes=Boxes(boxes),
                scores=torch.tensor([0.9, 0.7, 0.5]), pred_classes=torch.tensor([0, 0, 0]),
            )})  # fmt: skip
        return out


def test_one_view_gives_the_single_view_detections():
    """TTA with one view at the test size: nothing to merge, so the detections are the model's
    own (WBF of the one list would fuse its two overlapping boxes)."""
    det, x = OverlappingBoxesDetector(), _input()
    single = det([x])[0]["instances"]
    inst = DetectorWithTTA(model=det, min_sizes=[100], max_size=1000)([x])[0]["instances"]
    assert inst.image_size == single.image_size and len(inst) == len(single) == 3
    assert inst.pred_classes.tolist() == single.pred_classes.tolist()
    torch.testing.assert_close(inst.scores, single.scores, rtol=0, atol=0)
    torch.testing.assert_close(inst.pred_boxes.tensor, single.pred_boxes.tensor, rtol=0, atol=1e-3)

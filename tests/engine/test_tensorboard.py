"""TensorBoard: losses, learning rate, evaluation metrics, validation losses and images
(predictions, and the Grad-CAM images of each evaluation)."""
from __future__ import annotations

import glob

from detectron2.utils.env import seed_all_rng
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from cxr.engine import Trainer

from .helpers import tiny_cfg


def test_event_files_hold_losses_lr_metrics_and_images(tiny_dataset, tmp_path):
    out = str(tmp_path / "tb")
    cfg = tiny_cfg(
        tiny_dataset, out, 4,
        "TEST.EVAL_PERIOD", "2", "TEST.VAL_LOSS_PERIOD", "2", "CXR.VIS.PERIOD", "2",
        "CXR.VIS.SCORE_THRESH", "0.0", "TEST.BEST_METRIC", "val/total_loss", "TEST.BEST_MODE", "min", "MODEL.EMA.ENABLED", "True",
        "CXR.VIS.GRADCAM_IMAGES", "2", "MODEL.RETINANET.SCORE_THRESH_TEST", "0.0",
    )  # fmt: skip
    seed_all_rng(0)
    trainer = Trainer(cfg)
    trainer.resume_or_load(resume=False)
    trainer.train()

    acc = EventAccumulator(glob.glob(f"{out}/events.out.tfevents.*")[0], size_guidance={"images": 0})
    acc.Reload()
    scalars = set(acc.Tags()["scalars"])
    assert {"total_loss", "loss_cls", "loss_box_reg", "lr"} <= scalars
    assert {"val/total_loss", "val/loss_cls"} <= scalars
    assert "bbox/AP50" in scalars
    assert len(acc.Scalars("bbox/AP50")) == 2  # at iteration 2 and after the last
    images = acc.Tags()["images"]
    assert "cxr/vis/0" in images and "cxr/vis/1" in images
    assert len(acc.Images("cxr/vis/0")) == 2
    # Grad-CAM of the first two evaluation images at each evaluation (iteration 2, the last)
    assert {"cxr/gradcam/0", "cxr/gradcam/1"} <= set(images) and "cxr/gradcam/2" not in images
    steps = [e.step for e in acc.Images("cxr/gradcam/0")]
    assert len(steps) == 2 and steps == [e.step for e in acc.Scalars("bbox/AP50")]
    # model_best.pth was kept by the validation loss.
    assert glob.glob(f"{out}/model_best.pth")

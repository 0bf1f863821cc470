"""Training hooks added by cxr on top of detectron2's defaults."""

from __future__ import annotations

import logging
import os
from typing import Callable

import numpy as np
import torch
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data.detection_utils import convert_image_to_rgb
from detectron2.engine import HookBase, hooks
from detectron2.utils import comm
from detectron2.utils.visualizer import Visualizer

from ..fileio import write_bytes_atomic
from .ema import ModelEMA, ema_swapped, unwrap

__all__ = ["BestCheckpointer", "EMAEvalHook", "ValidationLossHook", "PredictionVisHook"]

logger = logging.getLogger(__name__)

THRESHOLDS_FILE = "thresholds.json"


def _is_due(trainer, period: int) -> bool:
    it = trainer.iter + 1
    return period > 0 and (it % period == 0 or it == trainer.max_iter)


class EMAEvalHook(hooks.EvalHook):
    """detectron2's EvalHook, evaluating the EMA weights when an EMA is kept.

    ``after_eval(model)``, when given, runs after each evaluation with the same weights (e.g.
    the Grad-CAM images of :func:`~cxr.engine.gradcam_hook.put_gradcam_images`).
    """

    def __init__(
        self,
        eval_period: int,
        eval_function: Callable,
        ema: ModelEMA | None,
        model,
        after_eval: Callable | None = None,
    ):
        def _eval_with_ema():
            with ema_swapped(model, ema):
                results = eval_function()
                if after_eval is not None:
                    after_eval(model)
                return results

        super().__init__(eval_period, _eval_with_ema)


class BestCheckpointer(hooks.BestCheckpointer):
    """detectron2's BestCheckpointer that also keeps the validation operating points.

    Each time ``model_best.pth`` is written, the evaluator's ``thresholds.json`` (per-class
    thresholds chosen on the validation set, in ``<OUTPUT_DIR>/inference/<dataset>/``) is copied
    to ``<OUTPUT_DIR>/thresholds.json`` beside it.
    """

    def __init__(self, *args, thresholds_src: str, thresholds_dst: str, **kwargs):
        super().__init__(*args, **kwargs)
        self._thresholds_src = thresholds_src
        self._thresholds_dst = thresholds_dst

    def _best_checking(self):
        before = (self.best_metric, self.best_iter)
        super()._best_checking()
        if (self.best_metric, self.best_iter) != before and os.path.isfile(self._thresholds_src):
            with open(self._thresholds_src, "rb") as f:
                write_bytes_atomic(self._thresholds_dst, f.read())
            logger.info("Operating points of the best model saved to %s", self._thresholds_dst)


def _frozen_bn(model):
    """Put norm layers in eval mode (so running stats don't move); returns them."""
    norms = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    for m in norms:
        m.eval()
    return norms


class ValidationLossHook(HookBase):
    """Every ``period`` iterations, mean losses over a validation loader as ``val/<loss>``.

    The model stays in training mode (detectron2 models return losses only then) with BN in eval
    mode and no gradients, so the pass changes nothing.
    """

    def __init__(self, period: int, data_loader_factory: Callable, max_images: int):
        self._period = period
        self._factory = data_loader_factory
        self._max_images = max_images

    def _compute(self) -> dict[str, float]:
        model = self.trainer.model
        totals: dict[str, float] = {}
        seen = 0
        norms = _frozen_bn(model)
        try:
            with torch.no_grad():
                for batch in self._factory():
                    losses = model(batch)
                    for k, v in losses.items():
                        totals[k] = totals.get(k, 0.0) + float(v) * len(batch)
                    seen += len(batch)
                    if seen >= self._max_images:
                        break
        finally:
            for m in norms:
                m.train()
        seen = max(seen, 1)
        means = {k: v / seen for k, v in totals.items()}
        means["total_loss"] = sum(means.values())
        return means

    def after_step(self):
        if not _is_due(self.trainer, self._period):
            return
        means = self._compute()
        reduced = comm.all_gather(means)
        if comm.is_main_process():
            keys = reduced[0].keys()
            avg = {f"val/{k}": float(np.mean([r[k] for r in reduced])) for k in keys}
            self.trainer.storage.put_scalars(**avg, smoothing_hint=False)
            logger.info("Validation losses: %s", ", ".join(f"{k}={v:.4f}" for k, v in avg.items()))


class PredictionVisHook(HookBase):
    """Every ``period`` iterations, puts GT (green) vs prediction (red) images in the storage
    (``cxr/vis/<i>``), which detectron2's TensorboardXWriter writes to TensorBoard."""

    def __init__(
        self, period: int, cfg, mapper, dataset_name: str, num_images: int, score_thresh: float
    ):
        self._period = period
        self._mapper = mapper
        self._format = cfg.INPUT.FORMAT
        self._dicts = DatasetCatalog.get(dataset_name)[:num_images]
        self._metadata = MetadataCatalog.get(dataset_name)
        self._score_thresh = score_thresh

    def _render(self, record: dict, model) -> np.ndarray:
        inputs = self._mapper(dict(record))
        with torch.no_grad():
            instances = model([inputs])[0]["instances"].to("cpu")
        image = inputs["image"].permute(1, 2, 0).numpy()
        if image.shape[2] == 1:
            image = np.repeat(image, 3, axis=2)
            rgb = image
        else:
            rgb = convert_image_to_rgb(image, self._format)
        scale = rgb.shape[0] / record["height"]
        vis = Visualizer(rgb, self._metadata, scale=1.0)
        keep = instances.scores >= self._score_thresh
        boxes = instances.pred_boxes.tensor[keep].numpy() * scale
        labels = [
            f"{self._metadata.thing_classes[c]} {s:.2f}"
            for c, s in zip(instances.pred_classes[keep].tolist(), instances.scores[keep].tolist())
        ]
        for box, label in zip(boxes, labels):
            vis.draw_box(box, edge_color="red")
            vis.draw_text(label, (box[0], box[1]), color="red", horizontal_alignment="left")
        from detectron2.structures import BoxMode

        for ann in record.get("annotations", []):
            box = BoxMode.convert(ann["bbox"], ann["bbox_mode"], BoxMode.XYXY_ABS)
            vis.draw_box(np.asarray(box) * scale, edge_color="lime")
        return vis.get_output().get_image()

    def after_step(self):
        if not comm.is_main_process() or not _is_due(self.trainer, self._period):
            return
        model = self.trainer.model
        was_training = model.training
        model.eval()
        try:
            for i, record in enumerate(self._dicts):
                img = self._render(record, unwrap(model))
                self.trainer.storage.put_image(f"cxr/vis/{i}", img.transpose(2, 0, 1))
        finally:
            model.train(was_training)

"""``Trainer``: detectron2's ``DefaultTrainer`` with cxr's data, evaluator and hook choices.

Only classmethods and hooks are overridden; the train loop is detectron2's. Added on top of
detectron2's hooks (see :mod:`cxr.engine.hooks`): EMA of weights (evaluated and checkpointed),
best-checkpoint keeping by ``TEST.BEST_METRIC`` with the validation operating points beside it,
a validation-loss hook, GT-vs-prediction images in TensorBoard, atomic checkpoints and a data
order that ``--resume`` continues.
"""
from __future__ import annotations

import functools
import logging
import os
import weakref

from detectron2.data import (
    build_detection_test_loader,
    get_detection_dataset_dicts,
)
from detectron2.engine import DefaultTrainer, hooks
from detectron2.utils import comm

from ..data import build_mapper
from ..data.checks import check_class_count, check_image_files
from ..data.loader import build_cfg_train_loader
from ..data.mix import build_mix_mapper
from ..data.wds import build_stream_test_loader, build_stream_train_loader, is_streamed
from ..evaluation import build_evaluator
from ..modeling.test_time_augmentation import build_tta_model
from ..modeling.meta_arch.classifier import CXRClassifier
from ..modeling.trunk_transfer import load_classifier_trunk
from .checkpoint import CXRCheckpointer, load_model_weights
from .ema import EMAHook, ModelEMA, unwrap
from .gradcam_hook import GradCAMRenderer, GradCAMVisHook, explained_model, put_gradcam_images
from .mlflow_writer import build_mlflow_writer
from .swa import build_swa_hook
from .hooks import THRESHOLDS_FILE, BestCheckpointer, EMAEvalHook, PredictionVisHook, ValidationLossHook
from ..data.samplers import build_train_sampler

__all__ = ["Trainer"]

logger = logging.getLogger(__name__)


def _train_dicts(cfg):
    return get_detection_dataset_dicts(
        cfg.DATASETS.TRAIN,
        filter_empty=cfg.DATALOADER.FILTER_EMPTY_ANNOTATIONS,
        min_keypoints=0,
        proposal_files=cfg.DATASETS.PROPOSAL_FILES_TRAIN if cfg.MODEL.LOAD_PROPOSALS else None,
    )


def _check_model_classes(model, cfg, dataset_names) -> None:
    """The built model's class count (``num_classes`` of the model or of its ROI heads) against
    the ``thing_classes`` of ``dataset_names``, before any training or evaluation."""
    model = unwrap(model)
    for part in (model, getattr(model, "roi_heads", None)):
        n = getattr(part, "num_classes", None)
        if isinstance(n, int):
            check_class_count(n, dataset_names, cfg.MODEL.META_ARCHITECTURE)
            return


class _ModelScalars:
    """Checkpointable for plain-float training state kept on the model rather than in buffers.

    detectron2's RetinaNet keeps its running ``loss_normalizer`` (an EMA of the number of
    foreground anchors) as a Python float, so a resumed run would restart it at its initial
    value and scale the losses differently; saving it makes ``--resume`` exact.
    """

    NAMES = ("loss_normalizer",)

    def __init__(self, model):
        self._model = unwrap(model)

    def state_dict(self) -> dict:
        return {n: float(getattr(self._model, n)) for n in self.NAMES if hasattr(self._model, n)}

    def load_state_dict(self, state: dict) -> None:
        for n, v in state.items():
            setattr(self._model, n, v)  # DenseDetector creates it lazily on its first step


class Trainer(DefaultTrainer):
    """DefaultTrainer whose loaders use ``cfg.INPUT.MAPPER`` and ``DATALOADER.SAMPLER_TRAIN``
    and whose evaluator follows the dataset's ``evaluator_type``."""

    def __init__(self, cfg):
        """Checks that the training images exist (:func:`~cxr.data.checks.check_image_files`)
        before detectron2's ``DefaultTrainer`` builds the model; the records read for the
        check are the ones the train loader uses."""
        dicts = None  # shard sets are streamed (cxr.data.wds), not listed
        if not is_streamed(cfg.DATASETS.TRAIN):
            dicts = _train_dicts(cfg)
            check_image_files(
                dicts,
                skip_bad_images=cfg.DATALOADER.SKIP_BAD_IMAGES,
                what=f"training ({', '.join(cfg.DATASETS.TRAIN)})",
            )
        # DefaultTrainer.__init__ calls self.build_train_loader(cfg): hand it these records.
        self.build_train_loader = functools.partial(type(self).build_train_loader, dicts=dicts)
        super().__init__(cfg)
        _check_model_classes(self.model, cfg, [*cfg.DATASETS.TRAIN, *cfg.DATASETS.TEST])

    @classmethod
    def build_train_loader(cls, cfg, dicts: list[dict] | None = None):
        """Train loader (over ``dicts``, default the ``DATASETS.TRAIN`` records; shard sets
        are streamed from their shards); the (resumable) sampler or stream is reachable as
        ``loader.cxr_sampler``."""
        if is_streamed(cfg.DATASETS.TRAIN):
            return build_stream_train_loader(cfg, build_mapper(cfg, True))
        dicts = _train_dicts(cfg) if dicts is None else dicts
        sampler = build_train_sampler(cfg, dicts)
        mapper = build_mix_mapper(cfg, build_mapper(cfg, True), dicts)  # INPUT.MIX: off = as is
        return build_cfg_train_loader(cfg, dicts, mapper, sampler=sampler, resumable=sampler)

    def build_writers(self):
        """detectron2's writers (run on rank 0 only), plus MLflow when ``CXR.MLFLOW.ENABLED``."""
        mlflow = build_mlflow_writer(self.cfg, weakref.proxy(self))
        return super().build_writers() + ([mlflow] if mlflow is not None else [])

    @classmethod
    def build_test_loader(cls, cfg, dataset_name):
        if is_streamed([dataset_name]):
            return build_stream_test_loader(cfg, dataset_name, build_mapper(cfg, False))
        return build_detection_test_loader(cfg, dataset_name, mapper=build_mapper(cfg, False))

    @classmethod
    def build_evaluator(cls, cfg, dataset_name, output_folder=None):
        if output_folder is None:
            output_folder = os.path.join(cfg.OUTPUT_DIR, "inference", dataset_name)
        return build_evaluator(cfg, dataset_name, output_folder)

    @classmethod
    def eval_only(cls, cfg, *, resume: bool = False, allow_pickle: bool = False):
        """Evaluate ``cfg.MODEL.WEIGHTS`` (or, with ``resume``, the last checkpoint of
        ``cfg.OUTPUT_DIR``) on ``cfg.DATASETS.TEST``; EMA weights are used when present."""
        model = cls.build_model(cfg)
        _check_model_classes(model, cfg, cfg.DATASETS.TEST)
        path = cfg.MODEL.WEIGHTS
        finder = CXRCheckpointer(model, cfg.OUTPUT_DIR)
        if resume and finder.has_checkpoint():
            path = finder.get_checkpoint_file()
        if not path:
            raise ValueError("--eval-only needs MODEL.WEIGHTS (or --resume with a checkpoint)")
        load_model_weights(model, path, allow_pickle=allow_pickle,
                           max_skipped=cfg.MODEL.WEIGHTS_MAX_SKIPPED)  # fmt: skip
        return cls.test(cfg, build_tta_model(cfg, model))

    def build_hooks(self):
        cfg = self.cfg
        self.ema = ModelEMA(self.model, cfg.MODEL.EMA.DECAY) if cfg.MODEL.EMA.ENABLED else None
        self.data_sampler = getattr(self._trainer.data_loader, "cxr_sampler", None)
        # detectron2 v0.6's DefaultTrainer checkpoints no optimizer state (momentum is lost on
        # resume); cxr saves it, and the loss normalizer, so --resume continues exactly.
        extra = {"optimizer": self.optimizer, "model_scalars": _ModelScalars(self.model)}
        if self.ema is not None:
            extra["ema"] = self.ema
        if self.data_sampler is not None:
            extra["data_order"] = self.data_sampler
        # Replaces DefaultTrainer's DetectionCheckpointer before the hooks capture it.
        self.checkpointer = CXRCheckpointer(
            self.model, cfg.OUTPUT_DIR, trainer=weakref.proxy(self),
            max_skipped=cfg.MODEL.WEIGHTS_MAX_SKIPPED, **extra,
        )  # fmt: skip
        ret = []
        for h in super().build_hooks():
            if isinstance(h, hooks.EvalHook):
                # Validation losses first, so that TEST.BEST_METRIC may be "val/total_loss".
                ret.extend(self._val_loss_hooks())
                ret.append(
                    EMAEvalHook(cfg.TEST.EVAL_PERIOD, h._func, self.ema, self.model,
                                after_eval=self._gradcam_on_eval())
                )  # fmt: skip
                ret.extend(h for h in [build_swa_hook(self)] if h is not None)  # SOLVER.SWA
                ret.extend(self._best_checkpoint_hooks())
            elif isinstance(h, hooks.PeriodicWriter):
                ret.extend(self._vis_hooks())
                ret.append(h)
            else:
                ret.append(h)
        if self.ema is not None:
            # Right after the optimizer step, before checkpointing and evaluation see the model.
            ret.insert(2, EMAHook(self.ema))
        return ret

    def _best_checkpoint_hooks(self):
        cfg = self.cfg
        out = []
        if cfg.TEST.BEST_METRIC and cfg.TEST.EVAL_PERIOD > 0 and comm.is_main_process():
            dataset = cfg.DATASETS.TEST[0] if cfg.DATASETS.TEST else ""
            out.append(
                BestCheckpointer(
                    cfg.TEST.EVAL_PERIOD,
                    self.checkpointer,
                    cfg.TEST.BEST_METRIC,
                    mode=cfg.TEST.BEST_MODE,
                    thresholds_src=os.path.join(cfg.OUTPUT_DIR, "inference", dataset, THRESHOLDS_FILE),
                    thresholds_dst=os.path.join(cfg.OUTPUT_DIR, THRESHOLDS_FILE),
                )
            )
        return out

    def _val_loss_hooks(self):
        cfg = self.cfg
        out = []
        if cfg.TEST.VAL_LOSS_PERIOD > 0 and cfg.DATASETS.TEST:
            val_cfg = cfg.clone()
            val_cfg.defrost()
            val_cfg.DATASETS.TRAIN = (cfg.DATASETS.TEST[0],)
            if "ALBUMENTATIONS" in val_cfg.INPUT:
                val_cfg.INPUT.ALBUMENTATIONS.PRESET = "none"
            val_cfg.INPUT.RANDOM_FLIP = "none"
            dicts = _train_dicts(val_cfg)
            mapper = build_mapper(val_cfg, True)

            def factory():
                return build_detection_test_loader(dicts, mapper=mapper, num_workers=0)

            out.append(ValidationLossHook(cfg.TEST.VAL_LOSS_PERIOD, factory, cfg.TEST.VAL_LOSS_MAX_IMAGES))
        return out

    def _is_classifier(self) -> bool:
        return isinstance(unwrap(self.model), CXRClassifier)

    def _gradcam_on_eval(self):
        """``after_eval`` of the evaluation hook: Grad-CAM images into TensorBoard
        (``CXR.VIS.GRADCAM_IMAGES``), or None."""
        cfg = self.cfg
        if cfg.CXR.VIS.GRADCAM_IMAGES <= 0 or not cfg.DATASETS.TEST:
            return None
        if explained_model(self.model) is None:
            logger.warning(
                "CXR.VIS.GRADCAM_IMAGES ignored: Grad-CAM explains CXRClassifier and "
                "RetinaNet-family models, not %s",
                type(unwrap(self.model)).__name__,
            )
            return None
        renderer = GradCAMRenderer(cfg, cfg.DATASETS.TEST[0], cfg.CXR.VIS.GRADCAM_IMAGES)
        return functools.partial(put_gradcam_images, renderer)

    def _vis_hooks(self):
        cfg = self.cfg
        out = []
        if cfg.CXR.VIS.PERIOD > 0 and cfg.DATASETS.TEST and self._is_classifier():
            if cfg.CXR.VIS.GRADCAM_IMAGES <= 0:  # else the evaluations put them
                renderer = GradCAMRenderer(cfg, cfg.DATASETS.TEST[0], cfg.CXR.VIS.NUM_IMAGES)
                out.append(GradCAMVisHook(cfg.CXR.VIS.PERIOD, renderer))
        elif cfg.CXR.VIS.PERIOD > 0 and cfg.DATASETS.TEST:
            out.append(
                PredictionVisHook(
                    cfg.CXR.VIS.PERIOD,
                    cfg,
                    build_mapper(cfg, False),
                    cfg.DATASETS.TEST[0],
                    cfg.CXR.VIS.NUM_IMAGES,
                    cfg.CXR.VIS.SCORE_THRESH,
                )
            )
        return out

    def resume_or_load(self, resume=True):
        if self.cfg.MODEL.TRUNK_WEIGHTS and not (resume and self.checkpointer.has_checkpoint()):
            # A classifier's trunk first; MODEL.WEIGHTS (when set) is loaded over it below.
            load_classifier_trunk(self.model, self.cfg.MODEL.TRUNK_WEIGHTS)
        super().resume_or_load(resume=resume)
        if self.data_sampler is not None and self.start_iter > 0:
            # Skip what the interrupted run consumed, then restart the loader's workers.
            self.data_sampler.set_start_iter(self.start_iter)
            self._trainer._data_loader_iter = iter(self._trainer.data_loader)
            logger.info("Data order resumed at iteration %d", self.start_iter)

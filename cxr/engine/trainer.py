"""``Trainer``: detectron2's ``DefaultTrainer`` with cxr's data, evaluator and hook choices.

Only classmethods/hooks are overridden; the train loop is detectron2's.
"""
from __future__ import annotations

import os

from detectron2.data import build_detection_test_loader, build_detection_train_loader
from detectron2.engine import DefaultTrainer

from ..data import build_mapper
from ..evaluation import build_evaluator

__all__ = ["Trainer"]


class Trainer(DefaultTrainer):
    """DefaultTrainer whose loaders use ``cfg.INPUT.MAPPER`` and whose evaluator follows the
    dataset's ``evaluator_type``."""

    @classmethod
    def build_train_loader(cls, cfg):
        return build_detection_train_loader(cfg, mapper=build_mapper(cfg, True))

    @classmethod
    def build_test_loader(cls, cfg, dataset_name):
        return build_detection_test_loader(cfg, dataset_name, mapper=build_mapper(cfg, False))

    @classmethod
    def build_evaluator(cls, cfg, dataset_name, output_folder=None):
        if output_folder is None:
            output_folder = os.path.join(cfg.OUTPUT_DIR, "inference", dataset_name)
        return build_evaluator(cfg, dataset_name, output_folder)

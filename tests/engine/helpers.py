"""Shared pieces of the engine tests: a tiny CPU config on the ``tiny_dataset`` fixture."""
from __future__ import annotations

import os

from cxr.config import load_config

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TINY_CONFIG = os.path.join(REPO, "configs/nih/retinanet_R_18_FPN.yaml")

TINY_OPTS = [
    "MODEL.DEVICE", "cpu",
    "MODEL.RESNETS.DEPTH", "18",
    "MODEL.RESNETS.RES2_OUT_CHANNELS", "64",
    "MODEL.RETINANET.NUM_CLASSES", "2",
    "INPUT.MIN_SIZE_TRAIN", "(64,)", "INPUT.MAX_SIZE_TRAIN", "64",
    "INPUT.MIN_SIZE_TEST", "64", "INPUT.MAX_SIZE_TEST", "64",
    "SOLVER.IMS_PER_BATCH", "2", "SOLVER.BASE_LR", "0.001", "SOLVER.WARMUP_ITERS", "0",
    "SOLVER.STEPS", "()", "DATALOADER.NUM_WORKERS", "0",
    "TEST.EVAL_PERIOD", "0", "SEED", "7",
]  # fmt: skip


def tiny_opts(dataset: str, out: str, max_iter: int, *extra) -> list:
    """KEY VALUE overrides for a 64-px, 2-class run on ``dataset`` writing to ``out``."""
    return [*TINY_OPTS, "DATASETS.TRAIN", f"('{dataset}',)", "DATASETS.TEST", f"('{dataset}',)",
            "SOLVER.MAX_ITER", str(max_iter), "OUTPUT_DIR", out, *extra]  # fmt: skip


def tiny_cfg(dataset: str, out: str, max_iter: int, *extra):
    cfg = load_config(TINY_CONFIG, tiny_opts(dataset, out, max_iter, *extra))
    return cfg

"""Shared setup for the command-line tools: config, device choice, logging, output folder."""
from __future__ import annotations

import argparse
import logging

import torch
from detectron2.engine import default_setup

from ..config import CfgNode, load_config

__all__ = ["setup"]

logger = logging.getLogger(__name__)


def setup(args: argparse.Namespace) -> CfgNode:
    """Build the frozen config from ``args.config_file`` and ``args.opts``, then detectron2's
    ``default_setup`` (logging, output folder, config dump, seeding).

    The device falls back to CPU when CUDA is absent, so configs run anywhere unchanged.
    """
    cfg = load_config(args.config_file, args.opts)
    if cfg.MODEL.DEVICE.startswith("cuda") and not torch.cuda.is_available():
        cfg.MODEL.DEVICE = "cpu"
    cfg.freeze()
    default_setup(cfg, args)
    if cfg.MODEL.DEVICE == "cpu":
        logger.info("CUDA not available: running on CPU with %d threads", torch.get_num_threads())
    return cfg

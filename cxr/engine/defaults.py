"""Shared setup for every command-line tool: config, device choice, logging."""

from __future__ import annotations

import argparse
import logging
import re
import sys
from typing import Sequence

import torch
from detectron2.engine import default_setup
from detectron2.utils import comm
from detectron2.utils.logger import setup_logger

from ..config import CfgNode, load_config

__all__ = ["setup", "setup_config", "setup_logging"]

logger = logging.getLogger(__name__)

_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")

#: Loggers every tool sets up: detectron2's two, cxr's and its runtime's (cxr_runtime).
LOGGER_NAMES = ("detectron2", "fvcore", "cxr", "cxr_runtime")


class _PlainFileFormatter(logging.Formatter):
    """detectron2's file format with ANSI colour codes removed (detectron2 colours some
    messages themselves, e.g. the highlighted config and the instance histogram)."""

    def format(self, record: logging.LogRecord) -> str:
        return _ANSI.sub("", super().format(record))


def setup_config(
    config_file: str, opts: Sequence[str] = (), *, output_dir: str | None = None
) -> CfgNode:
    """The frozen config of a tool: ``config_file`` + ``KEY VALUE`` overrides.

    ``MODEL.DEVICE`` falls back to CPU when CUDA is absent, so configs run anywhere unchanged.

    Args:
        config_file: YAML config (loaded safely by :func:`cxr.config.load_config`).
        opts: ``KEY VALUE`` overrides.
        output_dir: replaces ``OUTPUT_DIR`` when given.

    Returns:
        the frozen config.
    """
    cfg = load_config(config_file, list(opts or []))
    if cfg.MODEL.DEVICE.startswith("cuda") and not torch.cuda.is_available():
        cfg.MODEL.DEVICE = "cpu"
    if output_dir is not None:
        cfg.OUTPUT_DIR = output_dir
    cfg.freeze()
    return cfg


def setup_logging(output_dir: str | None = None, *, level: int = logging.INFO) -> None:
    """Set up the ``detectron2``, ``fvcore``, ``cxr`` and ``cxr_runtime`` loggers as detectron2's
    ``default_setup`` does: console (main process) + ``<output_dir>/log.txt`` (``log.txt.rank<N>``
    on other ranks), timestamped, without ANSI colour codes in the files.

    Calling it again with the same folder adds no handlers (detectron2's ``setup_logger`` is
    cached by its arguments, and this calls it exactly as ``default_setup`` does).

    Args:
        output_dir: folder of ``log.txt``; None = console only.
        level: level of the ``cxr`` logger (``logging.DEBUG`` shows the model print).
    """
    rank = comm.get_rank()
    setup_logger(output_dir, distributed_rank=rank, name="fvcore")
    setup_logger(output_dir, distributed_rank=rank)
    setup_logger(output_dir, distributed_rank=rank, name="cxr")
    setup_logger(output_dir, distributed_rank=rank, name="cxr_runtime")
    logging.getLogger("cxr").setLevel(level)
    for name in LOGGER_NAMES:
        for h in logging.getLogger(name).handlers:
            if isinstance(h.formatter, logging.Formatter) and _writes_file(h):
                if not isinstance(h.formatter, _PlainFileFormatter):
                    h.setFormatter(_PlainFileFormatter(h.formatter._fmt, h.formatter.datefmt))


def _writes_file(handler: logging.Handler) -> bool:
    """True for the handlers detectron2's ``setup_logger`` points at a log file."""
    return getattr(handler, "stream", None) not in (None, sys.stdout, sys.stderr)


def setup(args: argparse.Namespace) -> CfgNode:
    """``tools/train_net.py``'s setup: :func:`setup_config` of ``args.config_file`` /
    ``args.opts``, :func:`setup_logging` into ``OUTPUT_DIR``, then detectron2's
    ``default_setup`` (environment log, output folder, config dump, seeding)."""
    cfg = setup_config(args.config_file, args.opts)
    setup_logging(cfg.OUTPUT_DIR)
    default_setup(cfg, args)
    if cfg.MODEL.DEVICE == "cpu":
        logger.info("CUDA not available: running on CPU with %d threads", torch.get_num_threads())
    return cfg

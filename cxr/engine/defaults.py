"""Shared setup for every command-line tool: config, device choice, logging."""

from __future__ import annotations

import argparse
import logging
import re
import sys
from typing import Sequence

import torch
from detectron2.engine import default_setup
from omegaconf import OmegaConf
from detectron2.utils import comm
from detectron2.utils.logger import setup_logger

from ..config import CfgNode, load_config
from .lazy import LazyConfigError, is_lazy_config, lazy_to_cfg, load_lazy_config, split_overrides

__all__ = ["load_any_config", "setup", "setup_config", "setup_logging"]

logger = logging.getLogger(__name__)

_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")

#: Loggers every tool sets up: detectron2's two, cxr's and its runtime's (cxr_runtime).
LOGGER_NAMES = ("detectron2", "fvcore", "cxr", "cxr_runtime")


class _PlainFileFormatter(logging.Formatter):
    """detectron2's file format with ANSI colour codes removed (detectron2 colours some
    messages themselves, e.g. the highlighted config and the instance histogram)."""

    def format(self, record: logging.LogRecord) -> str:
        return _ANSI.sub("", super().format(record))


def load_any_config(config_file: str, opts: Sequence[str] = ()) -> tuple[CfgNode, object]:
    """A YAML config + ``KEY VALUE`` overrides, or a LazyConfig (``.py``, or a YAML saved from
    one) + ``key=value`` overrides (``KEY VALUE`` pairs are applied after its conversion).

    Returns:
        (the unfrozen CfgNode, the loaded LazyConfig or None for a YAML config).
    """
    if not is_lazy_config(config_file):
        return load_config(config_file, list(opts or [])), None
    lazy_opts, pairs = split_overrides(list(opts or []))
    lazy = load_lazy_config(config_file, lazy_opts)
    cfg = lazy_to_cfg(lazy, where=config_file)
    if pairs:
        cfg.merge_from_list(pairs)
    return cfg, lazy


def setup_config(
    config_file: str, opts: Sequence[str] = (), *, output_dir: str | None = None
) -> CfgNode:
    """The frozen config of a tool: ``config_file`` + overrides (:func:`load_any_config`).

    ``MODEL.DEVICE`` falls back to CPU when CUDA is absent, so configs run anywhere unchanged.

    Args:
        config_file: YAML config (loaded safely by :func:`cxr.config.load_config`), or a
            LazyConfig ``.py`` file (:mod:`cxr.engine.lazy`).
        opts: ``KEY VALUE`` overrides (and ``key=value`` ones for a LazyConfig).
        output_dir: replaces ``OUTPUT_DIR`` when given.

    Returns:
        the frozen config.
    """
    cfg, _ = load_any_config(config_file, opts)
    if output_dir is not None:
        cfg.OUTPUT_DIR = output_dir
    return _finish(cfg)


def _finish(cfg: CfgNode) -> CfgNode:
    """CPU when CUDA is absent, then freeze."""
    if cfg.MODEL.DEVICE.startswith("cuda") and not torch.cuda.is_available():
        cfg.MODEL.DEVICE = "cpu"
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
    """``tools/train_net.py``'s and ``tools/lazyconfig_train_net.py``'s setup:
    :func:`setup_config` of ``args.config_file`` / ``args.opts``, :func:`setup_logging` into
    ``OUTPUT_DIR``, then detectron2's ``default_setup`` (environment log, output folder, seeding,
    and ``OUTPUT_DIR/config.yaml``: the CfgNode, or for a LazyConfig the resolved LazyConfig,
    which ``--config-file`` loads back)."""
    cfg, lazy = load_any_config(args.config_file, args.opts)
    if lazy is not None and split_overrides(args.opts)[1]:
        raise LazyConfigError(
            f"{args.config_file}: a LazyConfig takes key=value overrides (e.g. train.max_iter=100), "
            f"not KEY VALUE pairs: {split_overrides(args.opts)[1]}"
        )
    cfg = _finish(cfg)
    setup_logging(cfg.OUTPUT_DIR)
    if lazy is not None:  # saved resolved: interpolations replaced by the values trained with
        resolved = OmegaConf.to_container(lazy, resolve=True)
        lazy = OmegaConf.create(resolved, flags={"allow_objects": True})
    default_setup(cfg if lazy is None else lazy, args)
    if cfg.MODEL.DEVICE == "cpu":
        logger.info("CUDA not available: running on CPU with %d threads", torch.get_num_threads())
    return cfg

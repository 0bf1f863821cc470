"""cxr.engine.defaults: the tools' config (CPU fallback, frozen) and logging (ANSI-free files)."""

import logging

import torch

from cxr.engine.defaults import setup_config, setup_logging

from .helpers import TINY_CONFIG


def test_setup_config_falls_back_to_cpu_and_freezes(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    cfg = setup_config(TINY_CONFIG, ["MODEL.DEVICE", "cuda"], output_dir=str(tmp_path))
    assert cfg.MODEL.DEVICE == "cpu" and cfg.OUTPUT_DIR == str(tmp_path) and cfg.is_frozen()


def test_setup_logging_writes_cxr_lines_without_ansi(tmp_path):
    setup_logging(str(tmp_path))
    setup_logging(str(tmp_path))  # a second call adds no handler
    logging.getLogger("cxr.some.module").info("table \x1b[36mcoloured\x1b[0m")
    logging.getLogger("detectron2.x").info("\x1b[32md2 line\x1b[0m")
    for h in logging.getLogger("cxr").handlers + logging.getLogger("detectron2").handlers:
        h.flush()
    text = (tmp_path / "log.txt").read_text()
    assert text.count("cxr.some.module INFO: table coloured\n") == 1
    assert "d2 line" in text and "\x1b" not in text

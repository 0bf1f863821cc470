"""cxr.config: cxr keys on detectron2 defaults; safe-only YAML, _BASE_ included."""
from __future__ import annotations

import glob
import os

import pytest

from cxr.config import UnsafeConfigError, add_cxr_config, get_cfg, load_config

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_add_cxr_config_idempotent():
    from detectron2.config import get_cfg as d2_get_cfg

    cfg = d2_get_cfg()
    add_cxr_config(cfg)
    snapshot = cfg.dump()
    add_cxr_config(cfg)
    assert cfg.dump() == snapshot
    assert cfg.INPUT.MAPPER


def test_every_shipped_config_loads():
    files = [f for f in glob.glob(os.path.join(REPO, "configs/**/*.yaml"), recursive=True)
             if "/configs/tune/" not in f]  # search spaces of tools/tune.py, not configs  # fmt: skip
    assert files
    for f in files:
        cfg = load_config(f)
        assert cfg.DATALOADER.FILTER_EMPTY_ANNOTATIONS is False, f
        # one mean/std per input channel: 1 for "L", 3 for BGR/RGB (gray films replicated; the
        # pretrained starts keep their source's per-channel normalization)
        channels = 1 if cfg.INPUT.FORMAT == "L" else 3
        assert len(cfg.MODEL.PIXEL_MEAN) == len(cfg.MODEL.PIXEL_STD) == channels, f


def test_base_values_inherited(tmp_path):
    base = tmp_path / "base.yaml"
    base.write_text("SOLVER:\n  BASE_LR: 0.5\n  MAX_ITER: 7\n")
    child = tmp_path / "child.yaml"
    child.write_text('_BASE_: "base.yaml"\nSOLVER:\n  MAX_ITER: 9\n')
    cfg = load_config(str(child), ["SOLVER.IMS_PER_BATCH", "3"])
    assert (cfg.SOLVER.BASE_LR, cfg.SOLVER.MAX_ITER, cfg.SOLVER.IMS_PER_BATCH) == (0.5, 9, 3)


@pytest.mark.parametrize("in_base", [False, True])
def test_python_tags_refused_and_never_run(tmp_path, in_base):
    marker = tmp_path / "pwned"
    payload = f'SOLVER:\n  BASE_LR: !!python/object/apply:os.system ["touch {marker}"]\n'
    evil = tmp_path / "evil.yaml"
    evil.write_text(payload)
    target = evil
    if in_base:
        target = tmp_path / "innocent.yaml"
        target.write_text('_BASE_: "evil.yaml"\nSOLVER:\n  MAX_ITER: 3\n')
    cfg = get_cfg()
    with pytest.raises(UnsafeConfigError, match="evil.yaml.*refused"):
        cfg.merge_from_file(str(target))
    # detectron2's allow_unsafe flag cannot re-enable the unsafe loader.
    with pytest.raises(UnsafeConfigError):
        cfg.merge_from_file(str(target), allow_unsafe=True)
    assert not marker.exists()


def test_base_cycle_detected(tmp_path):
    (tmp_path / "a.yaml").write_text('_BASE_: "b.yaml"\n')
    (tmp_path / "b.yaml").write_text('_BASE_: "a.yaml"\n')
    with pytest.raises(UnsafeConfigError, match="cycle"):
        load_config(str(tmp_path / "a.yaml"))

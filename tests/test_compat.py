"""cxr.compat: stand-in detectron2._C when none is compiled, untouched real one otherwise."""
from __future__ import annotations

import inspect
import subprocess
import sys
import textwrap

import pytest
import torch


def _run(code: str) -> str:
    proc = subprocess.run(
        [sys.executable, "-W", "ignore", "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_import_cxr_then_detectron2_subpackages():
    out = _run(
        """
        import cxr, detectron2, detectron2.modeling, detectron2.engine, detectron2.evaluation
        print(detectron2.__version__)
        """
    )
    assert out.strip() == "0.6"


def test_standin_ops_raise_clear_error():
    import cxr.compat
    from detectron2 import _C

    if not cxr.compat.STANDIN_C:
        pytest.skip("a compiled detectron2._C is installed")
    with pytest.raises(NotImplementedError, match="deform_conv_forward.*without compiled ops"):
        _C.deform_conv_forward()
    with pytest.raises(NotImplementedError, match="box_iou_rotated"):
        from detectron2.layers.rotated_boxes import pairwise_iou_rotated

        pairwise_iou_rotated(None, None)


def test_real_compiled_c_is_used_untouched():
    # Simulate an upstream build: a compiled detectron2._C already importable.
    out = _run(
        """
        import sys, types
        import detectron2
        real = types.ModuleType("detectron2._C")
        real.deform_conv_forward = lambda *a: "compiled"
        sys.modules["detectron2._C"] = real
        detectron2._C = real
        import cxr.compat
        from detectron2 import _C
        print(cxr.compat.STANDIN_C, _C is real, _C.deform_conv_forward())
        """
    )
    assert out.split() == ["False", "True", "compiled"]


def test_pillow_linear_alias():
    from PIL import Image

    import cxr  # noqa: F401

    assert Image.LINEAR == Image.BILINEAR
    from detectron2.data.transforms import ExtentTransform

    ExtentTransform((0, 0, 8, 8), (4, 4))  # defaults to interp=Image.LINEAR


def test_detectron2_installer_refuses_wrong_sha256(tmp_path):
    import os

    fake = tmp_path / "pb1-detectron2-0.6.tar.gz"
    fake.write_bytes(b"not the release")
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    proc = subprocess.run(
        [sys.executable, os.path.join(repo, "tools/install_detectron2.py"), "--force",
         "--sdist", str(fake)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode != 0
    assert "sha256 mismatch" in proc.stderr + proc.stdout


def test_detectron2_reports_version_0_6():
    import importlib.metadata

    import detectron2

    assert detectron2.__version__ == "0.6"
    assert importlib.metadata.version("detectron2") == "0.6"


def _checkpoint_resume_scenario(folder: str, scheduler_cls, **kw) -> tuple:
    """detectron2's test_engine.py::test_checkpoint_resume: train 12 iterations with a torch
    scheduler and a PeriodicCheckpointer every 10, then resume into a fresh optimizer (LR 999)
    and scheduler. Returns (last_epoch and LR after training, the same after resuming)."""
    import os

    import torch
    from detectron2.checkpoint import Checkpointer
    from detectron2.engine import SimpleTrainer, hooks

    model = torch.nn.Linear(2, 1)

    class _Loss(torch.nn.Module):  # SimpleTrainer wants a dict of losses
        def __init__(self):
            super().__init__()
            self.lin = model

        def forward(self, x):
            return {"loss": self.lin(x).abs().mean()}

    os.makedirs(folder, exist_ok=True)
    net = _Loss()
    data = iter(lambda: torch.ones(4, 2), None)  # an endless loader
    opt = torch.optim.SGD(net.parameters(), 0.1)
    scheduler = scheduler_cls(opt, **kw)
    trainer = SimpleTrainer(net, data, opt)
    checkpointer = Checkpointer(net, folder, opt=opt, trainer=trainer)
    trainer.register_hooks(
        [hooks.LRScheduler(scheduler=scheduler), hooks.PeriodicCheckpointer(checkpointer, 10)]
    )
    trainer.train(0, 12)
    trained = (scheduler.last_epoch, opt.param_groups[0]["lr"])
    opt = torch.optim.SGD(net.parameters(), 999)  # the LR must come from the checkpoint
    scheduler = scheduler_cls(opt, **kw)
    trainer = SimpleTrainer(net, data, opt)
    trainer.register_hooks([hooks.LRScheduler(scheduler=scheduler)])
    Checkpointer(net, folder, opt=opt, trainer=trainer).resume_or_load("non_exist.pth")
    assert trainer.iter == 11  # the last finished iteration of the checkpoint at 12
    return trained, (scheduler.last_epoch, opt.param_groups[0]["lr"])


def test_resume_restores_a_torch2_scheduler(tmp_path):
    import torch

    import cxr  # noqa: F401

    assert not issubclass(torch.optim.lr_scheduler.StepLR, torch.optim.lr_scheduler._LRScheduler)
    trained, resumed = _checkpoint_resume_scenario(
        str(tmp_path / "step"), torch.optim.lr_scheduler.StepLR, step_size=3
    )
    assert trained[0] == 12 and trained[1] == pytest.approx(1e-5)  # 0.1 * 0.1 ** 4
    assert resumed[0] == 12 and resumed[1] == pytest.approx(1e-5)
    trained, resumed = _checkpoint_resume_scenario(
        str(tmp_path / "multistep"), torch.optim.lr_scheduler.MultiStepLR, milestones=[5, 11]
    )
    assert resumed == pytest.approx(trained) and trained[1] == pytest.approx(1e-3)


def test_scheduler_fix_applies_only_where_the_state_is_dropped(monkeypatch):
    import torch
    from detectron2.engine import hooks

    import cxr.compat

    monkeypatch.delattr(hooks.LRScheduler, "_cxr_patched", raising=False)

    def fixed_state_dict(self):  # what a fixed detectron2 does
        return self.scheduler.state_dict()

    monkeypatch.setattr(hooks.LRScheduler, "state_dict", fixed_state_dict)
    assert cxr.compat._patch_lr_scheduler_hook() is False
    assert hooks.LRScheduler.state_dict is fixed_state_dict

    def v06_state_dict(self):  # detectron2 v0.6's test
        if isinstance(self.scheduler, torch.optim.lr_scheduler._LRScheduler):
            return self.scheduler.state_dict()
        return {}

    monkeypatch.setattr(hooks.LRScheduler, "state_dict", v06_state_dict)
    assert cxr.compat._patch_lr_scheduler_hook() is True
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    state = hooks.LRScheduler(opt, torch.optim.lr_scheduler.StepLR(opt, 1)).state_dict()
    assert state["last_epoch"] == 0 and state["step_size"] == 1


def test_training_set_logs_its_class_histogram(tiny_dataset):
    import logging
    import re

    import numpy as np
    from detectron2.data import build, get_detection_dataset_dicts

    import cxr  # noqa: F401

    assert not hasattr(np, "int")  # NumPy 2: the alias detectron2 v0.6 uses is gone
    records = []
    handler = logging.Handler()
    handler.emit = records.append
    logger = logging.getLogger(build.__name__)
    logger.addHandler(handler)
    old_level = logger.level
    logger.setLevel(logging.INFO)
    try:
        build.print_instances_class_histogram(
            [{"annotations": [{"category_id": 0}, {"category_id": 1}, {"category_id": 1}]}],
            ["lesion_a", "lesion_b"],
        )
        dicts = get_detection_dataset_dicts([tiny_dataset])
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)
    text = "\n".join(r.getMessage() for r in records)
    assert "Distribution of instances among all 2 categories" in text
    assert re.search(r"\|\s+lesion_a\s+\|\s+1\s+\|\s+lesion_b\s+\|\s+2\s+\|", text), text
    assert len(dicts) == 3  # the image without boxes filtered, as detectron2 does by default
    assert np.int64 is build.np.int64 and build.np.int is int  # only the alias is added


def test_multiprocess_launch_without_cuda_uses_gloo_only_where_detectron2_lacks_it(monkeypatch):
    """v0.6's worker is replaced (the two-machine gloo test runs it); a worker that already
    picks gloo, as later detectron2 releases have, is left alone."""
    import importlib

    import cxr.compat as compat

    launch = importlib.import_module("detectron2.engine.launch")
    defaults = importlib.import_module("detectron2.engine.defaults")
    assert launch._distributed_worker is compat._gloo_distributed_worker
    assert "GLOO" not in inspect.getsource(launch._cxr_nccl_worker).upper()  # v0.6: NCCL only
    assert defaults.create_ddp_model is not defaults._cxr_create_ddp_model

    def later_worker(local_rank, *args):
        backend = "NCCL" if torch.cuda.is_available() else "GLOO"  # noqa: F841
        return backend

    monkeypatch.setattr(launch, "_distributed_worker", later_worker)
    monkeypatch.delattr(launch, "_cxr_nccl_worker")
    assert compat._patch_launch_gloo() is False
    assert launch._distributed_worker is later_worker


def test_fvcore_jit_script_warning_is_filtered_and_others_kept():
    """``import cxr`` (detectron2 -> fvcore.nn scripts functions at import) prints no
    ``torch.jit.script is deprecated`` warning; the same warning raised by a caller other than
    torch.jit._script, and any other FutureWarning, still print."""
    proc = subprocess.run(
        [sys.executable, "-W", "default", "-c", textwrap.dedent(
            """
            import warnings
            import cxr, detectron2.layers, fvcore.nn
            warnings.warn("`torch.jit.script` is deprecated. (raised here)", FutureWarning)
            warnings.warn("another future change", FutureWarning)
            """
        )],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if "Warning:" in ln]
    assert len(lines) == 2, proc.stderr
    assert "(raised here)" in lines[0] and "another future change" in lines[1]

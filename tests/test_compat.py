"""cxr.compat: stand-in detectron2._C when none is compiled, untouched real one otherwise."""
from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest


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

"""cxr.apps.paths: output folders never touch their inputs; missing inputs are named."""

import pytest

from cxr.apps.paths import check_output_dir, check_predict_output, input_not_found

from ..conftest import write_tiny_images


def test_predict_never_writes_beside_inputs(tmp_path):
    imgs = tmp_path / "in"
    write_tiny_images(str(imgs), n=1)
    one = str(imgs / "img_000.png")
    for bad in (imgs, imgs / "sub", tmp_path / "in"):
        with pytest.raises(ValueError, match="input"):
            check_predict_output(str(bad), [str(imgs)])
    with pytest.raises(ValueError, match="input"):
        check_predict_output(str(imgs), [one])
    check_predict_output(str(tmp_path / "elsewhere"), [one, str(imgs)])


def test_eval_output_never_contains_an_input(tmp_path):
    (tmp_path / "run").mkdir()
    ckpt = tmp_path / "run" / "model.pth"
    ckpt.write_bytes(b"x")
    for bad in (tmp_path / "run", tmp_path, ckpt):
        with pytest.raises(ValueError, match="model.pth"):
            check_output_dir(str(bad), ["", str(ckpt)])
    check_output_dir(str(tmp_path / "eval"), [str(ckpt), ""])


def test_input_not_found_hints_at_swallowed_overrides():
    assert "KEY VALUE" in str(input_not_found("input", "MODEL.DEVICE", "--input"))
    assert (
        str(input_not_found("checkpoint", "m.pth", "--checkpoint")) == "checkpoint not found: m.pth"
    )


def test_a_missing_input_is_reported_as_missing_before_the_output_check(tmp_path, monkeypatch):
    """``--input nosuch/ --output pn/`` in one folder: 'input not found', not 'output inside
    the input' (the missing folder's parent is the working folder, which holds pn/)."""
    monkeypatch.chdir(tmp_path)
    with pytest.raises(FileNotFoundError, match="input not found: nosuch/"):
        check_predict_output("pn/", ["nosuch/"])
    (tmp_path / "real").mkdir()
    with pytest.raises(FileNotFoundError, match="input not found: gone.png"):
        check_predict_output(str(tmp_path / "out"), [str(tmp_path / "real"), "gone.png"])

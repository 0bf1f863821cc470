import os

import pytest
import torch

from cxr.torch_io import load_weights_only

from .payloads import OpenPayload


class _CallerError(Exception):
    pass


def test_tensors_and_containers_round_trip(tmp_path):
    saved = {"model": {"w": torch.arange(6.0).view(2, 3)}, "iteration": 7, "names": ["a", "b"]}
    torch.save(saved, tmp_path / "ok.pth")
    loaded = load_weights_only(str(tmp_path / "ok.pth"))
    assert loaded["iteration"] == 7 and loaded["names"] == ["a", "b"]
    assert torch.equal(loaded["model"]["w"], saved["model"]["w"])
    assert loaded["model"]["w"].device.type == "cpu"


def test_code_in_the_file_never_runs_and_the_caller_error_names_it(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pth"
    torch.save({"x": OpenPayload(marker)}, path)
    with pytest.raises(_CallerError, match=r"evil\.pth: cannot be loaded with torch\.load"):
        load_weights_only(str(path), error=_CallerError)
    assert not marker.exists()


def test_truncated_file_is_the_caller_error_and_a_missing_one_is_not_found(tmp_path):
    path = tmp_path / "cut.pth"
    torch.save({"w": torch.zeros(100)}, path)
    path.write_bytes(path.read_bytes()[:50])
    with pytest.raises(ValueError, match="cut.pth"):
        load_weights_only(str(path))
    with pytest.raises(FileNotFoundError):
        load_weights_only(str(tmp_path / "missing.pth"), error=_CallerError)


def _convert_effdet(path):
    from tests.tools.util import load_tool

    out = os.path.join(os.path.dirname(path), "out.pth")
    load_tool("convert_weights").main(
        ["effdet", "--arch", "efficientdet_d0", "--input", path, "--output", out]
    )


def _callers():
    from cxr.engine.checkpoint import UnsafeCheckpointError, load_model_weights
    from cxr.modeling.backbone.timm_trunk import load_state_dict_file
    from cxr.modeling.trunk_transfer import classifier_trunk_state

    return {
        "checkpointer": (
            lambda p: load_model_weights(torch.nn.Linear(2, 1), p),
            UnsafeCheckpointError,
        ),
        "trunk transfer": (classifier_trunk_state, ValueError),
        "timm weights": (load_state_dict_file, ValueError),
        "effdet conversion": (_convert_effdet, ValueError),
    }


@pytest.mark.parametrize(
    "caller", ["checkpointer", "trunk transfer", "timm weights", "effdet conversion"]
)
def test_every_weights_reader_refuses_code_with_its_own_error(tmp_path, caller):
    read, error = _callers()[caller]
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pth"
    torch.save({"model": {"backbone.w": torch.zeros(1)}, "x": OpenPayload(marker)}, path)
    with pytest.raises(error, match=r"evil\.pth: cannot be loaded with torch\.load"):
        read(str(path))
    assert not marker.exists()


def test_a_torchscript_file_is_named_with_what_to_use_instead(tmp_path):
    """A ``model.ts`` (torch.jit.save) given as weights: the error says it is TorchScript and
    points at model.onnx / torch.jit.load, instead of an unpickling failure."""
    from cxr.engine.checkpoint import UnsafeCheckpointError
    from cxr.torch_io import is_torchscript_archive

    ts = tmp_path / "model.ts"
    torch.jit.save(torch.jit.trace(torch.nn.Linear(2, 1), torch.zeros(1, 2)), str(ts))
    torch.save({"w": torch.zeros(2)}, tmp_path / "w.pth")
    assert is_torchscript_archive(str(ts)) and not is_torchscript_archive(str(tmp_path / "w.pth"))
    with pytest.raises(UnsafeCheckpointError, match=r"model\.ts is a TorchScript program.*"
                       r"model\.onnx.*torch\.jit\.load"):  # fmt: skip
        load_weights_only(str(ts), error=UnsafeCheckpointError)

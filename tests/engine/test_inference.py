"""cxr.engine.inference: weights digests identify equal weights, whatever the file."""

import torch

from cxr.engine.inference import weights_digest


def test_weights_digest(tmp_path):
    a, b = torch.nn.Linear(3, 2), torch.nn.Linear(3, 2)
    assert weights_digest(a) != weights_digest(b)
    b.load_state_dict(a.state_dict())
    assert weights_digest(a) == weights_digest(b)
    b.weight.data[0, 0] += 1e-6
    assert weights_digest(a) != weights_digest(b)
    # no tensors (e.g. an ONNX Runtime session): the checkpoint file's bytes decide
    empty = torch.nn.Module()
    f1, f2 = tmp_path / "a.onnx", tmp_path / "b.onnx"
    f1.write_bytes(b"model one"), f2.write_bytes(b"model two")
    assert weights_digest(empty, str(f1)) != weights_digest(empty, str(f2))
    assert weights_digest(empty, str(f1)) == weights_digest(torch.nn.Module(), str(f1))

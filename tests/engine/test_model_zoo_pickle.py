"""detectron2 model-zoo ``.pkl`` files load through the numpy-only unpickler; payloads never run;
``detectron2://`` paths resolve through detectron2's handlers and fail fast offline."""
from __future__ import annotations

import datetime
import os
import pickle
import urllib.error

import numpy as np
import pytest
import torch

from cxr.config import load_config
from cxr.engine.checkpoint import (
    CXRCheckpointer,
    UnsafeCheckpointError,
    WeightsUnavailableError,
    load_model_weights,
)
from detectron2.checkpoint.c2_model_loading import convert_c2_detectron_names
from detectron2.modeling import build_model

from ..payloads import EvalPayload, SystemPayload

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
R18 = os.path.join(REPO, "configs/phantom/retinanet_R_18_FPN.yaml")
OPTS = ["MODEL.DEVICE", "cpu", "MODEL.RESNETS.NORM", "FrozenBN", "MODEL.FPN.NORM", ""]


def _model(seed: int):
    torch.manual_seed(seed)
    return build_model(load_config(R18, OPTS))


def _c2_name(d2: str) -> str | None:
    """Caffe2 (MSRA ImageNet) blob name of a detectron2 ResNet parameter name."""
    parts = d2.split(".")
    kind = {"weight": "w", "bias": "b"}
    bn = "s" if parts[-1] == "weight" else "b"
    if parts[0] == "stem":
        return "conv1_w" if parts[-2] == "conv1" else f"res_conv1_bn_{bn}"
    stage, block, conv = parts[0], parts[1], parts[2]
    branch = "branch1" if conv == "shortcut" else "branch2" + "abc"[int(conv[-1]) - 1]
    if parts[3] == "norm":
        return f"{stage}_{block}_{branch}_bn_{bn}"
    return f"{stage}_{block}_{branch}_{kind[parts[-1]]}"


def _caffe2_imagenet_blobs(model) -> dict[str, np.ndarray]:
    trunk = model.backbone.bottom_up.state_dict()
    blobs = {}
    for k, v in trunk.items():
        if k.endswith(("running_mean", "running_var")):
            continue  # Caffe2 trunks carry the affine BN only
        blobs[_c2_name(k)] = v.numpy().copy()
    blobs["fc1000_w"] = np.zeros((1000, 512), np.float32)  # the classifier, unused
    blobs["res2_0_branch2a_w_momentum"] = np.zeros(1, np.float32)  # optimizer state, dropped
    return blobs


def test_caffe2_names_are_detectron2s():
    blobs = _caffe2_imagenet_blobs(_model(0))
    names = [k for k in blobs if not k.endswith("_momentum")]
    d2, _ = convert_c2_detectron_names({k: blobs[k] for k in names})
    assert "stem.conv1.weight" in d2 and "res5.1.conv2.norm.weight" in d2


def test_caffe2_imagenet_pkl_loads_without_allow_pickle(tmp_path):
    src = _model(1)
    path = tmp_path / "R-18.pkl"
    path.write_bytes(pickle.dumps(_caffe2_imagenet_blobs(src), protocol=2))
    dst = _model(2)
    CXRCheckpointer(dst).load(str(path))
    a, b = src.backbone.bottom_up, dst.backbone.bottom_up
    torch.testing.assert_close(b.stem.conv1.weight, a.stem.conv1.weight, rtol=0, atol=0)
    torch.testing.assert_close(b.res4[1].conv2.weight, a.res4[1].conv2.weight, rtol=0, atol=0)
    torch.testing.assert_close(b.res3[0].shortcut.norm.weight, a.res3[0].shortcut.norm.weight)


def test_detectron2_model_final_pkl_loads_every_tensor(tmp_path):
    src = _model(3)
    data = {"model": {k: v.numpy() for k, v in src.state_dict().items()},
            "__author__": "Detectron2 Model Zoo"}  # fmt: skip
    path = tmp_path / "model_final_abc.pkl"
    path.write_bytes(pickle.dumps(data, protocol=pickle.HIGHEST_PROTOCOL))
    dst = _model(4)
    load_model_weights(dst, str(path))
    for (k, a), b in zip(src.state_dict().items(), dst.state_dict().values()):
        torch.testing.assert_close(b, a, rtol=0, atol=0, msg=k)


def test_coco_retinanet_start_keeps_all_but_the_class_layer(tmp_path):
    """configs/nih/retinanet_R_50_FPN_coco.yaml takes a detectron2 COCO model_final (80 classes):
    every tensor but the class layer loads; that one keeps its prior-bias init (8 classes)."""
    coco = os.path.join(REPO, "configs/nih/retinanet_R_50_FPN_coco.yaml")
    small = ["MODEL.DEVICE", "cpu", "MODEL.RESNETS.DEPTH", "18", "MODEL.RESNETS.RES2_OUT_CHANNELS",
             "64", "MODEL.RESNETS.STRIDE_IN_1X1", "False"]  # fmt: skip
    torch.manual_seed(0)
    src = build_model(load_config(coco, small + ["MODEL.RETINANET.NUM_CLASSES", "80"]))
    path = tmp_path / "model_final_coco.pkl"
    data = {"model": {k: v.numpy() for k, v in src.state_dict().items()}, "__author__": "d2"}
    path.write_bytes(pickle.dumps(data))
    torch.manual_seed(1)
    dst = build_model(load_config(coco, small))
    CXRCheckpointer(dst).load(str(path))
    cls = "head.cls_score."
    for (k, a), b in zip(src.state_dict().items(), dst.state_dict().values()):
        if not k.startswith(cls):
            assert torch.equal(a, b), k
    torch.testing.assert_close(dst.head.cls_score.bias, torch.full((72,), -4.59511985013459))


@pytest.mark.parametrize(
    "payload, name", [(SystemPayload, "system"), (EvalPayload, "builtins.eval")]
)
def test_payload_refused_and_never_runs(tmp_path, payload, name):
    marker = tmp_path / "pwned"
    data = {"model": {"w": np.ones(3, np.float32), "x": payload(marker)}, "__author__": "x"}
    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps(data))
    with pytest.raises(UnsafeCheckpointError, match=f"evil.pkl.*global .*{name}"):
        CXRCheckpointer(torch.nn.Linear(3, 1)).load(str(path))
    assert not marker.exists()


def test_other_globals_need_allow_pickle(tmp_path):
    src, dst = torch.nn.Linear(3, 2), torch.nn.Linear(3, 2)
    data = {"model": {k: v.detach().numpy() for k, v in src.state_dict().items()},
            "__author__": "x", "date": datetime.date(2020, 1, 1)}  # fmt: skip
    path = tmp_path / "dated.pkl"
    path.write_bytes(pickle.dumps(data))
    with pytest.raises(UnsafeCheckpointError, match="datetime.date"):
        load_model_weights(dst, str(path))
    load_model_weights(dst, str(path), allow_pickle=True)
    torch.testing.assert_close(dst.weight, src.weight)


def test_detectron2_url_offline_fails_fast_then_cached_copy_loads(tmp_path, monkeypatch):
    import iopath.common.download as download

    def no_network(url, *args, **kwargs):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(download.request, "urlretrieve", no_network)
    monkeypatch.setenv("FVCORE_CACHE", str(tmp_path / "cache"))
    url = "detectron2://ImageNetPretrained/MSRA/R-18-test.pkl"
    with pytest.raises(WeightsUnavailableError) as e:
        CXRCheckpointer(_model(0)).load(url)
    msg = str(e.value)
    assert "https://dl.fbaipublicfiles.com/detectron2/ImageNetPretrained/MSRA/R-18-test.pkl" in msg
    assert "MODEL.WEIGHTS" in msg and str(tmp_path / "cache") in msg

    cached = tmp_path / "cache/detectron2/ImageNetPretrained/MSRA/R-18-test.pkl"
    cached.parent.mkdir(parents=True, exist_ok=True)
    src = _model(7)
    cached.write_bytes(pickle.dumps(_caffe2_imagenet_blobs(src), protocol=2))
    dst = _model(8)
    load_model_weights(dst, url)
    torch.testing.assert_close(dst.backbone.bottom_up.stem.conv1.weight,
                               src.backbone.bottom_up.stem.conv1.weight)  # fmt: skip

"""Chest-X-ray-pretrained trunks of torchxrayvision -> cxr trunks.

* ``densenet121-res224-*`` (``xrv.models.DenseNet``, torchvision's DenseNet-121 layout, 1 input
  channel) -> the state dict of timm's ``densenet121`` (same tensor names; the 18-finding
  classifier is dropped), for ``MODEL.TIMM.WEIGHTS`` with ``MODEL.TIMM.NAME densenet121``;
* ``resnet50-res512-all`` (``xrv.models.ResNet``: a torchvision ResNet-50 with a 1-channel
  ``conv1``) -> detectron2's ResNet (:func:`.resnet.convert_torchvision_resnet`), for
  ``MODEL.WEIGHTS`` with ``MODEL.RESNETS.STRIDE_IN_1X1 False``.

torchxrayvision's input convention is one channel scaled to [-1024, 1024]
(``xrv.datasets.normalize(img, 255)`` = ``img * 2048 / 255 - 1024``); with ``INPUT.FORMAT L`` on
8-bit films that is ``MODEL.PIXEL_MEAN [127.5]``, ``MODEL.PIXEL_STD [255 / 2048]``
(:data:`XRV_PIXEL_MEAN`, :data:`XRV_PIXEL_STD`).

The weights are fetched by torchxrayvision itself (into ``~/.torchxrayvision/models_data/``, or
``cache_dir``), whose loader unpickles the official files; the converted ``.pth`` holds tensors
only.
"""
from __future__ import annotations

import os
import socket

import torch
from cxr_runtime.optional import import_optional

from .common import ConversionReport
from .resnet import convert_torchvision_resnet

__all__ = [
    "XRV_PIXEL_MEAN",
    "XRV_PIXEL_STD",
    "convert_xrv_densenet",
    "convert_xrv_state",
    "load_xrv_model",
    "xrv_weights_file",
]

XRV_PIXEL_MEAN = (127.5,)
XRV_PIXEL_STD = (255 / 2048,)


def convert_xrv_densenet(state: dict[str, torch.Tensor]) -> tuple[dict, ConversionReport]:
    """torchxrayvision DenseNet state dict -> timm ``densenet121`` state dict (no classifier)."""
    out = {k: v for k, v in state.items() if k.startswith("features.")}
    report = ConversionReport(dropped=sorted(set(state) - set(out)))
    if "features.conv0.weight" not in out:
        raise ValueError("not a torchxrayvision DenseNet state dict (no features.conv0.weight)")
    report.kept = sorted(out)
    report.notes.append("timm densenet121 tensor names; use MODEL.TIMM.WEIGHTS, 1 input channel")
    return out, report


def convert_xrv_state(
    weights: str, state: dict[str, torch.Tensor]
) -> tuple[dict, ConversionReport]:
    """Convert the state dict of torchxrayvision model ``weights`` (by its weights name)."""
    if weights.startswith("densenet"):
        return convert_xrv_densenet(state)
    if weights.startswith("resnet"):
        return convert_torchvision_resnet(state)
    raise ValueError(f"torchxrayvision weights {weights!r}: expected densenet121-* or resnet50-*")


def xrv_weights_file(weights: str, cache_dir: str | None = None) -> tuple[str, str]:
    """(URL, local path) torchxrayvision downloads ``weights`` from / to."""
    xrv = import_optional("torchxrayvision", "converting torchxrayvision weights")

    if weights not in xrv.models.model_urls:
        choices = sorted(k for k in xrv.models.model_urls if k.startswith(("densenet", "resnet")))
        raise ValueError(f"unknown torchxrayvision weights {weights!r}; choose from {choices}")
    url = xrv.models.model_urls[weights]["weights_url"]
    folder = cache_dir or xrv.utils.get_cache_dir()
    return url, os.path.expanduser(os.path.join(folder, os.path.basename(url)))


def load_xrv_model(weights: str, cache_dir: str | None = None) -> torch.nn.Module:
    """torchxrayvision's model with its pretrained ``weights`` (downloaded once, then cached).

    Raises:
        OSError: the file is neither cached nor downloadable, naming the URL and where to put it.
    """
    xrv = import_optional("torchxrayvision", "converting torchxrayvision weights")

    url, path = xrv_weights_file(weights, cache_dir)
    cls = xrv.models.DenseNet if weights.startswith("densenet") else xrv.models.ResNet
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(20.0)
    try:
        return cls(weights=weights, cache_dir=os.path.dirname(path) + os.sep)
    except OSError as e:
        if os.path.isfile(path) and os.path.getsize(path) == 0:
            os.unlink(path)  # a failed download leaves an empty file behind
        raise OSError(
            f"torchxrayvision weights {weights!r}: cannot download {url} ({e}). Offline: fetch "
            f"that URL on a machine with internet and place it at {path}"
        ) from None
    finally:
        socket.setdefaulttimeout(previous)

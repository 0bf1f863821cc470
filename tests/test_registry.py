"""cxr's registries are detectron2 Registries with explicit names and a public listing."""
from __future__ import annotations

import pytest
from detectron2.utils.registry import Registry

from cxr.data.augmentations import ALBUMENTATIONS_PRESETS
from cxr.data.datasets.vindr import BOX_FUSIONS
from cxr.data.phantom import LESION_RENDERERS
from cxr.data.samplers import SAMPLER_REGISTRY
from cxr.registry import NamedRegistry


def test_register_as_and_names():
    reg = NamedRegistry("T")
    assert isinstance(reg, Registry)

    @reg.register_as("b-name")
    def f():
        return 1

    reg.register(len)
    assert reg.names() == ["b-name", "len"] and reg.get("b-name") is f and "len" in reg
    with pytest.raises(AssertionError):  # detectron2 refuses a second object under one name
        reg.register_as("len")(max)
    with pytest.raises(KeyError):
        reg.get("missing")


def test_the_data_registries_list_their_names():
    assert ALBUMENTATIONS_PRESETS.names() == ["light", "none", "strong"]
    assert BOX_FUSIONS.names() == ["majority", "nms", "none", "wbf"]
    assert LESION_RENDERERS.names() == [
        "Atelectasis", "Cardiomegaly", "Effusion", "Infiltrate", "Mass", "Nodule", "Pneumonia",
        "Pneumothorax",
    ]  # fmt: skip
    assert SAMPLER_REGISTRY.names() == [
        "NegativeRatioSampler", "RepeatFactorTrainingSampler", "TrainingSampler"
    ]  # fmt: skip

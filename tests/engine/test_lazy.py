"""LazyConfig (.py) configs: equal to their YAML twins, same model / data / training, safe loading."""

from __future__ import annotations

import os
import random

import numpy as np
import pytest
import torch
from detectron2.config import LazyConfig, instantiate

from cxr.config import load_config
from cxr.engine import Trainer, setup_config
from cxr.engine.defaults import load_any_config
from cxr.engine.lazy import LazyConfigError, lazy_to_cfg, load_lazy_config
from cxr.engine.trainer import _train_dicts

from .helpers import REPO

TWINS = [
    "configs/nih/efficientdet_d0",
    "configs/nih/retinanet_R_50_FPN",
    "configs/nih/classifier_efficientnet_b0",
    "configs/phantom/retinanet_demo",
]


def _path(stem: str, ext: str) -> str:
    return os.path.join(REPO, stem + ext)


@pytest.mark.parametrize("stem", TWINS)
def test_lazy_twin_converts_to_the_yaml_config(stem):
    """Every key of the converted LazyConfig equals the YAML twin's (the Trainer sees one config)."""
    lazy = lazy_to_cfg(load_lazy_config(_path(stem, ".py")), where=stem)
    assert lazy.dump() == load_config(_path(stem, ".yaml")).dump()


def _seed(s=0):
    random.seed(s)
    np.random.seed(s)
    torch.manual_seed(s)


def test_d0_model_same_parameters_and_outputs():
    """instantiate(model) of the lazy D0 = Trainer.build_model of the YAML D0: parameter names
    and shapes, and the same backbone features and head outputs for the same weights and input."""
    lazy = load_lazy_config(_path("configs/nih/efficientdet_d0", ".py"))
    ours = instantiate(lazy.model).eval()
    ref = Trainer.build_model(setup_config(_path("configs/nih/efficientdet_d0", ".yaml"),
                                           ["MODEL.DEVICE", "cpu"])).eval()  # fmt: skip
    shapes = {k: tuple(v.shape) for k, v in ours.state_dict().items()}
    assert shapes == {k: tuple(v.shape) for k, v in ref.state_dict().items()}
    assert len(shapes) > 300
    ours.load_state_dict(ref.state_dict())
    _seed()
    x = torch.rand(1, 3, 128, 128) * 255
    with torch.no_grad():
        fa, fb = ours.backbone((x - ours.pixel_mean) / ours.pixel_std), ref.backbone(
            (x - ref.pixel_mean) / ref.pixel_std
        )
        assert list(fa) == list(fb) and list(fa) == ref.head_in_features
        for k in fa:
            torch.testing.assert_close(fa[k], fb[k], rtol=0, atol=0)
        ha = ours.head([fa[k] for k in ours.head_in_features])
        hb = ref.head([fb[k] for k in ref.head_in_features])
    for a, b in zip(ha, hb):
        for ta, tb in zip(a, b):
            torch.testing.assert_close(ta, tb, rtol=0, atol=0)


def test_dataset_dicts_and_mapper_outputs_are_the_same(tiny_dataset):
    """The lazy D0's dataset = the YAML D0's training records; its mapper gives the same
    tensors and boxes for the same seed (the classifier twin's "light" augmentation is random)."""
    lazy = load_lazy_config(_path("configs/nih/efficientdet_d0", ".py"))
    yaml_cfg = load_config(_path("configs/nih/efficientdet_d0", ".yaml"))
    assert instantiate(lazy.dataloader.train.dataset) == _train_dicts(yaml_cfg)
    cls = load_lazy_config(_path("configs/nih/classifier_efficientnet_b0", ".py"))
    cls_yaml = load_config(_path("configs/nih/classifier_efficientnet_b0", ".yaml"))
    from cxr.data import build_mapper
    from detectron2.data import DatasetCatalog

    dicts = DatasetCatalog.get(tiny_dataset)
    for lz, yc in ((lazy, yaml_cfg), (cls, cls_yaml)):
        ours, ref = instantiate(lz.dataloader.train.mapper), build_mapper(yc, True)
        for d in dicts[:2]:
            _seed(3)
            a = ours(dict(d))
            _seed(3)
            b = ref(dict(d))
            assert sorted(a) == sorted(b)
            torch.testing.assert_close(a["image"], b["image"], rtol=0, atol=0)
            if "instances" in a:
                assert torch.equal(a["instances"].gt_boxes.tensor, b["instances"].gt_boxes.tensor)


def test_train_loader_first_batches_equal(tiny_dataset):
    """instantiate(dataloader.train) of the lazy demo = the Trainer's loader of the YAML demo
    (RepeatFactorTrainingSampler, same seed): the same images in the same order."""
    over = [f"dataloader.train.dataset.names=[{tiny_dataset}]", "dataloader.train.num_workers=0",
            "dataloader.train.total_batch_size=2", "train.seed=5"]  # fmt: skip
    lazy = load_lazy_config(_path("configs/phantom/retinanet_demo", ".py"), over)
    cfg = load_config(_path("configs/phantom/retinanet_demo", ".yaml"),
                      ["DATASETS.TRAIN", f"('{tiny_dataset}',)", "DATALOADER.NUM_WORKERS", "0",
                       "SOLVER.IMS_PER_BATCH", "2", "SEED", "5"])  # fmt: skip
    ours, ref = iter(instantiate(lazy.dataloader.train)), iter(Trainer.build_train_loader(cfg))
    for _ in range(3):
        a, b = next(ours), next(ref)
        assert [x["file_name"] for x in a] == [x["file_name"] for x in b]
        for xa, xb in zip(a, b):
            assert torch.equal(xa["image"], xb["image"])


def test_bad_inputs_name_the_file_and_key(tmp_path):
    demo = _path("configs/phantom/retinanet_demo", ".py")
    with pytest.raises(LazyConfigError, match="_target_ names the code"):
        load_lazy_config(demo, ["model._target_=os.system"])
    with pytest.raises(LazyConfigError, match="no key 'train.max_iterations'"):
        load_lazy_config(demo, ["train.max_iterations=5"])
    with pytest.raises(LazyConfigError, match="not key=value"):
        load_lazy_config(demo, ["train.max_iter"])
    bad = tmp_path / "bad.py"
    bad.write_text("from detectron2.config import LazyCall as L\n"
                   "from cxr.engine.lazy import cxr_model\n"
                   "model = L(cxr_model)(retinanet=dict(num_clases=3))\n")  # fmt: skip
    with pytest.raises(
        LazyConfigError, match=r"bad.py: model.retinanet.num_clases: MODEL.RETINANET"
    ):
        lazy_to_cfg(load_lazy_config(str(bad)), where=str(bad))
    with pytest.raises(LazyConfigError, match="expected int"):
        lazy_to_cfg(load_lazy_config(demo, ["train.max_iter=abc"]), where=demo)
    # A saved LazyConfig YAML is read with safe_load: a Python tag is refused, never run.
    marker = tmp_path / "ran"
    evil = tmp_path / "config.yaml"
    evil.write_text(f"model: !!python/object/apply:os.system ['touch {marker}']\ntrain: {{}}\n")
    with pytest.raises(LazyConfigError, match="non-standard YAML tag"):
        load_any_config(str(evil))
    assert not marker.exists()
    with pytest.raises(LazyConfigError, match="a LazyConfig is a .py file"):
        load_lazy_config(_touch(tmp_path / "c.json"))


def _touch(p) -> str:
    p.write_text("{}")
    return str(p)


def test_detectron2_lazy_config_operations_with_cxr():
    """detectron2 v0.6's tests/config/test_lazy_config.py under ``import cxr``: the upstream file
    when the detectron2 source tree has it, else its three operations that need hydra-core and
    black (apply_overrides, to_py) and save/load, on a cxr LazyConfig."""
    import detectron2

    upstream = os.path.join(os.path.dirname(os.path.dirname(detectron2.__file__)), "tests",
                            "config", "test_lazy_config.py")  # fmt: skip
    if os.path.isfile(upstream):
        assert pytest.main(["-q", "-p", "no:cacheprovider", upstream]) == 0
        return
    cfg = LazyConfig.load(_path("configs/phantom/retinanet_demo", ".py"))
    LazyConfig.apply_overrides(cfg, ["train.max_iter=7", "optimizer.lr=1e-3",
                                     "dataloader.train.dataset.names=[a,b]"])  # fmt: skip
    assert cfg.train.max_iter == 7 and cfg.optimizer.lr == 1e-3
    assert list(cfg.dataloader.train.dataset.names) == ["a", "b"]
    code = LazyConfig.to_py(cfg)
    assert "cfg.train.max_iter = 7" in code.replace(
        "cfg.train.max_iter=7", "cfg.train.max_iter = 7"
    )
    compile(code, "<to_py>", "exec")  # black-formatted, valid Python
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        LazyConfig.save(cfg, os.path.join(d, "c.yaml"))
        back = LazyConfig.load(os.path.join(d, "c.yaml"))
    assert back.train.max_iter == 7
    assert lazy_to_cfg(back).dump() == lazy_to_cfg(cfg).dump()

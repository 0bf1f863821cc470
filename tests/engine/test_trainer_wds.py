"""The trainer on shard sets: a classifier trains and is evaluated from shards through
tools/train_net.py; the evaluation loader reads every sample once."""

from __future__ import annotations

import os

import pytest
from detectron2.data import DatasetCatalog, MetadataCatalog

from cxr.data.datasets.wds_copies import register_wds_copies
from cxr.engine import Trainer
from cxr.engine.defaults import setup_config
from tests.shards import write_shard_copy
from tests.tools.test_two_stage import SLIM, cls_set  # noqa: F401  (fixture)
from tests.tools.util import REPO, load_tool


@pytest.fixture
def cls_shards(cls_set, tmp_path):  # noqa: F811
    """The 24-film classification set as a shard copy of 6 shards: its registered name."""
    records = DatasetCatalog.get(f"{cls_set}_all")
    write_shard_copy(str(tmp_path / "root"), "cls", 64, f"{cls_set}_all", records, 4,
                     task="classification")  # fmt: skip
    (name,) = register_wds_copies(str(tmp_path / "root"))
    yield name
    DatasetCatalog.remove(name)
    MetadataCatalog.remove(name)


def test_classifier_trains_and_is_evaluated_from_shards(
    cls_shards, cls_set, tmp_path
):  # noqa: F811
    assert MetadataCatalog.get(cls_shards).evaluator_type == "cxr_cls"
    cfg_file = os.path.join(REPO, "configs/phantom/classifier_R_50_slim.yaml")
    out = tmp_path / "clf"
    opts = [*SLIM, "DATASETS.TRAIN", f"('{cls_shards}',)", "DATASETS.TEST", f"('{cls_shards}',)",
            "SOLVER.MAX_ITER", "2", "DATALOADER.WDS.SHUFFLE_BUFFER", "8",
            "CXR.VIS.PERIOD", "2", "CXR.VIS.NUM_IMAGES", "1", "OUTPUT_DIR", str(out)]  # fmt: skip
    load_tool("train_net").cli(["--config-file", cfg_file, *opts])
    assert (out / "model_final.pth").is_file()
    log = (out / "log.txt").read_text()
    assert "one epoch = 24 samples in 6 shards = 6.0 iterations of 4 images" in log
    assert (out / "inference" / cls_shards / "roc_curves.png").is_file()

    cfg = setup_config(cfg_file, [*opts, "DATALOADER.NUM_WORKERS", "2"])
    seen = [d["image_id"] for batch in Trainer.build_test_loader(cfg, cls_shards) for d in batch]
    assert sorted(seen) == sorted(d["image_id"] for d in DatasetCatalog.get(f"{cls_set}_all"))

"""cxr.data.checks: missing training images found before any model is built."""

import logging

import pytest

from cxr.data.checks import check_image_files

from tests.conftest import write_tiny_images


def test_missing_images_counted_named_or_skipped(tmp_path, caplog):
    dicts = write_tiny_images(str(tmp_path / "imgs"), n=4)
    assert check_image_files(dicts) == []
    gone = [dicts[1]["file_name"], dicts[3]["file_name"]]
    for p in gone:
        (tmp_path / "imgs" / p.rsplit("/", 1)[1]).unlink()
    with pytest.raises(FileNotFoundError) as e:
        check_image_files(dicts, what="training (tiny)")
    msg = str(e.value)
    assert msg.startswith(
        "2 of 4 training (tiny) images are missing, e.g. img_001.png, img_003.png"
    )
    assert str(tmp_path / "imgs") in msg and "SKIP_BAD_IMAGES" in msg
    with caplog.at_level(logging.WARNING, logger="cxr"):
        assert check_image_files(dicts, skip_bad_images=True) == gone
    assert "2 of 4 training images are missing" in caplog.text


def test_trainer_stops_before_building_the_model(tmp_path, monkeypatch):
    from detectron2.data import DatasetCatalog, MetadataCatalog

    from cxr.engine import Trainer

    from tests.engine.helpers import tiny_cfg

    name = "cxr_test_missing_images"
    if name not in DatasetCatalog.list():
        dicts = write_tiny_images(str(tmp_path / "imgs"), n=3)
        for d in dicts:
            d["file_name"] = str(tmp_path / "elsewhere" / "x.png")
        DatasetCatalog.register(name, lambda: dicts)
        MetadataCatalog.get(name).set(thing_classes=["a", "b"])

    def no_model(cfg):
        raise AssertionError("the model was built before the image check")

    monkeypatch.setattr(Trainer, "build_model", classmethod(lambda cls, cfg: no_model(cfg)))
    with pytest.raises(FileNotFoundError, match=f"3 of 3 training \\({name}\\) images"):
        Trainer(tiny_cfg(name, str(tmp_path / "out"), 1))

"""Prepared copies of real-size 16-bit phantom DICOMs: PNG files and WebDataset shards, the
manifest, registration as ``<name>@<size>``, the splits kept, bad input."""

from __future__ import annotations

import csv
import glob
import hashlib
import json
import os

import cv2
import numpy as np
import pandas as pd
import pytest
from dataformats import NIH_DIR
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.structures import BoxMode

from cxr.data.datasets.builtin import register_all_cxr
from cxr.data.datasets.prepared import MANIFEST_COLUMNS, register_prepared_copies
from cxr.data.io import read_xray
from cxr.data.phantom import read_boxes
from cxr.data.phantom_dicom import REAL_SIZE, generate_phantom_dicoms
from cxr.data.prepare import PrepareError, prepare_datasets, safe_keys

BBOX = os.path.join(NIH_DIR, "BBox_List_2017.csv.gz")
SPLITS = ("phantom_vindr_train", "phantom_vindr_val", "phantom_vindr_test")


def _unregister(prefix: str) -> None:
    for n in [n for n in DatasetCatalog.list() if n.startswith(prefix)]:
        DatasetCatalog.remove(n)
        MetadataCatalog.remove(n)


@pytest.fixture(scope="module")
def real_root(tmp_path_factory):
    """A data root with 4 real-size (3000 x 2500) 16-bit phantom DICOMs, registered."""
    root = str(tmp_path_factory.mktemp("root"))
    generate_phantom_dicoms(os.path.join(root, "phantom_vindr"), BBOX, 4)
    _unregister("phantom_vindr")
    register_all_cxr(root)
    yield root
    _unregister("phantom_vindr")


def _manifest(folder: str) -> list[dict]:
    with open(os.path.join(folder, "manifest.csv"), newline="") as f:
        return list(csv.DictReader(f))


def test_phantom_dicoms_real_size_16_bit_and_boxes(tmp_path):
    import pydicom
    from pydicom.uid import RLELossless

    out = str(tmp_path / "pv")
    m = generate_phantom_dicoms(out, BBOX, 3, height=300, width=250, transfer_syntax="rle")
    files = sorted(glob.glob(os.path.join(out, "train", "*.dicom")))
    assert m["num_images"] == 3 and len(files) == 3 and REAL_SIZE == (3000, 2500)
    kinds = set()
    for f in files:
        ds = pydicom.dcmread(f)
        assert ds.file_meta.TransferSyntaxUID == RLELossless and ds.BitsAllocated == 16
        assert ds.pixel_array.dtype == np.uint16 and ds.pixel_array.shape == (300, 250)
        kinds.add(ds.PhotometricInterpretation)
    assert kinds == {"MONOCHROME1", "MONOCHROME2"}
    # MONOCHROME1 inverted by the reader: bodies are brighter than the air outside either way
    for f in files:
        img = read_xray(f).astype(float)
        assert img[100:200, 80:170].mean() > img[:, :10].mean() + 20
    rows = pd.read_csv(os.path.join(out, "train.csv"))
    nih = read_boxes(BBOX)
    for r in rows.itertuples():  # real NIH boxes scaled by width / 1024 and height / 1024
        b = nih[nih["image"] == r.image_id + ".png"]
        assert any(np.allclose([r.x_min, r.y_min], [x * 250 / 1024, y * 300 / 1024], atol=1e-3)
                   for x, y in zip(b["x"], b["y"]))  # fmt: skip


def test_png_copy_of_real_size_films(real_root):
    (c,) = prepare_datasets(["phantom_vindr_all"], 1024, "png", root=real_root)
    folder = os.path.join(real_root, "phantom_vindr@1024")
    assert c["folder"] == folder and c["films"] == 4 and c["errors"] == 0
    info = json.load(open(os.path.join(folder, "prepare.json")))
    assert (info["format"], info["size"], info["bit_depth"], info["shard_size"]) == (
        "png", 1024, 8, None)  # fmt: skip
    assert info["datasets"] == list(SPLITS) and info["source_folder"] == "phantom_vindr"
    rows = _manifest(folder)
    assert tuple(rows[0]) == MANIFEST_COLUMNS and len(rows) == 4
    names = register_prepared_copies(real_root)
    assert set(names) == {f"{s}@1024" for s in SPLITS} | {"phantom_vindr_all@1024"}
    for row in rows:
        out = os.path.join(folder, row["output"])
        assert hashlib.sha256(open(out, "rb").read()).hexdigest() == row["sha256"]
        src = read_xray(row["source_path"])  # decoded once, resized by the long side
        want = cv2.resize(src, (round(2500 * 1024 / 3000), 1024), interpolation=cv2.INTER_AREA)
        np.testing.assert_array_equal(cv2.imread(out, cv2.IMREAD_UNCHANGED), want)
        assert (int(row["source_height"]), int(row["source_width"])) == REAL_SIZE
        assert float(row["scale"]) == 1024 / 3000


def test_prepared_splits_hold_the_original_patients_and_scaled_boxes(real_root):
    prepare_datasets(["phantom_vindr_all"], 1024, "png", root=real_root)
    register_prepared_copies(real_root)
    for name in SPLITS + ("phantom_vindr_all",):
        orig = {d["image_id"]: d for d in DatasetCatalog.get(name)}
        copy = DatasetCatalog.get(f"{name}@1024")
        assert {d["patient_id"] for d in copy} == {d["patient_id"] for d in orig.values()}
        assert sorted(d["image_id"] for d in copy) == sorted(orig)
        meta = MetadataCatalog.get(f"{name}@1024")
        assert meta.prepared_from == name and meta.prepared_size == 1024
        assert meta.thing_classes == MetadataCatalog.get(name).thing_classes
        for d in copy:
            o = orig[d["image_id"]]
            assert (d["height"], d["width"]) == (1024, 853) and d["scale"] == 1024 / 3000
            assert (d["orig_height"], d["orig_width"]) == REAL_SIZE
            assert d["source_file"] == o["file_name"] and os.path.isfile(d["file_name"])
            for a, b in zip(o["annotations"], d["annotations"]):
                want = np.array(BoxMode.convert(a["bbox"], a["bbox_mode"], BoxMode.XYXY_ABS))
                np.testing.assert_allclose(b["bbox"], want * 1024 / 3000, rtol=1e-12)
                assert b["bbox_mode"] == BoxMode.XYXY_ABS and b["category_id"] == a["category_id"]


def test_shard_copy_with_webdataset(real_root):
    import webdataset as wds

    (c,) = prepare_datasets(["phantom_vindr_all"], 512, "wds", root=real_root, shard_size=1,
                            bit_depth=16)  # fmt: skip
    folder = os.path.join(real_root, "phantom_vindr@512-wds")
    assert c["folder"] == folder and c["films"] == 4
    rows = {r["image_id"]: r for r in _manifest(folder)}
    for name in SPLITS:
        index = json.load(open(os.path.join(folder, name, "index.json")))
        orig = {d["image_id"]: d for d in DatasetCatalog.get(name)}
        assert index["dataset"] == name and index["task"] == "detection"
        assert index["num_samples"] == len(orig) == sum(s["num_samples"] for s in index["shards"])
        urls = [os.path.join(folder, name, s["file"]) for s in index["shards"]]
        seen = []
        for sample in wds.WebDataset(urls, shardshuffle=False):
            rec = json.loads(sample["json"])
            img = cv2.imdecode(np.frombuffer(sample["png"], np.uint8), cv2.IMREAD_UNCHANGED)
            assert img.dtype == np.uint16 and img.shape == (512, 427) == (
                rec["height"],
                rec["width"],
            )
            o = orig[rec["image_id"]]
            assert sample["__key__"] == safe_keys([rec["image_id"]])[0]
            assert rec["patient_id"] == o["patient_id"] and rec["scale"] == 512 / 3000
            assert (rec["orig_height"], rec["orig_width"]) == REAL_SIZE
            assert rec["source_file"] == o["file_name"]
            assert len(rec["annotations"]) == len(o["annotations"])
            assert hashlib.sha256(sample["png"]).hexdigest() == rows[rec["image_id"]]["sha256"]
            seen.append(rec["image_id"])
        assert sorted(seen) == sorted(orig)
    # 16 bits: the same film as the 8-bit reading, 257 times finer
    row = next(iter(rows.values()))
    img8 = cv2.resize(read_xray(row["source_path"]), (427, 512), interpolation=cv2.INTER_AREA)
    with wds.WebDataset(
        os.path.join(folder, row["output"].split("#")[0]), shardshuffle=False
    ) as ds:
        img16 = cv2.imdecode(np.frombuffer(next(iter(ds))["png"], np.uint8), -1)
    assert np.abs(img16 / 257.0 - img8).mean() < 1.0


def test_other_size_in_the_copy_folder_is_refused_and_nothing_lost(real_root, tmp_path):
    out = str(tmp_path / "copy")
    prepare_datasets(["phantom_vindr_val"], 256, "png", root=real_root, output=out)
    before = {p: open(p, "rb").read() for p in glob.glob(out + "/**", recursive=True)
              if os.path.isfile(p)}  # fmt: skip
    with pytest.raises(PrepareError, match=r"prepare\.json: field 'size' is 256.*--size 128"):
        prepare_datasets(["phantom_vindr_val"], 128, "png", root=real_root, output=out)
    after = {p: open(p, "rb").read() for p in glob.glob(out + "/**", recursive=True)
             if os.path.isfile(p)}  # fmt: skip
    assert after == before
    original = os.path.join(real_root, "phantom_vindr")
    with pytest.raises(PrepareError, match="original data set's folder"):
        prepare_datasets(["phantom_vindr_val"], 128, "png", root=real_root, output=original)


def test_unregistered_name_lists_close_names(real_root):
    with pytest.raises(PrepareError, match="phantom_vindr_train"):
        prepare_datasets(["phantom_vindr_trian"], 256, root=real_root)
    with pytest.raises(PrepareError, match="Dataset 'rsna_pneumonia_train' is not registered"):
        prepare_datasets(["rsna_pneumonia_train"], 256, root=real_root)


def test_unreadable_sources_go_to_errors_csv(real_root, tmp_path):
    root = str(tmp_path / "bad")
    src = os.path.join(real_root, "phantom_vindr")
    os.makedirs(os.path.join(root, "phantom_vindr", "train"))
    films = sorted(glob.glob(os.path.join(src, "train", "*.dicom")))
    for f in films:  # small copies of the real films; one with its pixel data cut short
        data = open(f, "rb").read()
        dest = os.path.join(root, "phantom_vindr", "train", os.path.basename(f))
        open(dest, "wb").write(data[: len(data) // 2] if f == films[0] else data)
    bad_id = os.path.basename(films[0])[: -len(".dicom")]
    with open(os.path.join(src, "train.csv")) as f:
        text = f.read()
    open(os.path.join(root, "phantom_vindr", "train.csv"), "w").write(text)
    _unregister("phantom_vindr")
    try:
        register_all_cxr(root)
        (c,) = prepare_datasets(["phantom_vindr_all"], 64, "png", root=root)
    finally:
        _unregister("phantom_vindr")
        register_all_cxr(real_root)
    assert c["errors"] == 1 and c["films"] == 3
    with open(os.path.join(c["folder"], "errors.csv"), newline="") as f:
        (err,) = list(csv.DictReader(f))
    assert err["image_id"] == bad_id and bad_id in err["source_path"]
    assert "cannot read image" in err["error"] and bad_id not in {
        r["image_id"] for r in _manifest(c["folder"])}  # fmt: skip


def test_train_net_and_eval_only_on_a_prepared_copy(real_root, tmp_path):
    """tools/train_net.py takes ``<name>@<size>`` names; the evaluator reports boxes in the
    original films' pixels (predictions.json beyond the 64 px prepared frame)."""
    import sys

    from dataformats import REPO

    sys.path.insert(0, os.path.join(REPO, "tools"))
    import train_net

    prepare_datasets(["phantom_vindr_all"], 64, "png", root=real_root)
    register_prepared_copies(real_root)
    out = str(tmp_path / "run")
    opts = ["MODEL.DEVICE", "cpu", "MODEL.RESNETS.DEPTH", "18", "MODEL.RESNETS.RES2_OUT_CHANNELS",
            "64", "MODEL.RETINANET.NUM_CLASSES", "14", "MODEL.RETINANET.SCORE_THRESH_TEST", "0.0",
            "INPUT.MIN_SIZE_TRAIN", "(64,)", "INPUT.MAX_SIZE_TRAIN", "64",
            "INPUT.MIN_SIZE_TEST", "64", "INPUT.MAX_SIZE_TEST", "64", "SOLVER.IMS_PER_BATCH", "2",
            "SOLVER.BASE_LR", "0.001", "SOLVER.WARMUP_ITERS", "0", "SOLVER.STEPS", "()",
            "DATALOADER.NUM_WORKERS", "0", "TEST.EVAL_PERIOD", "0", "SOLVER.MAX_ITER", "1",
            "DATASETS.TRAIN", "('phantom_vindr_train@64',)", "CXR.EVAL.PLOTS", "False",
            "CXR.EVAL.HTML_REPORT", "False",
            "DATASETS.TEST", "('phantom_vindr_test@64',)", "OUTPUT_DIR", out]  # fmt: skip
    cfg_file = os.path.join(REPO, "configs", "nih", "retinanet_R_18_FPN.yaml")
    train_net.cli(["--config-file", cfg_file, *opts])
    ckpt = os.path.join(out, "model_final.pth")
    assert os.path.isfile(ckpt)
    args = ["--config-file", cfg_file, "--eval-only", *opts, "MODEL.WEIGHTS", ckpt]
    results = train_net.main(train_net.argument_parser().parse_args(args))
    assert "cxr" in results and "AP" in results["cxr"]
    (pred_file,) = glob.glob(os.path.join(out, "**", "predictions.json"), recursive=True)
    preds = json.load(open(pred_file))
    assert preds and max(p["bbox"][0] + p["bbox"][2] for p in preds) > 64  # original pixels
    assert max(p["bbox"][1] + p["bbox"][3] for p in preds) <= REAL_SIZE[0] + 1e-6


def test_unprepared_copy_name_says_how_to_make_it(real_root):
    from cxr.data.datasets.builtin import DatasetNotFoundError

    with pytest.raises(DatasetNotFoundError, match=r"prepare_data\.py --dataset phantom_vindr_val "
                                                   r"--size 333 --format wds"):  # fmt: skip
        DatasetCatalog.get("phantom_vindr_val@333-wds")
    with pytest.raises(DatasetNotFoundError, match="no prepared copy of phantom_vindr_val at 333"):
        DatasetCatalog.get("phantom_vindr_val@333")


def test_copy_placed_with_output_under_the_data_root_is_registered(real_root):
    out = os.path.join(real_root, "fast_disk", "val_96")
    (c,) = prepare_datasets(["phantom_vindr_val"], 96, "png", root=real_root, output=out)
    assert c["folder"] == out and not os.path.isdir(os.path.join(real_root, "phantom_vindr@96"))
    assert register_prepared_copies(real_root) == ["phantom_vindr_val@96"]
    (d,) = DatasetCatalog.get("phantom_vindr_val@96")
    assert d["file_name"].startswith(out) and max(d["height"], d["width"]) == 96


def test_shards_written_by_prepare_stream_as_the_png_copy_reads(real_root):
    """tools/prepare_data.py's shards are registered as <name>@<size>-wds and streamed by the
    trainer's reader: the same records (boxes in prepared pixels, original size and scale) and the
    same pixels as the PNG copy of the same films."""
    from cxr.data.datasets.wds_copies import register_wds_copies
    from cxr.data.wds import ShardStream, read_record_image

    prepare_datasets(["phantom_vindr_all"], 80, "png", root=real_root)
    prepare_datasets(["phantom_vindr_all"], 80, "wds", root=real_root, shard_size=1)
    register_prepared_copies(real_root)
    names = register_wds_copies(real_root)
    for split in SPLITS:
        png = {d["image_id"]: d for d in DatasetCatalog.get(f"{split}@80")}
        if not png:
            continue
        assert f"{split}@80-wds" in names
        meta = MetadataCatalog.get(f"{split}@80-wds")
        assert meta.thing_classes == MetadataCatalog.get(split).thing_classes
        stream = ShardStream(meta.wds_shards, meta.wds_shard_samples, shuffle_buffer=0, epochs=1)
        streamed = list(stream)
        assert sorted(r["image_id"] for r in streamed) == sorted(png)
        for r in streamed:
            d = png[r["image_id"]]
            for key in ("height", "width", "orig_height", "orig_width", "scale", "patient_id"):
                assert r[key] == d[key], key
            assert [a["bbox"] for a in r["annotations"]] == [a["bbox"] for a in d["annotations"]]
            np.testing.assert_array_equal(read_record_image(r), read_xray(d["file_name"]))

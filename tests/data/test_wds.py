"""Shard copies: registration, records, streaming split over ranks x workers, resume, bad shards."""

from __future__ import annotations

import json
import operator
import os

import cv2
import numpy as np
import pytest
import torch
import webdataset as wds
from detectron2.data import DatasetCatalog, MetadataCatalog

from cxr.data.datasets.wds_copies import register_wds_copies
from cxr.data.wds import (
    read_film,
    IMAGE_BYTES,
    ShardError,
    ShardStream,
    load_shard_index,
    load_shard_records,
    read_record_image,
    streamed_shards,
)
from tests.conftest import write_tiny_images
from tests.shards import write_shard_copy


@pytest.fixture(scope="module")
def shard_split(tmp_path_factory):
    """16 films of 32 px in 8 shards of 2: (index.json path, original records)."""
    root = str(tmp_path_factory.mktemp("wds"))
    dicts = write_tiny_images(os.path.join(root, "png"), n=16, size=32, seed=1)
    split = write_shard_copy(root, "tiny", 32, "tiny_train", dicts, shard_size=2)
    return os.path.join(split, "index.json"), dicts


def _stream(index_json, **kw) -> ShardStream:
    index = load_shard_index(index_json)
    return ShardStream(index["urls"], index["sizes"], **kw)


def _ids(loader) -> list:
    return [d["image_id"] for d in loader]


def _loader(stream, workers: int, **kw):
    kw.setdefault("batch_size", None)
    return torch.utils.data.DataLoader(stream, num_workers=workers, collate_fn=kw.pop(
        "collate_fn", lambda x: x), **kw)  # fmt: skip


def test_two_ranks_x_two_workers_read_every_sample_exactly_once_per_epoch(shard_split):
    index_json, dicts = shard_split
    seen = []
    for rank in range(2):
        stream = _stream(index_json, seed=3, shuffle_buffer=4, epochs=1, rank=rank, world_size=2)
        seen += _ids(_loader(stream, workers=2))
    assert len(seen) == len(set(seen)) == 16
    assert sorted(seen) == sorted(d["image_id"] for d in dicts)


def test_readers_get_disjoint_shards_and_each_epoch_is_reshuffled(shard_split):
    index_json, dicts = shard_split
    s = _stream(index_json, seed=3, shuffle_buffer=4, epochs=3, rank=0, world_size=1)
    for epoch in range(3):
        parts = [set(s.shards_of(epoch, r, 4)) for r in range(4)]
        assert set().union(*parts) == set(range(8)) and sum(map(len, parts)) == 8
    ids = _ids(s)
    epochs = [ids[i * 16 : (i + 1) * 16] for i in range(3)]
    assert all(sorted(e) == sorted(d["image_id"] for d in dicts) for e in epochs)
    assert epochs[0] != epochs[1] != epochs[2]
    # the order is a function of the seed alone (every rank draws the same shard order)
    assert (
        _ids(_stream(index_json, seed=3, shuffle_buffer=4, epochs=3, rank=0, world_size=1)) == ids
    )


@pytest.mark.parametrize("per_sample", [False, True])
def test_resume_continues_the_stream_where_the_checkpoint_left_it(shard_split, per_sample):
    """Batches after a resume at iteration 5 equal the uninterrupted run's, with 2 workers."""
    index_json, _ = shard_split
    kw = dict(seed=5, shuffle_buffer=3, rank=0, world_size=1, images_per_batch=2,
              per_sample_batches=per_sample)  # fmt: skip
    if per_sample:  # detectron2's aspect-ratio grouping: one sample per fetch, batched after
        loader_kw = dict(batch_size=1, collate_fn=operator.itemgetter(0))
    else:
        loader_kw = dict(batch_size=2, collate_fn=lambda b: [d["image_id"] for d in b])

    def run(start_iter: int, n: int) -> list:
        stream = _stream(index_json, **kw)
        stream.set_start_iter(start_iter)
        it = iter(_loader(stream, workers=2, **loader_kw))
        out = [next(it) for _ in range(n * (2 if per_sample else 1))]
        return [d["image_id"] for d in out] if per_sample else out

    full = run(0, 13)  # past the first 16-sample epoch
    resumed = run(5, 8)
    assert resumed == full[5 * (2 if per_sample else 1) :]


def test_records_and_films_equal_the_originals(shard_split):
    index_json, dicts = shard_split
    records = load_shard_records(index_json)
    by_id = {d["image_id"]: d for d in dicts}
    assert sorted(r["image_id"] for r in records) == sorted(by_id)
    for r in records:
        d = by_id[r["image_id"]]
        assert (r["height"], r["width"]) == (d["height"], d["width"])
        assert [a["bbox"] for a in r["annotations"]] == [a["bbox"] for a in d["annotations"]]
        assert r["file_name"].endswith(f".tar#{r['image_id']}") and IMAGE_BYTES not in r
    # a listed record's film is read from its shard member; a streamed one from its bytes
    np.testing.assert_array_equal(read_record_image(dict(records[3])),
                                  cv2.imread(by_id[records[3]["image_id"]]["file_name"], 0))  # fmt: skip
    # the report's thumbnails read a member by its file_name alone
    np.testing.assert_array_equal(read_film(records[3]["file_name"]),
                                  cv2.imread(by_id[records[3]["image_id"]]["file_name"], 0))  # fmt: skip
    streamed = next(iter(_stream(index_json, shuffle_buffer=0, epochs=1)))
    assert IMAGE_BYTES in streamed
    np.testing.assert_array_equal(read_record_image(streamed),
                                  cv2.imread(by_id[streamed["image_id"]]["file_name"], 0))  # fmt: skip


def test_shard_copies_under_the_data_root_are_registered_with_the_originals_metadata(
    tmp_path, tiny_dataset
):
    dicts = DatasetCatalog.get(tiny_dataset)
    write_shard_copy(str(tmp_path), "tiny_folder", 64, tiny_dataset, dicts, shard_size=3)
    os.makedirs(tmp_path / "tiny_folder@64-wds" / "unfinished")  # no index.json yet: skipped
    name = f"{tiny_dataset}@64-wds"
    wrong = write_shard_copy(str(tmp_path), "wrong", 64, "other", dicts, shard_size=3)
    os.rename(os.path.dirname(wrong), tmp_path / "wrong@32-wds")  # size 64 in its prepare.json
    assert register_wds_copies(str(tmp_path)) == [name]  # the misnamed copy is refused, logged
    meta = MetadataCatalog.get(name)
    assert meta.thing_classes == MetadataCatalog.get(tiny_dataset).thing_classes
    assert (meta.prepared_from, meta.prepared_size, meta.wds_num_samples) == (tiny_dataset, 64, 4)
    assert [os.path.basename(u) for u in meta.wds_shards] == [
        "shard-000000.tar",
        "shard-000001.tar",
    ]
    assert all(os.path.isabs(u) for u in meta.wds_shards)
    assert streamed_shards([name]) == (meta.wds_shards, [3, 1])
    assert [r["image_id"] for r in DatasetCatalog.get(name)] == [d["image_id"] for d in dicts]
    with pytest.raises(ValueError, match="cannot be mixed"):
        streamed_shards([name, tiny_dataset])


def _write_tar(path, samples):
    with wds.TarWriter(str(path)) as sink:
        for s in samples:
            sink.write(s)


def test_sample_without_annotation_member_is_named(tmp_path, shard_split):
    png = cv2.imencode(".png", np.zeros((8, 8), np.uint8))[1].tobytes()
    rec = json.dumps({"image_id": "a", "height": 8, "width": 8, "annotations": []}).encode()
    _write_tar(tmp_path / "shard-000000.tar", [{"__key__": "a", "png": png, "json": rec},
                                              {"__key__": "b", "png": png}])  # fmt: skip
    index = {"dataset": "x", "num_samples": 2, "shards": [{"file": "shard-000000.tar",
             "num_samples": 2}], "task": "detection"}  # fmt: skip
    (tmp_path / "index.json").write_text(json.dumps(index))
    with pytest.raises(ShardError, match=r"shard-000000\.tar: sample 'b', field 'b\.json'"):
        load_shard_records(str(tmp_path / "index.json"))
    with pytest.raises(ShardError, match="no annotation member"):
        list(_stream(str(tmp_path / "index.json"), shuffle_buffer=0, epochs=1))


def test_truncated_shard_is_named(tmp_path, shard_split):
    index_json, dicts = shard_split
    split = tmp_path / "cut"
    write_shard_copy(str(tmp_path), "cut", 32, "cut", dicts[:4], shard_size=4)
    split = tmp_path / "cut@32-wds" / "cut"
    shard = split / "shard-000000.tar"
    data = shard.read_bytes()
    shard.write_bytes(data[: len(data) // 2])
    with pytest.raises(ShardError, match=r"shard-000000\.tar.*(truncated|holds \d samples)"):
        load_shard_records(str(split / "index.json"))
    with pytest.raises(ShardError, match=r"shard-000000\.tar"):
        list(_stream(str(split / "index.json"), shuffle_buffer=2, epochs=1))


def test_too_few_shards_for_the_readers_is_refused(shard_split):
    index_json, _ = shard_split
    stream = _stream(index_json, rank=0, world_size=16)  # 8 shards, 16 readers
    with pytest.raises(ValueError, match="8 shards for 16 readers"):
        next(iter(stream))



def test_endless_stream_over_empty_shards_stops_with_their_names(tmp_path):
    """Every film unreadable when the copy was made: shards without samples. Training must
    fail with their names, not wait forever."""
    for k in range(2):
        _write_tar(tmp_path / f"shard-{k:06d}.tar", [])
    urls = [str(tmp_path / f"shard-{k:06d}.tar") for k in range(2)]
    stream = ShardStream(urls, [0, 0], shuffle_buffer=4, epochs=None, rank=0, world_size=1)
    with pytest.raises(ValueError, match=r"hold no samples \(.*shard-00000[01]\.tar"):
        next(iter(stream))

def test_unregistered_shard_set_name_says_where_cxr_looked(tmp_path, monkeypatch):
    from cxr.data.datasets import builtin

    monkeypatch.setattr(builtin, "_last_root", [str(tmp_path)])
    os.makedirs(tmp_path / "vindr_cxr@1024-wds" / "vindr_cxr_train")  # an unfinished split
    (tmp_path / "vindr_cxr@1024-wds" / "prepare.json").write_text('{"format": "wds", "size": 1024}')
    with pytest.raises(KeyError) as e:
        DatasetCatalog.get("vindr_cxr_train@1024-wds")
    text = str(e.value)
    assert "'vindr_cxr_train@1024-wds' is not registered" in text
    assert str(tmp_path) in text and "vindr_cxr@1024-wds" in text
    assert "vindr_cxr_train has no index.json" in text


def test_visualize_data_draws_a_shard_set_named_by_sample_key(tmp_path, tiny_dataset):
    from tests.tools.util import load_tool

    dicts = DatasetCatalog.get(tiny_dataset)
    write_shard_copy(str(tmp_path), "viz", 64, "viz_split", dicts, shard_size=4)
    index_json = str(tmp_path / "viz@64-wds" / "viz_split" / "index.json")
    DatasetCatalog.register("viz_split@64-wds", lambda: load_shard_records(index_json))
    MetadataCatalog.get("viz_split@64-wds").set(thing_classes=["a", "b"])
    try:
        out = load_tool("visualize_data").main(
            ["--dataset", "viz_split@64-wds", "--output", str(tmp_path / "viz"), "--num", "4"]
        )
    finally:
        DatasetCatalog.remove("viz_split@64-wds")
        MetadataCatalog.remove("viz_split@64-wds")
    assert sorted(os.path.basename(p) for p in out) == [f"{d['image_id']}.png" for d in dicts]
    drawn = cv2.imread(out[0])
    film = cv2.imread(dicts[0]["file_name"], 0)
    assert drawn.shape[:2] == film.shape  # the film, read from its shard member
    assert (drawn[1, 1] == film[1, 1]).all()  # far from the box: the film's own gray


def test_pipe_urls_stream_like_local_paths(shard_split):
    """``pipe:`` URLs (a command writing the tar to stdout, as for object stores)."""
    index_json, _ = shard_split
    index = load_shard_index(index_json)
    pipes = [f"pipe:cat {u}" for u in index["urls"]]
    local = [r["image_id"] for r in ShardStream(index["urls"], index["sizes"], seed=1, epochs=1,
                                                shuffle_buffer=4, rank=0, world_size=1)]  # fmt: skip
    piped = list(ShardStream(pipes, index["sizes"], seed=1, epochs=1, shuffle_buffer=4, rank=0,
                             world_size=1))  # fmt: skip
    assert [r["image_id"] for r in piped] == local
    assert piped[0]["file_name"].startswith("pipe:cat ") and IMAGE_BYTES in piped[0]


def test_missing_local_shards_are_named_before_training(shard_split):
    from cxr.data.wds import check_local_shards

    index = load_shard_index(shard_split[0])
    check_local_shards(index["urls"] + ["pipe:cat elsewhere.tar", "https://host/s.tar"], "t")
    gone = index["urls"][0] + ".moved"
    with pytest.raises(FileNotFoundError, match=r"training \(x\): 1 of 9 shard files are "
                       r"missing: .*shard-000000\.tar\.moved"):  # fmt: skip
        check_local_shards(index["urls"] + [gone], "training (x)")


def test_shards_of_a_cxr_split_without_its_originals_carry_its_classes(tmp_path, shard_split):
    from cxr.data.datasets.builtin import layout_metadata
    from cxr.data.datasets.vindr import VINDR_CLASSES

    _, dicts = shard_split
    assert "vindr_cxr_val" not in DatasetCatalog.list()  # no vindr_cxr/ folder here
    write_shard_copy(str(tmp_path), "vindr_cxr", 32, "vindr_cxr_val", dicts[:2], shard_size=2)
    names = register_wds_copies(str(tmp_path), original_metadata=layout_metadata)
    try:
        assert names == ["vindr_cxr_val@32-wds"]
        meta = MetadataCatalog.get("vindr_cxr_val@32-wds")
        assert meta.thing_classes == list(VINDR_CLASSES) and meta.evaluator_type == "cxr"
        assert layout_metadata("not_cxr_train") == {}
    finally:
        DatasetCatalog.remove("vindr_cxr_val@32-wds")
        MetadataCatalog.remove("vindr_cxr_val@32-wds")

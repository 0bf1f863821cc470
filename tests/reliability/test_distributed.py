"""Distributed correctness on CPU: 2 processes with a gloo process group.

The workers here create the gloo group themselves and set ``comm._LOCAL_PROCESS_GROUP`` as
``launch``'s worker does (``launch`` itself, with cxr.compat's gloo path, is exercised by
tests/tools/test_train_net_two_machines.py); everything else goes through detectron2's
``comm`` as in a multi-GPU run.
"""
from __future__ import annotations

import json
import math
import os

import numpy as np
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

WORLD = 2
NAME = "cxr_rel_dist"
CLASSES = ["a", "b", "c"]
N_IMAGES = 41  # odd: the shards differ in size
SEED = 5


def _data() -> tuple[list[dict], list[dict]]:
    """Ground-truth dicts (XYXY_ABS, patients of 2 images) and per-image predictions."""
    rng = np.random.default_rng(0)
    dicts, preds = [], []
    scores = rng.permutation(10_000)[: N_IMAGES * 6] / 10_000  # distinct: no ties to split
    k = 0
    for i in range(N_IMAGES):
        annos = []
        for _ in range(int(rng.integers(0, 3))):
            x, y = rng.uniform(0, 40, 2)
            w, h = rng.uniform(5, 20, 2)
            annos.append({"bbox": [x, y, x + w, y + h], "bbox_mode": 0,
                          "category_id": int(rng.integers(0, 3))})  # fmt: skip
        dicts.append({"file_name": f"{i}.png", "image_id": i, "height": 64, "width": 64,
                      "patient_id": f"p{i // 2}", "annotations": annos})  # fmt: skip
        n = int(rng.integers(0, 5))
        boxes = [a["bbox"] for a in annos] + [
            list(np.r_[xy, xy + 10]) for xy in rng.uniform(0, 50, (n, 2))
        ]
        boxes = np.asarray(boxes, np.float64).reshape(-1, 4) + rng.normal(0, 1, (len(boxes), 4))
        m = len(boxes)
        preds.append({"image_id": i, "boxes": boxes, "scores": scores[k : k + m],
                      "classes": rng.integers(0, 3, m)})  # fmt: skip
        k += m
    return dicts, preds


def _register(dicts) -> None:
    from detectron2.data import DatasetCatalog, MetadataCatalog

    if NAME not in DatasetCatalog.list():
        DatasetCatalog.register(NAME, lambda: dicts)
        MetadataCatalog.get(NAME).set(thing_classes=CLASSES, evaluator_type="cxr")


def _evaluator(distributed: bool):
    from cxr.evaluation import CXREvaluator

    return CXREvaluator(NAME, None, bootstrap=30, seed=1, plots=False, distributed=distributed)


def _sampler_streams(dicts, take: int) -> dict:
    from detectron2.data.samplers import (
        InferenceSampler,
        RepeatFactorTrainingSampler,
        TrainingSampler,
    )

    from cxr.data.samplers import NegativeRatioSampler

    factors = RepeatFactorTrainingSampler.repeat_factors_from_category_frequency(dicts, 0.5)
    infinite = {
        "TrainingSampler": TrainingSampler(len(dicts), seed=SEED),
        "RepeatFactorTrainingSampler": RepeatFactorTrainingSampler(factors, seed=SEED),
        "NegativeRatioSampler": NegativeRatioSampler(
            [not d["annotations"] for d in dicts], 0.4, seed=SEED
        ),
    }
    out = {k: [int(i) for _, i in zip(range(take), iter(s))] for k, s in infinite.items()}
    out["InferenceSampler"] = [int(i) for i in InferenceSampler(len(dicts))]
    return out


def _worker(rank: int, init_file: str, out_dir: str) -> None:
    import cxr  # noqa: F401
    from detectron2.utils import comm

    from cxr.data.splits import split_patients
    from cxr.fileio import json_safe as to_jsonable

    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank,
                            world_size=WORLD)  # fmt: skip
    comm._LOCAL_PROCESS_GROUP = dist.new_group(list(range(WORLD)))
    assert comm.get_world_size() == WORLD and comm.get_rank() == rank
    dicts, preds = _data()
    _register(dicts)
    ev = _evaluator(distributed=True)
    ev.reset()
    ev.add_predictions([p for p in preds if p["image_id"] % WORLD == rank])  # half each
    res = ev.evaluate()
    full = to_jsonable(ev.last_result.metrics) if ev.last_result is not None else None
    out = {"metrics": res, "full": full, "streams": _sampler_streams(dicts, 30),
           "split": split_patients(dicts, seed=0)}  # fmt: skip
    with open(os.path.join(out_dir, f"rank{rank}.json"), "w") as f:
        json.dump(out, f, default=float)
    comm.synchronize()
    dist.destroy_process_group()


def _same(a, b) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return (math.isnan(a) and math.isnan(b)) or a == b
    return a == b


def test_two_gloo_ranks_equal_one_process_and_shard_disjointly(tmp_path):
    torch.set_num_threads(1)
    mp.spawn(_worker, args=(str(tmp_path / "init"), str(tmp_path)), nprocs=WORLD, join=True)
    ranks = [json.load(open(tmp_path / f"rank{r}.json")) for r in range(WORLD)]

    dicts, preds = _data()
    _register(dicts)
    ev = _evaluator(distributed=False)
    ev.reset()
    ev.add_predictions(preds)
    single = json.loads(json.dumps(ev.evaluate(), default=float))["cxr"]
    from cxr.fileio import json_safe as to_jsonable

    single_full = json.loads(json.dumps(to_jsonable(ev.last_result.metrics), default=float))

    # CXREvaluator: rank 0 returns exactly the single-process metrics; others return {}.
    assert ranks[1]["metrics"] == {}
    dist_metrics = ranks[0]["metrics"]["cxr"]
    assert dist_metrics.keys() == single.keys() and len(single) > 30
    bad = {k: (dist_metrics[k], single[k]) for k in single if not _same(dist_metrics[k], single[k])}
    assert not bad
    # The whole metrics.json content, bootstrap CIs (seeded) included, is identical.
    assert ranks[1]["full"] is None
    assert ranks[0]["full"] == single_full
    assert "ci" in json.dumps(single_full)

    # Samplers: each rank takes its own positions of the one seeded global stream.
    from detectron2.utils import comm

    assert comm.get_world_size() == 1
    glob = _sampler_streams(dicts, 30 * WORLD)
    for name in ("TrainingSampler", "RepeatFactorTrainingSampler", "NegativeRatioSampler"):
        for r in range(WORLD):
            assert ranks[r]["streams"][name] == glob[name][r::WORLD], name
    # InferenceSampler: disjoint contiguous shards covering every image once.
    shards = [ranks[r]["streams"]["InferenceSampler"] for r in range(WORLD)]
    assert not set(shards[0]) & set(shards[1])
    assert sorted(shards[0] + shards[1]) == list(range(N_IMAGES))
    # Patient splits: the same on every rank, no patient in two splits.
    assert ranks[0]["split"] == ranks[1]["split"]
    split = ranks[0]["split"]
    seen = [p for s in split.values() for p in s]
    assert len(seen) == len(set(seen)) == N_IMAGES // 2 + 1

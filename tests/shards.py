"""Shard copies in the prepared-data format, written from registered records for the tests.

Format (as ``tools/prepare_data.py --format wds`` writes it): ``<root>/<folder>@<size>-wds/``
with ``prepare.json`` and, per split, ``<name>/shard-NNNNNN.tar`` (``webdataset.TarWriter``,
members ``<key>.png`` and ``<key>.json``) and ``<name>/index.json``.
"""

from __future__ import annotations

import json
import os

import cv2
import webdataset as wds


def sample_key(image_id) -> str:
    """``image_id`` made safe as a sample key (no dots, no slashes)."""
    return str(image_id).replace(".", "_").replace("/", "_").replace("\\", "_")


def _sample(d: dict) -> dict:
    with open(d["file_name"], "rb") as f:
        png = f.read()
    rec = {k: v for k, v in d.items() if k not in ("file_name", "image")}
    if "height" not in rec:  # classification records: size from the film
        rec["height"], rec["width"] = cv2.imread(d["file_name"], cv2.IMREAD_UNCHANGED).shape[:2]
    rec.update(orig_height=rec["height"], orig_width=rec["width"], scale=1.0,
               source_file=d["file_name"])  # fmt: skip
    rec["annotations"] = [
        {"bbox": [float(v) for v in a["bbox"]], "bbox_mode": 0, "category_id": a["category_id"]}
        for a in d.get("annotations", [])
    ]
    return {"__key__": sample_key(d["image_id"]), "png": png, "json": json.dumps(rec).encode()}


def write_shard_copy(
    root: str,
    folder: str,
    size: int,
    name: str,
    records: list[dict],
    shard_size: int,
    task: str = "detection",
) -> str:
    """Write the split ``name`` of ``records`` (PNG files of ``size`` px) as shards of at most
    ``shard_size`` samples under ``<root>/<folder>@<size>-wds/``; returns the split folder."""
    copy_dir = os.path.join(root, f"{folder}@{size}-wds")
    split_dir = os.path.join(copy_dir, name)
    os.makedirs(split_dir, exist_ok=True)
    shards = []
    for start in range(0, len(records), shard_size):
        file = f"shard-{len(shards):06d}.tar"
        chunk = records[start : start + shard_size]
        with wds.TarWriter(os.path.join(split_dir, file)) as sink:
            for d in chunk:
                sink.write(_sample(d))
        shards.append({"file": file, "num_samples": len(chunk)})
    index = {"dataset": name, "num_samples": len(records), "shards": shards, "task": task}
    with open(os.path.join(split_dir, "index.json"), "w") as f:
        json.dump(index, f)
    info = {"format": "wds", "size": size, "bit_depth": 8, "shard_size": shard_size,
            "datasets": [name], "source_folder": folder}  # fmt: skip
    prepare = os.path.join(copy_dir, "prepare.json")
    if os.path.isfile(prepare):
        with open(prepare) as f:
            info["datasets"] = sorted(set(json.load(f)["datasets"]) | {name})
    with open(prepare, "w") as f:
        json.dump(info, f)
    return split_dir

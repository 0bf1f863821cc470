"""Phantom classification set: rewritten Data_Entry rows, determinism, the render cache and the
deletion of an earlier render's images (the cache / Data_Entry code it shares with the box set)."""

from __future__ import annotations

import hashlib
import os

import pandas as pd
from dataformats import NIH_BBOX_HEADER, NIH_ENTRY_HEADER

from cxr.data.phantom_cls import CLS_MANIFEST, generate_phantom_classification

_ENTRY_ROWS = [  # Image Index, Finding Labels: drawable, partly drawable, none, box-list image
    ("00000001_000.png", "Nodule"),
    ("00000003_000.png", "Mass|Hernia"),
    ("00000004_000.png", "Hernia"),
    ("00000005_000.png", "Infiltration|Nodule"),
    ("00000006_000.png", "No Finding"),
    ("00000007_000.png", "Mass"),
]


def _inputs(tmp_path) -> tuple[str, str]:
    bbox = tmp_path / "BBox_List_2017.csv"
    bbox.write_text(NIH_BBOX_HEADER + "00000001_000.png,Nodule,100,200,60,50,,\n"
                    "00000001_000.png,Mass,500,300,200,180,,\n"
                    "00000002_000.png,Infiltrate,300,400,250,200,,\n")  # fmt: skip
    entry = tmp_path / "Data_Entry_2017_v2020.csv"
    entry.write_text(NIH_ENTRY_HEADER + "".join(
        f"{n},{f},0,{n[:8]},50,M,PA,2500,2048,0.143,0.139\n" for n, f in _ENTRY_ROWS))  # fmt: skip
    return str(bbox), str(entry)


def _digest(folder) -> dict:
    return {os.path.relpath(os.path.join(r, f), folder):
            hashlib.sha256(open(os.path.join(r, f), "rb").read()).hexdigest()
            for r, _, fs in os.walk(folder) for f in fs}  # fmt: skip


def test_labels_sizes_cache_and_stale_images(tmp_path):
    bbox, entry = _inputs(tmp_path)
    out = tmp_path / "cls"
    m = generate_phantom_classification(str(out), bbox, entry, 5, size=64, seed=1, workers=1)
    assert m["skipped"] is False and m["num_images"] == 5
    rows = pd.read_csv(out / "Data_Entry_2017_v2020.csv", dtype=str, keep_default_na=False)
    assert "00000001_000.png" not in set(rows.iloc[:, 0])  # box-list images are never drawn
    assert sorted(os.listdir(out / "images")) == sorted(rows.iloc[:, 0])
    labels = dict(zip(rows.iloc[:, 0], rows.iloc[:, 1]))
    assert labels["00000003_000.png"] == "Mass" and labels["00000004_000.png"] == "No Finding"
    assert labels["00000005_000.png"] == "Infiltration|Nodule"
    assert set(rows.iloc[:, 7]) == set(rows.iloc[:, 8]) == {"64"}
    assert set(rows.iloc[:, 9]) == {f"{0.143 * 2500 / 64:.6f}"}  # physical extent kept
    assert set(rows.iloc[:, 10]) == {f"{0.139 * 2048 / 64:.6f}"}
    assert m["positives"]["Mass"] == 2 and m["no_finding"] == 2
    again = generate_phantom_classification(str(out), bbox, entry, 5, size=64, seed=1)
    assert again["skipped"] is True
    # fewer images: a new render, the earlier render's extra image deleted, same bytes as a
    # render into an empty folder
    fewer = generate_phantom_classification(str(out), bbox, entry, 4, size=64, seed=1, workers=1)
    assert fewer["skipped"] is False and len(os.listdir(out / "images")) == 4
    fresh = tmp_path / "fresh"
    generate_phantom_classification(str(fresh), bbox, entry, 4, size=64, seed=1, workers=1)
    assert _digest(out) == _digest(fresh) and os.path.isfile(out / CLS_MANIFEST)

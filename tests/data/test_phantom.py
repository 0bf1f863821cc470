"""Phantom dataset: determinism, NIH-format outputs, per-class lesions, negatives, caching."""
from __future__ import annotations

import gzip
import hashlib
import os

import cv2
import numpy as np
import pandas as pd
import pytest

from cxr.data.phantom import LESION_RENDERERS, NIH_SIZE, generate_phantom_dataset, render_phantom

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
NIH_BBOX = os.path.join(REPO, "datasets", "nih", "BBox_List_2017.csv.gz")
NIH_ENTRY = os.path.join(REPO, "datasets", "nih", "Data_Entry_2017_v2020.csv.gz")
CLASSES = [
    "Atelectasis", "Cardiomegaly", "Effusion", "Infiltrate",
    "Mass", "Nodule", "Pneumonia", "Pneumothorax",
]  # fmt: skip
SIZE = 128
NEG = 3


def _first_line(path: str) -> str:
    with gzip.open(path, "rt", newline="") as f:
        return f.readline().rstrip("\r\n")


@pytest.fixture(scope="module")
def small_nih(tmp_path_factory) -> tuple[str, str, pd.DataFrame]:
    """Real NIH rows (2 box images per class, their Data_Entry rows and their patients'
    ``No Finding`` rows) written with the real headers."""
    d = tmp_path_factory.mktemp("nih_small")
    raw = pd.read_csv(NIH_BBOX, dtype=str, keep_default_na=False)
    per_class = raw.groupby(raw.columns[1], sort=True).head(2)
    images = set(per_class.iloc[:, 0])
    rows = raw[raw.iloc[:, 0].isin(images)]  # every box of the chosen images
    bbox = os.path.join(d, "BBox_List_2017.csv")
    with open(bbox, "w", newline="") as f:
        f.write(_first_line(NIH_BBOX) + "\n")
        rows.iloc[:, :6].to_csv(f, header=False, index=False, lineterminator="\n")
    entry = pd.read_csv(NIH_ENTRY, dtype=str, keep_default_na=False)
    patients = {n.split("_")[0] for n in images}
    keep = entry.iloc[:, 0].isin(images) | (
        (entry.iloc[:, 1] == "No Finding") & entry.iloc[:, 0].str.split("_").str[0].isin(patients)
    )
    entry_csv = os.path.join(d, "Data_Entry_2017_v2020.csv")
    with open(entry_csv, "w", newline="") as f:
        f.write(_first_line(NIH_ENTRY) + "\n")
        entry[keep].to_csv(f, header=False, index=False, lineterminator="\n")
    return bbox, entry_csv, rows


@pytest.fixture(scope="module")
def rendered(small_nih, tmp_path_factory) -> tuple[str, dict]:
    bbox, entry, _ = small_nih
    out = str(tmp_path_factory.mktemp("phantom_a"))
    # Two spawned workers here; the other renders run in-process and must match byte for byte.
    m = generate_phantom_dataset(out, bbox, entry, size=SIZE, seed=3, num_negatives=NEG, workers=2)
    return out, m


def _digest(folder: str) -> dict[str, str]:
    out = {}
    for root, _, files in os.walk(folder):
        for f in files:
            p = os.path.join(root, f)
            with open(p, "rb") as fh:
                out[os.path.relpath(p, folder)] = hashlib.sha256(fh.read()).hexdigest()
    return out


def test_same_seed_same_bytes(small_nih, rendered, tmp_path):
    bbox, entry, _ = small_nih
    out_a, _ = rendered
    out_b = str(tmp_path / "b")
    generate_phantom_dataset(out_b, bbox, entry, size=SIZE, seed=3, num_negatives=NEG, workers=1)
    a, b = _digest(out_a), _digest(out_b)
    assert len(a) > 10 and a == b
    out_c = str(tmp_path / "c")
    generate_phantom_dataset(out_c, bbox, entry, size=SIZE, seed=4, num_negatives=NEG, workers=1)
    c = _digest(out_c)
    changed = [k for k in a if k.startswith("images") and k in c and c[k] != a[k]]
    assert changed, "a different seed must change the pixels"


def test_boxes_scaled_and_inside(small_nih, rendered):
    _, _, rows = small_nih
    out, manifest = rendered
    with open(os.path.join(out, "BBox_List_2017.csv")) as f:
        assert f.readline().rstrip("\n") == _first_line(NIH_BBOX)
    got = pd.read_csv(os.path.join(out, "BBox_List_2017.csv")).iloc[:, :6]
    assert len(got) == len(rows) == manifest["num_boxes"]
    src = rows.iloc[:, 2:6].astype(float).to_numpy()
    np.testing.assert_allclose(got.iloc[:, 2:6].to_numpy(), src * SIZE / NIH_SIZE, atol=1e-5)
    assert list(got.iloc[:, 0]) == list(rows.iloc[:, 0])
    x, y, w, h = got.iloc[:, 2:6].to_numpy().T
    assert (x >= 0).all() and (y >= 0).all() and (x + w <= SIZE).all() and (y + h <= SIZE).all()
    for name in got.iloc[:, 0].unique():
        img = cv2.imread(os.path.join(out, "images", name), cv2.IMREAD_UNCHANGED)
        assert img.dtype == np.uint8 and img.shape == (SIZE, SIZE)


def test_data_entry_and_negatives(small_nih, rendered):
    _, entry_csv, rows = small_nih
    out, manifest = rendered
    with open(os.path.join(out, "Data_Entry_2017_v2020.csv")) as f:
        assert f.readline().rstrip("\n") == _first_line(NIH_ENTRY)
    entry = pd.read_csv(os.path.join(out, "Data_Entry_2017_v2020.csv"))
    src = pd.read_csv(entry_csv).set_index("Image Index")
    box_images = set(rows.iloc[:, 0])
    negatives = set(entry["Image Index"]) - box_images
    assert len(negatives) == NEG == manifest["num_negatives"]
    assert len(entry) == len(box_images) + NEG == manifest["num_images"]
    assert (entry.loc[entry["Image Index"].isin(negatives), "Finding Labels"] == "No Finding").all()
    patients = {n.split("_")[0] for n in box_images}
    assert {n.split("_")[0] for n in negatives} <= patients
    bbox = pd.read_csv(os.path.join(out, "BBox_List_2017.csv"))
    assert not set(bbox.iloc[:, 0]) & negatives  # negatives carry no box row
    assert sorted(os.listdir(os.path.join(out, "images"))) == sorted(entry["Image Index"])
    assert (entry.iloc[:, 7] == SIZE).all() and (entry.iloc[:, 8] == SIZE).all()
    orig = src.loc[entry["Image Index"]]
    np.testing.assert_allclose(  # physical width kept: spacing * pixels is unchanged
        entry.iloc[:, 9].to_numpy() * SIZE, orig.iloc[:, 8] * orig.iloc[:, 6], rtol=1e-5
    )
    for neg in negatives:
        img = cv2.imread(os.path.join(out, "images", neg), cv2.IMREAD_UNCHANGED)
        assert img.shape == (SIZE, SIZE)


@pytest.mark.parametrize("label", CLASSES)
def test_lesion_changes_only_its_box(label):
    assert set(CLASSES) <= set(LESION_RENDERERS.names())
    size = 256
    raw = pd.read_csv(NIH_BBOX, dtype=str).iloc[:, :6]
    row = raw[raw.iloc[:, 1] == label].iloc[0]
    x, y, w, h = (float(v) * size / NIH_SIZE for v in row.iloc[2:6])
    box = (label, x, y, x + w, y + h)
    seed = np.random.SeedSequence([0, 7])
    with_lesion = render_phantom([box], size, np.random.default_rng(seed)).astype(int)
    without = render_phantom([], size, np.random.default_rng(seed)).astype(int)
    diff = np.abs(with_lesion - without)
    inside = np.zeros((size, size), bool)
    inside[int(y) : int(np.ceil(y + h)), int(x) : int(np.ceil(x + w))] = True
    assert diff[inside].mean() > 4.0, f"{label}: lesion invisible in its box"
    if label != "Cardiomegaly":  # the enlarged heart replaces the normal one, also outside
        grown = cv2.dilate(inside.astype(np.uint8), np.ones((7, 7), np.uint8)).astype(bool)
        assert diff[~grown].max() == 0, f"{label}: pixels changed outside the box"


def test_rerun_is_cached_and_args_invalidate(small_nih, rendered, tmp_path):
    bbox, entry, _ = small_nih
    out, _ = rendered
    again = generate_phantom_dataset(out, bbox, entry, size=SIZE, seed=3, num_negatives=NEG)
    assert again["skipped"] is True
    other = str(tmp_path / "o")
    generate_phantom_dataset(other, bbox, entry, size=SIZE, seed=3, num_negatives=NEG, workers=1)
    fewer = generate_phantom_dataset(
        other, bbox, entry, size=SIZE, seed=3, num_negatives=1, workers=1
    )
    assert fewer["skipped"] is False
    assert len(os.listdir(os.path.join(other, "images"))) == fewer["num_images"]


def test_bad_row_names_file_row_field(tmp_path):
    bad = tmp_path / "BBox_List_2017.csv"
    rows = "00000001_000.png,Nodule,10,10,5,5\n00000001_000.png,Nodule,1,2,0,4\n"
    bad.write_text(_first_line(NIH_BBOX) + "\n" + rows)
    with pytest.raises(ValueError, match=r"BBox_List_2017\.csv, row 3, field 'w'"):
        generate_phantom_dataset(str(tmp_path / "o"), str(bad), NIH_ENTRY, size=64)
    bad.write_text(_first_line(NIH_BBOX) + "\n00000001_000.png,Fracture,10,10,5,5\n")
    with pytest.raises(ValueError, match="row 2, field 'Finding Label'"):
        generate_phantom_dataset(str(tmp_path / "o"), str(bad), NIH_ENTRY, size=64)


def test_loads_through_load_nih(small_nih, rendered):
    from cxr.data.datasets.nih import load_nih

    _, _, rows = small_nih
    out, manifest = rendered
    dicts = load_nih(
        os.path.join(out, "BBox_List_2017.csv"),
        os.path.join(out, "images"),
        data_entry_csv=os.path.join(out, "Data_Entry_2017_v2020.csv"),
        num_negatives=NEG,
    )
    assert len(dicts) == manifest["num_images"]
    assert sum(len(d["annotations"]) for d in dicts) == len(rows)
    assert sum(1 for d in dicts if not d["annotations"]) == NEG
    for d in dicts:
        assert (d["height"], d["width"]) == (SIZE, SIZE) and os.path.isfile(d["file_name"])
        for a in d["annotations"]:
            x0, y0, x1, y1 = a["bbox"]
            assert 0 <= x0 < x1 <= SIZE and 0 <= y0 < y1 <= SIZE


def test_outputs_have_plain_open_modes(rendered):
    out, _ = rendered
    umask = os.umask(0)
    os.umask(umask)
    for rel in _digest(out):
        mode = os.stat(os.path.join(out, rel)).st_mode & 0o777
        assert mode == 0o666 & ~umask, rel


class _Tty:
    """A text stream that says it is a terminal."""

    def __init__(self):
        self.text = ""

    def write(self, s):
        self.text += s

    def flush(self):
        pass

    def isatty(self):
        return True


def test_progress_bar_only_on_a_terminal(small_nih, tmp_path, monkeypatch, capsys):
    from cxr.data import phantom

    rendered = []
    monkeypatch.setattr(phantom, "render_job", rendered.append)
    jobs = [("a.png",), ("b.png",), ("c.png",)]
    phantom.render_all(jobs, workers=1)  # stderr captured by pytest: not a terminal
    assert capsys.readouterr().err == "" and len(rendered) == 3
    tty = _Tty()
    monkeypatch.setattr("sys.stderr", tty)
    phantom.render_all(jobs, workers=1)
    assert "phantom images" in tty.text and "3/3" in tty.text

"""Atomic writes: plain-open modes, all-or-nothing on failure, CSV and strict-JSON helpers."""
from __future__ import annotations

import csv
import json
import math
import os
import stat

import numpy as np
import pytest

from cxr.fileio import (
    atomic_open,
    json_safe,
    write_bytes_atomic,
    write_csv_atomic,
    write_json_atomic,
    write_png_atomic,
    write_text_atomic,
)


@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002])
def test_modes_are_those_of_a_plain_open(tmp_path, umask):
    old = os.umask(umask)
    try:
        with open(tmp_path / "plain.txt", "w") as f:
            f.write("x")
        write_text_atomic(str(tmp_path / "t.txt"), "x")
        write_csv_atomic(str(tmp_path / "c.csv"), ["a"], [[1]])
        write_json_atomic(str(tmp_path / "j.json"), {})
        with atomic_open(str(tmp_path / "s.csv"), "w", newline="") as f:
            f.write("a\n")
    finally:
        os.umask(old)
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in tmp_path.iterdir()}
    assert set(modes.values()) == {0o666 & ~umask}, modes


def test_failure_keeps_the_old_file_and_leaves_no_temp(tmp_path):
    path = tmp_path / "out.csv"
    write_text_atomic(str(path), "old")
    with pytest.raises(RuntimeError):
        with atomic_open(str(path), "w") as f:
            f.write("half of a new file")
            raise RuntimeError("killed mid-write")
    assert path.read_text() == "old" and os.listdir(tmp_path) == ["out.csv"]
    with pytest.raises(ValueError, match="mode"):
        with atomic_open(str(path), "a"):
            pass


def test_csv_round_trips_through_the_csv_module(tmp_path):
    rows = [["a.png", "Mass", 0.5], ["b, c.png", 'quote "q"', ""]]
    path = tmp_path / "sub" / "rows.csv"  # the folder is created
    write_csv_atomic(str(path), ["file", "class", "score"], rows)
    with open(path, newline="", encoding="utf-8") as f:
        read = list(csv.reader(f))
    assert read[0] == ["file", "class", "score"]
    assert read[1:] == [["a.png", "Mass", "0.5"], ["b, c.png", 'quote "q"', ""]]


def test_json_safe_gives_strict_json(tmp_path):
    obj = {1: [float("nan"), np.float32(0.5), np.int64(3), math.inf], "a": np.array([1.0, np.nan]),
           "b": (np.bool_(True), None, "s")}  # fmt: skip
    with pytest.raises(ValueError):
        write_json_atomic(str(tmp_path / "x.json"), {"v": float("nan")})
    write_json_atomic(str(tmp_path / "x.json"), json_safe(obj))
    assert json.loads((tmp_path / "x.json").read_text()) == {
        "1": [None, 0.5, 3, None], "a": [1.0, None], "b": [True, None, "s"]
    }  # fmt: skip
    write_bytes_atomic(str(tmp_path / "x.json"), b"\x00")
    assert (tmp_path / "x.json").read_bytes() == b"\x00"


def test_read_json_names_the_file_and_what_it_is(tmp_path):
    from cxr.fileio import read_json

    good = tmp_path / "t.json"
    good.write_text('{"a": [1, 2]}', encoding="utf-8")
    assert read_json(str(good)) == {"a": [1, 2]}
    with pytest.raises(FileNotFoundError, match=r"thresholds file not found: .*missing\.json"):
        read_json(str(tmp_path / "missing.json"), "thresholds")
    bad = tmp_path / "bad.json"
    bad.write_bytes(b"{not json")
    with pytest.raises(ValueError, match=r"bad\.json: not valid JSON"):
        read_json(str(bad))


def test_png_round_trips_through_opencv(tmp_path):
    import cv2

    rng = np.random.default_rng(0)
    gray = rng.integers(0, 256, (17, 23), dtype=np.uint8)
    bgr = rng.integers(0, 256, (17, 23, 3), dtype=np.uint8)
    write_png_atomic(str(tmp_path / "g.png"), gray)
    write_png_atomic(str(tmp_path / "c.png"), bgr[:, ::-1], [cv2.IMWRITE_PNG_COMPRESSION, 9])
    np.testing.assert_array_equal(cv2.imread(str(tmp_path / "g.png"), cv2.IMREAD_UNCHANGED), gray)
    np.testing.assert_array_equal(cv2.imread(str(tmp_path / "c.png")), bgr[:, ::-1])
    assert sorted(os.listdir(tmp_path)) == ["c.png", "g.png"]  # no temp files left

"""tools/visualize_data.py draws the boxes where the annotations say."""

from __future__ import annotations

import os
import stat
import sys

import cv2
import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(REPO, "tools"))

import visualize_data  # noqa: E402


def test_annotation_and_dataloader(tiny_dataset, tmp_path):
    from detectron2.data import DatasetCatalog

    rec = DatasetCatalog.get(tiny_dataset)[0]
    out = visualize_data.main(
        ["--dataset", tiny_dataset, "--output", str(tmp_path / "a"), "--num", "2"]
    )
    assert len(out) == 2
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(os.stat(out[0]).st_mode) == 0o666 & ~umask
    assert sorted(os.listdir(tmp_path / "a")) == sorted(os.path.basename(p) for p in out)
    img = cv2.imread(out[0])
    x0, y0, x1, y1 = (int(v) for v in rec["annotations"][0]["bbox"])
    gray = cv2.imread(rec["file_name"], cv2.IMREAD_GRAYSCALE)
    assert img.shape[:2] == gray.shape
    # The box outline is colored (channels differ); far from it the image stays gray.
    assert np.ptp(img[y0, (x0 + x1) // 2].astype(int)) > 30
    assert np.ptp(img[1, 1].astype(int)) == 0
    out = visualize_data.main([
        "--dataset", tiny_dataset, "--output", str(tmp_path / "b"), "--source", "dataloader",
        "--num", "1", "INPUT.MIN_SIZE_TRAIN", "(32,)", "INPUT.MAX_SIZE_TRAIN", "32",
        "INPUT.RANDOM_FLIP", "none",
    ])  # fmt: skip
    assert cv2.imread(out[0]).shape[:2] == (32, 32)

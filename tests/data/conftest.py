"""Generated files in the real public formats: DICOMs, NIH / VinDr / RSNA CSVs."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from dataformats import NIH_BBOX_HEADER, NIH_ENTRY_HEADER  # noqa: E402

# Shared 2-core machine: OpenCV single-threaded in these tests. This also keeps forked workers
# that call cv2.setNumThreads safe: a fork child changing the thread count after the parent
# started OpenCV's pthreads pool deadlocks (seen with the phantom renderer's Pool).
cv2.setNumThreads(1)


@pytest.fixture
def nih_files(tmp_path):
    """A 3-image NIH-format set (2 patients) with real headers, 64 px PNGs on disk.

    Returns (bbox_csv, image_root, data_entry_csv).
    """
    import cv2

    root = tmp_path / "images"
    root.mkdir()
    for name in ("00000001_000.png", "00000001_001.png", "00000002_000.png", "00000002_001.png"):
        cv2.imwrite(str(root / name), np.full((64, 80), 100, np.uint8))
    bbox = tmp_path / "BBox_List_2017.csv"
    bbox.write_text(
        NIH_BBOX_HEADER
        + "00000001_000.png,Nodule,10.5,20,8,6,,\n"
        + "00000001_000.png,Infiltrate,1,2,30,30,,\n"
        + "00000002_000.png,Mass,40,10,20,20,,\n"
    )
    entry = tmp_path / "Data_Entry_2017_v2020.csv"
    entry.write_text(
        NIH_ENTRY_HEADER
        + "00000001_000.png,Nodule|Infiltration,0,1,50,M,PA,2500,2048,0.14,0.14\n"
        + "00000001_001.png,No Finding,1,1,51,M,PA,2500,2048,0.14,0.14\n"
        + "00000002_000.png,Mass,0,2,60,F,AP,2500,2048,0.14,0.14\n"
        + "00000002_001.png,No Finding,1,2,60,F,AP,2500,2048,0.14,0.14\n"
        + "00000003_000.png,No Finding,0,3,30,F,PA,2500,2048,0.14,0.14\n"
    )
    return str(bbox), str(root), str(entry)

"""report.html in a real browser (headless Chromium): what a person sees.

Skipped, with the install command, where Chromium is missing; CI (.ci/run) installs it.
"""

import os
import re
import shutil
import subprocess

import cv2
import pytest

from cxr.evaluation.html_report import write_html_report
from cxr.evaluation.medical import compute_medical_metrics

from ..evaluation.report_case import (
    CLASS_NAMES,
    EXPECTED_FALSE_POSITIVES,
    EXPECTED_MISSED,
    THRESHOLD,
    build_report_case,
)
from ..evaluation.test_html_report import _gallery, _parse

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None,
    reason="Chromium not found: install it (Debian: apt-get install -y chromium) "
    "to run the browser test",
)


def _chromium(profile: str, *args: str) -> subprocess.CompletedProcess:
    """Headless Chromium with no network, GPU, first-run or component updates."""
    cmd = [
        CHROMIUM,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--no-first-run",
        f"--user-data-dir={profile}",
        *args,
    ]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=True)


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    root = tmp_path_factory.mktemp("browser")
    ds, files = build_report_case(str(root / "films"))
    res = compute_medical_metrics(ds, CLASS_NAMES, cm_threshold=THRESHOLD, bootstrap=30)
    path = write_html_report(str(root / "report.html"), res, CLASS_NAMES, ds, files)
    return path, res, str(root)


def test_report_renders_with_every_image_and_the_known_cases(report):
    path, res, root = report
    dom = _chromium(
        os.path.join(root, "profile_dom"),
        "--virtual-time-budget=10000",
        "--dump-dom",
        "file://" + path,
    ).stdout
    body = re.search(r"<body([^>]*)>", dom)
    assert body, dom[:500]
    loaded = re.search(r'data-images-loaded="(\d+)"', body.group(1))
    total = re.search(r'data-images-total="(\d+)"', body.group(1))
    assert loaded and total, "the page's load check did not run"
    assert int(total.group(1)) == 4 + 6  # four plots, six gallery cases
    assert loaded.group(1) == total.group(1), "broken images on the page"
    page = _parse(dom)
    text = " ".join(page.text)
    m = res.metrics
    for v in (m["coco"]["AP50"], m["voc_map40"], m["froc"]["cpm"]):
        assert f"{v:.3f}" in text
    assert _gallery(page, "false_positive") == EXPECTED_FALSE_POSITIVES
    assert _gallery(page, "missed") == EXPECTED_MISSED


def test_report_screenshot_is_not_blank(report):
    path, _, root = report
    shot = os.path.join(root, "shot.png")
    _chromium(
        os.path.join(root, "profile_shot"),
        "--hide-scrollbars",
        "--window-size=1200,1600",
        "--virtual-time-budget=10000",
        f"--screenshot={shot}",
        "file://" + path,
    )
    img = cv2.imread(shot)
    assert img is not None and img.shape[:2] == (1600, 1200)
    assert img.std() > 20  # text, plots and thumbnails, not an empty page

"""The page in a real browser (headless Chromium driven by Selenium), against a real
tools/serve.py: a person picks a film through the file input and reads the findings table and
the boxes; the keyboard alone switches classes and moves the score sliders.

Skipped, with the install command, where Chromium or its driver is missing; CI (.ci/run)
installs both. Set CXR_APP_SCREENSHOT=docs/images/app.png to refresh the screenshot of
docs/app.md.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import time

import cv2
import pytest

from .conftest import PATIENT_ID, PATIENT_NAME, THRESHOLDS, ServerProcess

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None or DRIVER is None,
    reason="Chromium or chromedriver not found: install them (Debian: apt-get install -y "
    "chromium chromium-driver) to run the browser test",
)
CM_THRESHOLD = 0.3  # the demo config's CXR.EVAL.CM_THRESHOLD, stored in the export


@pytest.fixture(scope="module")
def server(model_path, tmp_path_factory):
    proc = ServerProcess(model_path, tmp_path_factory.mktemp("browser_server"))
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    os.environ.setdefault("SE_OFFLINE", "true")  # Selenium Manager: no download, no stats
    os.environ.setdefault("SE_AVOID_STATS", "true")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--disable-background-networking", "--disable-component-update",
                "--no-first-run", "--window-size=1280,1000",
                f"--user-data-dir={tmp_path_factory.mktemp('chromium_profile')}"):  # fmt: skip
        opts.add_argument(arg)
    driver = webdriver.Chrome(service=Service(DRIVER), options=opts)
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


def _wait_state(driver, state: str, timeout: float = 60.0) -> None:
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(driver, timeout).until(
        lambda d: d.find_element("tag name", "body").get_attribute("data-state") in (state, "error")
    )
    body = driver.find_element("tag name", "body")
    assert body.get_attribute("data-state") == state, driver.find_element("id", "status").text


def _upload(driver, url: str, path: str) -> None:
    driver.get(url)
    _wait_state(driver, "ready")
    driver.find_element("id", "file").send_keys(path)
    _wait_state(driver, "done")


def _table(driver) -> list[list[str]]:
    rows = driver.find_elements("css selector", "#findings tbody tr")
    return [[c.text for c in r.find_elements("css selector", "th, td")] for r in rows]


def _boxes(driver) -> list[str]:
    return [r.get_attribute("data-class") for r in
            driver.find_elements("css selector", "#boxes rect.box")]  # fmt: skip


def test_page_shows_the_predict_tools_findings_and_boxes(
    server, browser, films, reference, model_path
):
    _upload(browser, server.url + "/", films["png"])
    ref = reference["png"]
    thr = {n: THRESHOLDS.get(n, CM_THRESHOLD) for n in ref["scores"]}
    expected = sorted(ref["scores"].items(), key=lambda kv: -kv[1])
    positive = [n for n, s in expected if s > 0 and s >= thr[n]]
    assert positive and ";".join(sorted(positive, key=list(thr).index)) == ref["findings"]
    assert _table(browser) == [[n, f"{s:.3f}", f"{thr[n]:.3f}",
                                "positive" if n in positive else "negative"]
                               for n, s in expected]  # fmt: skip
    # boxes drawn at first: predictions.csv rows at or above their class's operating point
    drawn = sorted(c for c, s, *_ in ref["boxes"] if float(s) >= thr[c])
    assert sorted(_boxes(browser)) == drawn and len(drawn) > 0
    assert browser.find_element("id", "box-count").text == f"{len(drawn)} boxes drawn."
    card = browser.find_element("id", "card").text
    with open(model_path, "rb") as f:
        assert hashlib.sha256(f.read()).hexdigest() in card
    assert "Not for diagnostic use" in browser.find_element("tag name", "header").text
    assert "ms" in browser.find_element("id", "timing").text
    shot = os.environ.get("CXR_APP_SCREENSHOT")
    path = shot or os.path.join(server.workdir.parent, "app.png")
    browser.set_window_size(1280, 1500)
    browser.save_screenshot(path)
    img = cv2.imread(path)
    assert img is not None and img.std() > 20  # film, boxes and text, not a blank page


def test_keyboard_alone_switches_classes_and_moves_sliders(server, browser, films, reference):
    from selenium.webdriver.common.keys import Keys

    _upload(browser, server.url + "/", films["png"])
    ref = reference["png"]
    top = max(ref["scores"], key=ref["scores"].get)  # the class with the most certain box
    i = list(ref["scores"]).index(top)
    before = _boxes(browser)
    assert top in before
    show = browser.find_element("id", f"show-{i}")
    show.send_keys(Keys.SPACE)  # the checkbox, by keyboard
    assert top not in _boxes(browser) and len(_boxes(browser)) == len(before) - before.count(top)
    show.send_keys(Keys.SPACE)
    browser.find_element("id", f"cut-{i}").send_keys(Keys.HOME)  # the slider to 0
    assert _boxes(browser).count(top) == sum(c == top for c, *_ in ref["boxes"])
    assert browser.find_element("id", f"cut-value-{i}").text == "0.00"
    # every control has a label a screen reader reads
    for el in browser.find_elements("css selector", "input"):
        label = el.get_attribute("aria-label") or browser.execute_script(
            "return arguments[0].labels.length ? arguments[0].labels[0].textContent : ''", el
        )
        assert label.strip(), el.get_attribute("id")


def test_dicom_film_shows_no_patient_identifier(server, browser, films, reference):
    _upload(browser, server.url + "/", films["dicom"])
    text = browser.find_element("tag name", "body").text + browser.page_source
    for ident in (PATIENT_NAME, PATIENT_NAME.split("^")[0], PATIENT_ID):
        assert ident not in text
    assert len(_table(browser)) == 8
    assert browser.find_element("id", "film").get_attribute("naturalWidth") == "256"


def test_a_film_dropped_on_the_page_is_predicted(server, browser, films, reference):
    """A drop event carrying the file (what a person's drag and drop delivers)."""
    browser.get(server.url + "/")
    _wait_state(browser, "ready")
    # a file list holding the film, made the way the page's own input makes one
    browser.execute_script(
        "const i = document.createElement('input'); i.type = 'file'; i.id = 'probe';"
        "document.body.append(i);"
    )
    browser.find_element("id", "probe").send_keys(films["dicom"])
    browser.execute_script(
        "const dt = new DataTransfer(); dt.items.add(document.getElementById('probe').files[0]);"
        "document.getElementById('drop').dispatchEvent("
        "new DragEvent('drop', {dataTransfer: dt, bubbles: true, cancelable: true}));"
    )
    _wait_state(browser, "done")
    ref = reference["dicom"]
    positive = [row[0] for row in _table(browser) if row[3] == "positive"]
    assert sorted(positive) == sorted(ref["findings"].split(";"))


def test_page_asks_for_the_token_of_a_protected_server(model_path, browser, films, tmp_path):
    from selenium.webdriver.common.keys import Keys

    (tmp_path / "token").write_text("a-long-random-token\n")
    proc = ServerProcess(model_path, tmp_path, "--token-file", str(tmp_path / "token"))
    try:
        browser.get(proc.url + "/")
        form = browser.find_element("id", "token-form")
        for _ in range(100):
            if form.is_displayed():
                break
            time.sleep(0.1)
        assert form.is_displayed() and browser.find_element("id", "card").text == ""
        browser.find_element("id", "token").send_keys("a-long-random-token", Keys.ENTER)
        _wait_state(browser, "ready")
        assert not form.is_displayed() and "SHA-256" in browser.find_element("id", "card").text
        browser.find_element("id", "file").send_keys(films["png"])
        _wait_state(browser, "done")
        assert len(_table(browser)) == 8
    finally:
        log = proc.stop()
    assert "a-long-random-token" not in log

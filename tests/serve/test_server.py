"""tools/serve.py as a person runs it: a real uvicorn process on loopback, used over HTTP, then
interrupted. It never imports torch, detectron2 or cxr, writes nothing to disk, and no
response, log line or file holds the patient name or ID of an uploaded DICOM."""

from __future__ import annotations

import os
import re

import httpx
import pytest

from .conftest import PATIENT_ID, PATIENT_NAME, ServerProcess
from .test_app import assert_same_as_predict_tool

IDENTIFIERS = (PATIENT_NAME, PATIENT_NAME.split("^")[0], PATIENT_ID, "19610203", "St Quinn")


@pytest.fixture(scope="module")
def server(model_path, tmp_path_factory):
    proc = ServerProcess(model_path, tmp_path_factory.mktemp("server"), "--max-upload-mb", "4")
    yield proc
    proc.stop()


def _files_under(*folders) -> list[str]:
    return [os.path.join(r, f) for d in folders for r, _, fs in os.walk(d) for f in fs]


def test_real_server_answers_like_the_predict_tool_and_keeps_nothing(server, films, reference):
    texts = []
    with httpx.Client(base_url=server.url, timeout=60) as c:
        page = c.get("/")
        assert page.status_code == 200 and "Not for diagnostic use" in page.text
        assert "default-src 'none'" in page.headers["content-security-policy"]
        assert page.headers["x-content-type-options"] == "nosniff"
        for kind in ("png", "dicom"):
            with open(films[kind], "rb") as f:
                data = f.read()
            r = c.post("/v1/predict?display=true",
                       files={"file": (f"{PATIENT_NAME}/{PATIENT_ID}.dcm", data)})  # fmt: skip
            assert r.status_code == 200, r.text
            assert r.headers["cache-control"] == "no-store"
            assert_same_as_predict_tool(r.json(), reference[kind])
            texts.append(r.text + str(r.headers))
            raw = c.post("/v1/predict", content=data,
                         headers={"content-type": "application/octet-stream"})  # fmt: skip
            assert raw.json()["detections"] == r.json()["detections"]
        bad = c.post("/v1/predict", content=b"\0" * (5 * 2**20),
                     headers={"content-type": "application/dicom"})  # fmt: skip
        assert bad.status_code == 413
        truncated = c.post("/v1/predict", content=data[: len(data) // 3],
                           headers={"content-type": "application/dicom"})  # fmt: skip
        assert truncated.status_code == 422
        texts.append(truncated.text)
        assert c.get("/readyz").status_code == 200
    log = server.stop()
    texts.append(log)
    assert "POST /v1/predict" in log and "predicted a 256 x 256 film" in log  # logs were kept
    for text in texts:
        for ident in IDENTIFIERS:
            assert ident not in text
    # nothing written: neither in its working folder nor in its temporary folder, except the
    # session-id file ONNX Runtime writes when imported (a time and a random id)
    assert _files_under(server.workdir) == []
    left = _files_under(server.tmpdir)
    assert [os.path.basename(f) for f in left] in ([], [".ses"])
    for f in left:
        assert re.fullmatch(r"\d+\n[0-9a-f-]{36}\n", open(f).read())
    loaded = server.imported_packages()
    assert {"fastapi", "uvicorn", "onnxruntime", "cxr_runtime"} <= loaded  # the scan sees imports
    assert not loaded & {"torch", "torchvision", "detectron2", "cxr"}, sorted(loaded)

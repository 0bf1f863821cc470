"""The served app in process (FastAPI's test client): every route, every bad input, the queue,
the timeout, the token and the security headers; answers equal tools/predict.py's files."""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import logging
import struct
import threading
import zlib

import cv2
import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient

from cxr_runtime.serve.app import SECURITY_HEADERS, ServeSettings, create_app
from cxr_runtime.serve.cli import build_app, is_loopback, parse_args
from cxr_runtime.serve.model import ServedModel

from ..data.dataformats import write_dicom
from .conftest import PATIENT_ID, PATIENT_NAME, PHANTOM_CLASSES, THRESHOLDS


@pytest.fixture(scope="module")
def served(model_path):
    return ServedModel.load(model_path)


@pytest.fixture(scope="module")
def client(served):
    with TestClient(create_app(served, ServeSettings(max_upload_mb=1.0))) as c:
        yield c


def _bytes(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def assert_same_as_predict_tool(answer: dict, ref: dict) -> None:
    """``answer`` (POST /v1/predict) holds ``ref``'s predictions.csv and findings.csv rows."""
    got = [[d["class_name"], d["score"], d["x0"], d["y0"], d["x1"], d["y1"]]
           for d in answer["detections"]]  # fmt: skip
    assert len(got) == len(ref["boxes"]) > 0
    for g, r in zip(got, ref["boxes"]):
        assert g[0] == r[0]
        assert abs(g[1] - float(r[1])) <= 5e-7  # predictions.csv: 6 decimals
        np.testing.assert_allclose(g[2:], [float(v) for v in r[2:]], atol=0.005 + 1e-9)
    names = [f["class_name"] for f in answer["findings"]]
    assert names == PHANTOM_CLASSES
    np.testing.assert_allclose([f["score"] for f in answer["findings"]],
                               [ref["scores"][n] for n in names], atol=5e-7)  # fmt: skip
    assert (";".join(answer["positive_findings"]) or "No finding") == ref["findings"]


@pytest.mark.parametrize("kind", ["png", "dicom"])
def test_predict_equals_the_predict_tool_multipart_and_raw(client, films, reference, kind):
    data = _bytes(films[kind])
    multi = client.post("/v1/predict", files={"file": ("film", data, "application/octet-stream")})
    raw = client.post("/v1/predict", content=data,
                      headers={"content-type": "application/octet-stream"})  # fmt: skip
    assert multi.status_code == raw.status_code == 200, multi.text
    for answer in (multi.json(), raw.json()):
        assert_same_as_predict_tool(answer, reference[kind])
        h, w = cv2.imread(films["png"], cv2.IMREAD_GRAYSCALE).shape  # films are 256 px
        assert answer["image"] == {"height": h, "width": w}
        assert "display_png" not in answer and answer["timing_ms"]["total"] > 0
    # each box's "positive" is the decision rule on its class's operating point
    for d in multi.json()["detections"]:
        assert d["positive"] == (d["score"] >= THRESHOLDS.get(d["class_name"], 0.3))


def test_display_image_is_the_film_as_read(client, films):
    import base64

    from cxr_runtime.io import read_xray

    r = client.post("/v1/predict?display=true", files={"file": ("a.dcm", _bytes(films["dicom"]))})
    url = r.json()["display_png"]
    assert url.startswith("data:image/png;base64,")
    png = np.frombuffer(base64.b64decode(url.split(",", 1)[1]), np.uint8)
    np.testing.assert_array_equal(
        cv2.imdecode(png, cv2.IMREAD_GRAYSCALE), read_xray(films["dicom"])
    )


def test_model_card_health_readiness_page_and_schema(client, model_path):
    card = client.get("/v1/model").json()
    sha = hashlib.sha256(_bytes(model_path)).hexdigest()
    assert card["sha256"] == sha and card["model_id"] == "sha256:" + sha[:16]
    assert card["class_names"] == PHANTOM_CLASSES
    assert card["operating_points"] == {n: THRESHOLDS.get(n, 0.3) for n in PHANTOM_CLASSES}
    assert card["input_size"] == {"min_size_test": 224, "max_size_test": 224}
    assert client.get("/healthz").json() == {"status": "ok"}
    assert client.get("/readyz").json() == {"status": "ready", "model_id": card["model_id"]}
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "Not for diagnostic use" in page.text and "http://" not in page.text
    assert "https://" not in page.text and "<script>" not in page.text  # no CDN, no inline code
    for asset in ("/static/app.js", "/static/app.css"):
        assert client.get(asset).status_code == 200
    schema = client.get("/openapi.json").json()
    assert {"/v1/predict", "/v1/model", "/healthz", "/readyz"} <= set(schema["paths"])
    body = schema["paths"]["/v1/predict"]["post"]["requestBody"]["content"]
    assert {"multipart/form-data", "application/dicom", "image/png"} <= set(body)
    assert {"PredictResponse", "Detection", "Finding", "ModelCard"} <= set(
        schema["components"]["schemas"]
    )
    assert client.get("/docs").status_code == 404  # its page would load a CDN
    for r in (page, client.get("/v1/model")):
        for k, v in SECURITY_HEADERS.items():
            assert r.headers[k] == v


def _png_header(width: int, height: int) -> bytes:
    """A PNG signature and a valid IHDR chunk claiming ``width`` x ``height`` (8-bit gray),
    then a tiny IDAT: a decompression bomb's header."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    chunk = lambda t, d: struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
            + chunk(b"IEND", b""))  # fmt: skip


def _dicom_without_pixels(tmp_path) -> bytes:
    import pydicom

    path = write_dicom(str(tmp_path / "x.dcm"), np.zeros((8, 8), np.uint16))
    ds = pydicom.dcmread(path)
    del ds.PixelData
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def _bad_requests(films, tmp_path) -> dict:
    """name -> (request kwargs, expected status, a word of the expected message)."""
    png = _bytes(films["png"])
    octet = {"content-type": "application/octet-stream"}
    return {
        "empty body": (dict(content=b"", headers=octet), 400, "empty"),
        "empty file field": (dict(files={"file": ("a.png", b"")}), 400, "empty"),
        "not an image": (dict(files={"file": ("a.png", b"%PDF-1.4 " * 50)}), 422, "undecodable"),
        "truncated PNG": (dict(files={"file": ("a.png", png[: len(png) // 2])}), 422, "truncated"),
        "DICOM without pixel data": (dict(files={"file": ("a.dcm", _dicom_without_pixels(
            tmp_path))}), 422, "pixel data"),  # fmt: skip
        "decompression bomb": (dict(content=_png_header(50_000, 50_000),
                                    headers={"content-type": "image/png"}), 422, "50000 x 50000"),
        "a 1 x 3000 film": (dict(files={"file": ("a.png", cv2.imencode(".png", np.zeros(
            (3000, 1), np.uint8))[1].tobytes())}), 422, "too narrow"),  # fmt: skip
        "over the limit": (dict(content=b"\0" * (2**20 + 1), headers=octet), 413, "limit"),
        "wrong content type": (dict(content=png, headers={"content-type": "text/plain"}), 415,
                               "content type"),
        "no file field": (dict(files={"film": ("a.png", png)}), 400, "'file'"),
        "malformed multipart": (dict(content=b"--x\r\nnonsense", headers={
            "content-type": "multipart/form-data; boundary=x"}), 400, "multipart"),
    }  # fmt: skip


def test_every_bad_input_gets_its_4xx_and_the_next_request_succeeds(client, films, tmp_path):
    good = _bytes(films["png"])
    for name, (kwargs, status, word) in _bad_requests(films, tmp_path).items():
        r = client.post("/v1/predict", **kwargs)
        assert r.status_code == status, (name, r.text)
        assert word in r.json()["detail"], (name, r.json())
        after = client.post("/v1/predict", files={"file": ("film.png", good)})
        assert after.status_code == 200, (name, after.text)


def test_file_name_with_path_parts_is_ignored(client, films):
    data = _bytes(films["png"])
    plain = client.post("/v1/predict", files={"file": ("film.png", data)}).json()
    for name in ("../../etc/passwd.png", "C:\\scans\\Doe^Jane\\film.png", "/tmp/x/../film"):
        r = client.post("/v1/predict", files={"file": (name, data)})
        assert r.status_code == 200
        assert r.json()["detections"] == plain["detections"]
        assert "Doe" not in r.text and "passwd" not in r.text and "scans" not in r.text


def test_patient_identifiers_are_never_returned_or_logged(client, films, caplog):
    caplog.set_level(logging.DEBUG)
    data = _bytes(films["dicom"])
    assert PATIENT_NAME.encode() in data and PATIENT_ID.encode() in data  # the film carries them
    texts = []
    for kwargs in (
        dict(files={"file": (f"{PATIENT_NAME}.dcm", data)}),
        dict(content=data, headers={"content-type": "application/dicom"}),
    ):
        r = client.post("/v1/predict?display=true", **kwargs)
        assert r.status_code == 200
        texts.append(r.text + json.dumps(dict(r.headers)))
    broken = client.post("/v1/predict", files={"file": ("x.dcm", data[: len(data) // 2])})
    assert broken.status_code == 422
    texts += [broken.text, caplog.text, client.get("/v1/model").text]
    for t in texts:
        for ident in (PATIENT_NAME, "Doe", PATIENT_ID, "19610203", "St Quinn"):
            assert ident not in t


def test_bearer_token(served, films):
    app = create_app(served, ServeSettings(token="s3cret-token"))
    with TestClient(app) as c:
        data = _bytes(films["png"])
        assert c.get("/v1/model").status_code == 401
        r = c.post("/v1/predict", files={"file": ("a.png", data)})
        assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
        wrong = {"Authorization": "Bearer s3cret-tokeN"}
        assert c.get("/v1/model", headers=wrong).status_code == 401
        assert (
            c.get("/v1/model", headers={"Authorization": "Basic s3cret-token"}).status_code == 401
        )
        ok = {"Authorization": "Bearer s3cret-token"}
        assert c.get("/v1/model", headers=ok).status_code == 200
        assert c.post("/v1/predict", files={"file": ("a.png", data)}, headers=ok).status_code == 200
        assert c.get("/").status_code == c.get("/healthz").status_code == 200  # open


class _Gated:
    """The served model's predictor, held at a gate until the test opens it."""

    def __init__(self, predictor):
        self.predictor, self.gate, self.entered = (
            predictor,
            threading.Event(),
            threading.Semaphore(0),
        )

    def __call__(self, image):
        self.entered.release()
        assert self.gate.wait(30)
        return self.predictor(image)


def test_full_queue_gets_503_slow_prediction_504_then_serving_resumes(model_path, films):
    served = ServedModel.load(model_path)
    gated = served.predictor = _Gated(served.predictor)
    app = create_app(served, ServeSettings(workers=1, queue=1, timeout_s=1.0))
    data = _bytes(films["png"])

    async def scenario():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
            post = lambda: c.post("/v1/predict", files={"file": ("a.png", data)})
            first = asyncio.ensure_future(post())  # runs (held at the gate)
            await asyncio.to_thread(gated.entered.acquire, True, 10)
            second = asyncio.ensure_future(post())  # waits in the queue
            for _ in range(200):
                if app.state.gate.pending == 2:
                    break
                await asyncio.sleep(0.05)
            third = await post()  # no room: 503 at once
            busy = await c.get("/readyz")
            done = await asyncio.gather(first, second)  # both pass the 1 s timeout: 504
            gated.gate.set()
            for _ in range(100):  # the held jobs finish in their threads
                if (await c.get("/readyz")).status_code == 200:
                    break
                await asyncio.sleep(0.05)
            return third, busy, done, await post()

    third, busy, done, after = asyncio.run(scenario())
    assert third.status_code == 503 and third.headers["retry-after"] == "1"
    assert busy.status_code == 503 and busy.json()["status"] == "busy"
    assert [r.status_code for r in done] == [504, 504] and "1 s" in done[0].json()["detail"]
    assert after.status_code == 200 and len(after.json()["detections"]) > 0


def test_exposed_address_without_token_warns(model_path, tmp_path, caplog):
    caplog.set_level(logging.WARNING, logger="cxr_runtime.serve")
    build_app(parse_args(["--checkpoint", model_path, "--host", "0.0.0.0"]))
    assert "WITHOUT a token" in caplog.text
    caplog.clear()
    token = tmp_path / "token"
    token.write_text("abc\n")
    build_app(parse_args(["--checkpoint", model_path, "--host", "0.0.0.0", "--token-file",
                          str(token)]))  # fmt: skip
    build_app(parse_args(["--checkpoint", model_path]))
    assert "WITHOUT" not in caplog.text
    assert parse_args(["--checkpoint", model_path]).host == "127.0.0.1"
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.4")
    (tmp_path / "empty").write_text("\n")
    with pytest.raises(SystemExit, match="empty"):
        build_app(parse_args(["--checkpoint", model_path, "--token-file",
                              str(tmp_path / "empty")]))  # fmt: skip


def test_openvino_backend_answers_what_onnxruntime_answers(served, model_path, films):
    pytest.importorskip("openvino")
    ov = ServedModel.load(model_path, backend="openvino")
    assert ov.card["backend"] == "openvino" and ov.card["sha256"] == served.card["sha256"]
    data = _bytes(films["png"])
    a, b = served.predict(data, "film", None), ov.predict(data, "film", None)
    assert [d["class_name"] for d in a["detections"]] == [d["class_name"] for d in b["detections"]]
    for da, db in zip(a["detections"], b["detections"]):
        assert abs(da["score"] - db["score"]) < 1e-3
        np.testing.assert_allclose([da[k] for k in "x0 y0 x1 y1".split()],
                                   [db[k] for k in "x0 y0 x1 y1".split()], atol=0.5)  # fmt: skip
    assert a["positive_findings"] == b["positive_findings"]

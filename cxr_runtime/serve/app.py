"""The ASGI app: the page (``/``), the API (``/v1/...``), health checks and the safety rules.

- Predictions run in a pool of ``workers`` threads behind a queue of ``queue`` waiting films;
  a request finding both full gets 503 (``Retry-After: 1``). A request that takes longer than
  ``timeout_s`` (upload + queue + prediction) gets 504.
- With a token, ``/v1/*`` needs ``Authorization: Bearer <token>`` (401 otherwise; compared in
  constant time). The page, ``/healthz``, ``/readyz`` and ``/openapi.json`` stay open.
- Every answer carries a Content-Security-Policy (no script, style or connection from anywhere
  but the server itself), ``X-Content-Type-Options: nosniff``, ``X-Frame-Options: DENY``,
  ``Referrer-Policy: no-referrer`` and ``Cache-Control: no-store``.
- Uploads stay in memory; nothing is written to disk. File names are never used, logged or
  returned; DICOM headers are read for pixels and window only and never returned or logged.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import hmac
import logging
import os
import threading

from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles

from ..io import ImageReadError
from .model import ServedModel
from .schemas import Health, ModelCard, PredictResponse
from .upload import MULTIPART, RAW_TYPES, UploadError, parse_upload, read_limited

__all__ = ["SECURITY_HEADERS", "ServeSettings", "create_app"]

logger = logging.getLogger(__name__)

STATIC_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "static")

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
    "connect-src 'self'; form-action 'none'; frame-ancestors 'none'; base-uri 'none'"
)
SECURITY_HEADERS = {
    "content-security-policy": CSP,
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "no-referrer",
    "cache-control": "no-store",
}


@dataclasses.dataclass
class ServeSettings:
    """How the app serves (``tools/serve.py`` flags).

    Attributes:
        token: bearer token required on ``/v1/*``; None: no token.
        max_upload_mb: largest request body, MiB (413 above).
        workers: films predicted at once (threads).
        queue: films waiting for a worker before 503.
        timeout_s: seconds a prediction request may take before 504.
    """

    token: str | None = None
    max_upload_mb: float = 64.0
    workers: int = 1
    queue: int = 8
    timeout_s: float = 30.0


class _Gate:
    """A thread pool with a bounded number of pending jobs (running + waiting)."""

    def __init__(self, workers: int, queue: int):
        self.pool = concurrent.futures.ThreadPoolExecutor(workers, "cxr-predict")
        self.capacity = workers + queue
        self.pending = 0
        self._lock = threading.Lock()

    def submit(self, fn, *args) -> concurrent.futures.Future | None:
        """The job's future, or None when ``capacity`` jobs are already pending."""
        with self._lock:
            if self.pending >= self.capacity:
                return None
            self.pending += 1
        fut = self.pool.submit(fn, *args)
        fut.add_done_callback(self._done)
        return fut

    def _done(self, _fut) -> None:
        with self._lock:
            self.pending -= 1

    @property
    def full(self) -> bool:
        return self.pending >= self.capacity


class _SecurityHeaders:
    """ASGI middleware adding :data:`SECURITY_HEADERS` to every response."""

    def __init__(self, app):
        self.app = app
        self.headers = [(k.encode(), v.encode()) for k, v in SECURITY_HEADERS.items()]

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)

        async def send_with_headers(message):
            if message["type"] == "http.response.start":
                names = {k for k, _ in self.headers}
                kept = [(k, v) for k, v in message.get("headers", []) if k.lower() not in names]
                message = {**message, "headers": kept + self.headers}
            await send(message)

        return await self.app(scope, receive, send_with_headers)


def _authorizer(token: str | None):
    """A dependency refusing requests without ``Authorization: Bearer <token>`` (401)."""
    expected = token.encode("utf-8") if token else None

    def check(request: Request) -> None:
        if expected is None:
            return
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), expected):
            raise HTTPException(401, "missing or wrong bearer token",
                                headers={"WWW-Authenticate": "Bearer"})  # fmt: skip

    return check


_PREDICT_BODY = {
    "requestBody": {
        "required": True,
        "description": "the film (PNG, JPEG or DICOM): multipart field 'file', or the raw body",
        "content": {
            MULTIPART: {"schema": {"type": "object", "required": ["file"],
                                   "properties": {"file": {"type": "string", "format": "binary"}}}},
            **{t: {"schema": {"type": "string", "format": "binary"}} for t in RAW_TYPES},
        },  # fmt: skip
    }
}


def create_app(model: ServedModel, settings: ServeSettings | None = None) -> FastAPI:
    """The app serving ``model`` (routes in the module docstring)."""
    settings = settings or ServeSettings()
    about = "Lesion detection on one chest X-ray film. Not for diagnostic use."
    app = FastAPI(title="cxr", version="1", description=about, docs_url=None, redoc_url=None)
    app.state.model, app.state.settings = model, settings
    app.state.gate = gate = _Gate(max(1, settings.workers), max(0, settings.queue))
    auth = [Depends(_authorizer(settings.token))]
    limit = int(settings.max_upload_mb * 2**20)

    @app.get("/", include_in_schema=False)
    def page() -> FileResponse:
        return FileResponse(os.path.join(STATIC_DIR, "index.html"), media_type="text/html")

    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")

    @app.get("/healthz", response_model=Health, response_model_exclude_none=True)
    def healthz() -> dict:
        """The process answers."""
        return {"status": "ok"}

    @app.get("/readyz", response_model=Health, responses={503: {"description": "queue full"}})
    def readyz():
        """The model is loaded and the queue has room."""
        if gate.full:
            return JSONResponse({"status": "busy", "model_id": model.model_id}, 503)
        return {"status": "ready", "model_id": model.model_id}

    @app.get("/v1/model", response_model=ModelCard, dependencies=auth)
    def model_card() -> dict:
        """Class names, operating points, input size and SHA-256 of the served model."""
        return model.card

    @app.post("/v1/predict", response_model=PredictResponse, response_model_exclude_none=True,
              dependencies=auth, openapi_extra=_PREDICT_BODY)  # fmt: skip
    async def predict(request: Request, display: bool = Query(False)) -> dict:
        """Detections and findings of one film (what tools/predict.py writes for it)."""
        try:
            return await asyncio.wait_for(_predict(request, display), settings.timeout_s)
        except asyncio.TimeoutError:
            raise HTTPException(504, f"prediction took over {settings.timeout_s:g} s") from None

    async def _predict(request: Request, display: bool) -> dict:
        try:
            body = await read_limited(request.stream(), request.headers.get("content-length"),
                                      limit)  # fmt: skip
            upload = parse_upload(body, request.headers.get("content-type"))
        except UploadError as e:
            raise HTTPException(e.status, e.message) from None
        fut = gate.submit(model.predict, upload.data, upload.name, upload.dicom, display)
        if fut is None:
            raise HTTPException(503, "the server is busy: the queue is full, retry shortly",
                                headers={"Retry-After": "1"})  # fmt: skip
        try:
            return await asyncio.shield(asyncio.wrap_future(fut))
        except ImageReadError as e:
            raise HTTPException(422, f"cannot read the film: {e.reason}") from None

    app.add_middleware(_SecurityHeaders)
    return app

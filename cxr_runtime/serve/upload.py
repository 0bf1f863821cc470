"""Reading an upload into memory: a size limit while it streams, the multipart field ``file``
or a raw body, and the content types the API takes. Nothing is written to disk (Starlette's own
form parser spools files over 1 MiB to a temporary file; this parser keeps them in memory).
"""

from __future__ import annotations

import dataclasses
from typing import AsyncIterator

from ..io import has_image_signature

__all__ = ["RAW_TYPES", "Upload", "UploadError", "parse_upload", "read_limited"]

#: raw-body content types: value = True when the body is DICOM, None when decided by content
RAW_TYPES = {
    "image/png": None,
    "image/jpeg": None,
    "application/dicom": True,
    "application/octet-stream": None,
}
MULTIPART = "multipart/form-data"


class UploadError(Exception):
    """A request the API refuses: ``status`` (HTTP 4xx) and a message for the client."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


@dataclasses.dataclass
class Upload:
    """One uploaded film.

    Attributes:
        data: the file's bytes.
        name: ``upload`` plus the extension of the client's file name (path parts and the
            name itself are dropped: they are never used, logged or returned).
        dicom: True when declared DICOM (``application/dicom``) and not starting as a PNG or
            JPEG does; None: decided by content (:func:`~cxr_runtime.io.is_dicom`).
    """

    data: bytes
    name: str = "upload"
    dicom: bool | None = None


async def read_limited(stream: AsyncIterator[bytes], length: str | None, limit: int) -> bytes:
    """The request body, refused with 413 as soon as it is known to exceed ``limit`` bytes
    (from ``Content-Length`` before reading, else while it streams)."""
    too_large = UploadError(413, f"upload over the limit of {limit / 2**20:g} MiB")
    if length is not None and length.isdigit() and int(length) > limit:
        raise too_large
    chunks, size = [], 0
    async for chunk in stream:
        size += len(chunk)
        if size > limit:
            raise too_large
        chunks.append(chunk)
    return b"".join(chunks)


def _safe_name(filename: str) -> str:
    """``upload`` with the extension of ``filename`` (``C:\\scans\\a.DCM`` -> ``upload.dcm``)."""
    base = filename.replace("\\", "/").rsplit("/", 1)[-1]
    ext = base.rsplit(".", 1)[-1].lower() if "." in base else ""
    return f"upload.{ext}" if ext.isalnum() and len(ext) <= 5 else "upload"


def _multipart_file(body: bytes, boundary: bytes) -> Upload:
    """The part named ``file`` of a multipart/form-data ``body``, in memory."""
    from python_multipart.multipart import MultipartParser, parse_options_header

    parts: list[dict] = []
    state = {"field": b"", "value": b""}

    def on_part_begin():
        parts.append({"headers": {}, "data": []})

    def on_header_field(data, start, end):
        state["field"] += data[start:end]

    def on_header_value(data, start, end):
        state["value"] += data[start:end]

    def on_header_end():
        parts[-1]["headers"][state["field"].lower()] = state["value"]
        state["field"], state["value"] = b"", b""

    def on_part_data(data, start, end):
        parts[-1]["data"].append(data[start:end])

    callbacks = dict(on_part_begin=on_part_begin, on_header_field=on_header_field,
                     on_header_value=on_header_value, on_header_end=on_header_end,
                     on_part_data=on_part_data)  # fmt: skip
    try:
        parser = MultipartParser(boundary, callbacks)
        parser.write(body)
        parser.finalize()
    except Exception as e:  # the parser's errors: malformed multipart bodies
        raise UploadError(400, f"malformed multipart/form-data body ({type(e).__name__})") from None
    for part in parts:
        _, opts = parse_options_header(part["headers"].get(b"content-disposition", b""))
        if opts.get(b"name") == b"file":
            name = _safe_name(opts.get(b"filename", b"").decode("utf-8", "replace"))
            ctype = parse_options_header(part["headers"].get(b"content-type", b""))[0]
            return Upload(
                b"".join(part["data"]), name, True if ctype == b"application/dicom" else None
            )
    raise UploadError(400, "multipart/form-data upload without a 'file' field")


def parse_upload(body: bytes, content_type: str | None) -> Upload:
    """The film of a ``POST /v1/predict`` request.

    Args:
        body: the whole request body (:func:`read_limited`).
        content_type: the request's ``Content-Type`` header.

    Raises:
        UploadError: 415 for a content type other than multipart/form-data and
            :data:`RAW_TYPES`; 400 for an empty body or a multipart body without ``file``.
    """
    from python_multipart.multipart import parse_options_header

    ctype, opts = parse_options_header(content_type or "")
    ctype_s = ctype.decode("latin-1").lower()
    if ctype_s == MULTIPART:
        if not opts.get(b"boundary"):
            raise UploadError(400, "multipart/form-data without a boundary")
        upload = _multipart_file(body, opts[b"boundary"])
    elif ctype_s in RAW_TYPES:
        upload = Upload(body, "upload", RAW_TYPES[ctype_s])
    else:
        accepted = ", ".join([MULTIPART, *RAW_TYPES])
        raise UploadError(
            415, f"unsupported content type {ctype_s or '(none)'!r}; send one of: {accepted}"
        )
    if not upload.data:
        raise UploadError(400, "empty upload: the film has 0 bytes")
    if has_image_signature(upload.data[:8]):
        upload.dicom = None  # a PNG / JPEG, whatever its declared type
    return upload

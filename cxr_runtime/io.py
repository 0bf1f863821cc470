"""Reading chest radiographs: PNG / JPEG (8 or 16 bit, gray, RGB, RGBA) and DICOM.

Every reader returns a 2-D ``uint8`` array (H x W, 0 = black); ``read_xray(path, bit_depth=16)``
returns ``uint16`` (0-65535) from the same steps, for prepared copies that keep the precision.
Any failure (missing, empty, truncated or undecodable file) raises :class:`ImageReadError`, whose
message names the file.

DICOM pixel data go through the modality LUT (rescale slope / intercept), then the VOI LUT or
the first window center / width, then are scaled to 0-255 (0-65535); ``MONOCHROME1`` images
(where high values are dark) are inverted so that bone is always bright. Data without a window
(16-bit PNGs, DICOMs without VOI attributes) are scaled min-max to 8 bits; at 16 bits a 16-bit
PNG is kept as stored and an 8-bit one is multiplied by 257.
"""

from __future__ import annotations

import io
import logging
import os
import struct

import cv2
import numpy as np

__all__ = [
    "ImageReadError",
    "has_dicom_preamble",
    "decode_xray",
    "has_image_signature",
    "is_dicom",
    "read_xray",
    "read_xray_bytes",
    "read_xray_size",
]

logger = logging.getLogger(__name__)

_DICOM_EXTS = (".dcm", ".dicom")
_PNG_SIG = b"\x89PNG\r\n\x1a\n"


class ImageReadError(OSError):
    """An image file is missing, empty, truncated or cannot be decoded. ``file`` names it,
    ``reason`` says why in cxr's words, and ``detail`` (may be empty) quotes the decoding
    library, whose messages can hold header values (the served app returns ``reason`` only)."""

    def __init__(self, file: str, reason: str, detail: str = ""):
        self.file = str(file)
        self.reason = reason
        self.detail = detail
        super().__init__(
            f"cannot read image {self.file}: {reason}" + (f" ({detail})" if detail else "")
        )


def has_dicom_preamble(head: bytes) -> bool:
    """True when ``head`` (a file's first bytes) holds the DICOM ``DICM`` magic at byte 128."""
    return len(head) >= 132 and head[128:132] == b"DICM"


def has_image_signature(head: bytes) -> bool:
    """True when ``head`` (a file's first bytes) starts as a PNG or a JPEG does."""
    return head[:8] == _PNG_SIG or head[:2] == b"\xff\xd8"


def is_dicom(path: str, head: bytes | None = None) -> bool:
    """True when the file is DICOM: by content first (the ``DICM`` preamble, whatever the file
    name, e.g. extensionless PACS exports), else by a ``.dcm`` / ``.dicom`` extension on a file
    that is not a PNG / JPEG (DICOM files without a preamble exist).

    Args:
        path: the file (read for its first 132 bytes when ``head`` is None).
        head: the file's first bytes, when already read.
    """
    if head is None:
        try:
            with open(path, "rb") as f:
                head = f.read(132)
        except OSError:
            head = b""
    if has_dicom_preamble(head):
        return True
    return str(path).lower().endswith(_DICOM_EXTS) and not has_image_signature(head)


def _read_bytes(path: str) -> bytes:
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        raise ImageReadError(path, "file not found") from None
    except OSError as e:
        raise ImageReadError(path, f"{type(e).__name__}: {e}") from None
    if not data:
        raise ImageReadError(path, "file is empty")
    return data


_OUT_TYPES = {8: (np.uint8, 255.0), 16: (np.uint16, 65535.0)}  # bit depth -> (dtype, white)


def _out_type(bit_depth: int) -> tuple[type, float]:
    if bit_depth not in _OUT_TYPES:
        raise ValueError(f"bit_depth must be 8 or 16, got {bit_depth!r}")
    return _OUT_TYPES[bit_depth]


def _scale_min_max(arr: np.ndarray, bit_depth: int = 8) -> np.ndarray:
    dtype, white = _out_type(bit_depth)
    arr = arr.astype(np.float32, copy=False)
    lo, hi = float(arr.min()), float(arr.max())
    if hi <= lo:
        return np.zeros(arr.shape, dtype)
    return np.round((arr - lo) * (white / (hi - lo))).astype(dtype)


def _to_gray(img: np.ndarray, path: str, bit_depth: int) -> np.ndarray:
    """Gray at ``bit_depth``: 16-bit data kept (16) or min-max scaled (8); 8-bit data kept (8)
    or multiplied by 257 (16)."""
    img = _to_gray_uint8(img, path) if bit_depth == 8 else _gray_channel(img, path)
    if bit_depth == 8 or img.dtype == np.uint16:
        return img
    if img.dtype == np.uint8:
        return img.astype(np.uint16) * np.uint16(257)
    return _scale_min_max(img, bit_depth)


def _gray_channel(img: np.ndarray, path: str) -> np.ndarray:
    if img.ndim == 3:
        if img.shape[2] == 1:
            img = img[:, :, 0]
        elif img.shape[2] == 3:
            img = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)
        elif img.shape[2] == 4:
            img = cv2.cvtColor(img, cv2.COLOR_BGRA2GRAY)
        else:
            raise ImageReadError(path, f"unsupported channel count {img.shape[2]}")
    if img.ndim != 2:
        raise ImageReadError(path, f"unsupported image shape {img.shape}")
    return img


def _to_gray_uint8(img: np.ndarray, path: str) -> np.ndarray:
    img = _gray_channel(img, path)
    if img.dtype == np.uint8:
        return img
    return _scale_min_max(img)


def _window(arr: np.ndarray, center: float, width: float, bit_depth: int = 8) -> np.ndarray:
    """DICOM PS3.3 C.11.2.1.2.1 linear windowing to 0-255 (0-65535 at 16 bits)."""
    dtype, white = _out_type(bit_depth)
    width = max(float(width), 1.0)
    x = (arr.astype(np.float32) - (float(center) - 0.5)) / (width - 1.0 if width > 1 else 1.0) + 0.5
    return np.round(np.clip(x, 0.0, 1.0) * white).astype(dtype)


def _first(value) -> float:
    try:
        return float(value[0])
    except TypeError:
        return float(value)


def _read_dicom(
    data: bytes, name: str, max_pixels: int | None = None, bit_depth: int = 8
) -> np.ndarray:
    import pydicom
    from pydicom.pixels import apply_modality_lut, apply_voi_lut

    try:
        ds = pydicom.dcmread(io.BytesIO(data))
        if "PixelData" not in ds and "FloatPixelData" not in ds:
            raise ImageReadError(name, "not a readable DICOM: no pixel data (no PixelData element)")
        _check_pixels(name, (int(ds.get("Rows", 0) or 0), int(ds.get("Columns", 0) or 0)),
                      max_pixels)  # fmt: skip
        arr = ds.pixel_array
    except ImageReadError:
        raise
    except Exception as e:  # pydicom raises many types for bad files
        raise ImageReadError(name, "not a readable DICOM", f"{type(e).__name__}: {e}") from None
    if arr.ndim == 3 and ds.get("SamplesPerPixel", 1) == 1:
        arr = arr[0]  # multi-frame: first frame
    if arr.ndim != 2:
        return _to_gray(arr, name, bit_depth)
    arr = apply_modality_lut(arr, ds)
    if "VOILUTSequence" in ds:
        out = _scale_min_max(apply_voi_lut(arr, ds), bit_depth)
    elif "WindowCenter" in ds and "WindowWidth" in ds:
        out = _window(arr, _first(ds.WindowCenter), _first(ds.WindowWidth), bit_depth)
    else:
        out = _scale_min_max(arr, bit_depth)
    if str(ds.get("PhotometricInterpretation", "")).upper() == "MONOCHROME1":
        out = np.iinfo(out.dtype).max - out
    return out


def _check_pixels(name: str, hw: tuple[int, int] | None, max_pixels: int | None) -> None:
    """Refuse an image whose header claims more than ``max_pixels`` pixels (a decompression
    bomb) before its pixels are decoded."""
    if max_pixels is not None and hw is not None and hw[0] * hw[1] > max_pixels:
        raise ImageReadError(
            name,
            f"its header claims {hw[1]} x {hw[0]} pixels, over the limit of {max_pixels:,} "
            "pixels (width x height)",
        )


def read_xray_bytes(
    data: bytes,
    name: str = "upload",
    *,
    dicom: bool | None = None,
    max_pixels: int | None = None,
    bit_depth: int = 8,
) -> np.ndarray:
    """Read a radiograph held in memory (an upload) as grayscale, as :func:`read_xray` does.

    Args:
        data: the file's bytes (PNG, JPEG, anything OpenCV decodes, or DICOM).
        name: what error messages call the file; its extension (``.dcm``) marks DICOM files
            without a preamble, as a path's does.
        dicom: True / False to say whether ``data`` is DICOM; None: decide as :func:`is_dicom`.
        max_pixels: refuse images whose header claims more pixels (width x height) than this,
            before decoding them; None: no limit.
        bit_depth: 8 or 16, as in :func:`read_xray`.

    Returns:
        H x W ``uint8`` (``uint16`` at 16 bits) array, bright = dense.

    Raises:
        ImageReadError: empty, too large, truncated or undecodable data.
    """
    _out_type(bit_depth)
    if not data:
        raise ImageReadError(name, "file is empty")
    if dicom is None:
        dicom = is_dicom(name, data[:132])
    if dicom:
        return _read_dicom(data, name, max_pixels, bit_depth)
    head = data[:32]
    hw = _png_size(head)
    if hw is None and head[:2] == b"\xff\xd8":
        hw = _jpeg_size(io.BytesIO(data))
    _check_pixels(name, hw, max_pixels)
    try:
        img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    except cv2.error as e:  # e.g. over OpenCV's own pixel limit (CV_IO_MAX_IMAGE_PIXELS)
        raise ImageReadError(name, "OpenCV cannot decode it", e.err) from None
    if img is None:
        raise ImageReadError(name, "undecodable or truncated image data")
    return _to_gray(img, name, bit_depth)


def decode_xray(data: bytes, name: str, bit_depth: int = 8) -> np.ndarray:
    """Decode an in-memory PNG / JPEG (8 or 16 bit, gray or colour) exactly as :func:`read_xray`
    decodes such a file (e.g. a film stored in a WebDataset shard; ``name`` is named in errors)."""
    return read_xray_bytes(data, name, dicom=False, bit_depth=bit_depth)


def read_xray(path: str, bit_depth: int = 8) -> np.ndarray:
    """Read a radiograph as grayscale.

    Args:
        path: a PNG, JPEG (or anything OpenCV decodes) or DICOM (``.dcm``/``.dicom`` or ``DICM``
            magic) file.
        bit_depth: 8 (``uint8``, 0-255) or 16 (``uint16``, 0-65535: the same windowing and
            inversion without rounding to 8 bits; see the module docstring).

    Returns:
        H x W ``uint8`` (``uint16``) array, bright = dense.

    Raises:
        ImageReadError: the file is missing, empty, truncated or undecodable.
    """
    path = os.fspath(path)
    return read_xray_bytes(_read_bytes(path), path, bit_depth=bit_depth)


def _png_size(head: bytes) -> tuple[int, int] | None:
    if head[:8] == _PNG_SIG and head[12:16] == b"IHDR" and len(head) >= 24:
        w, h = struct.unpack(">II", head[16:24])
        return int(h), int(w)
    return None


def _jpeg_size(f) -> tuple[int, int] | None:
    f.seek(2)
    while True:
        b = f.read(1)
        while b and b != b"\xff":
            b = f.read(1)
        while b == b"\xff":
            b = f.read(1)
        if not b:
            return None
        marker = b[0]
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
            continue
        seg = f.read(2)
        if len(seg) < 2:
            return None
        length = struct.unpack(">H", seg)[0]
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            sof = f.read(5)
            if len(sof) < 5:
                return None
            h, w = struct.unpack(">HH", sof[1:5])
            return int(h), int(w)
        f.seek(length - 2, 1)


def read_xray_size(path: str) -> tuple[int, int]:
    """``(height, width)`` of an image from its header (PNG IHDR, JPEG SOF, DICOM Rows/Columns);
    other formats are decoded in full.

    Raises:
        ImageReadError: missing, empty or unreadable header.
    """
    path = os.fspath(path)
    try:
        with open(path, "rb") as f:
            head = f.read(132)
            if not head:
                raise ImageReadError(path, "file is empty")
            if is_dicom(path, head):
                import pydicom

                try:
                    ds = pydicom.dcmread(path, stop_before_pixels=True)
                    return int(ds.Rows), int(ds.Columns)
                except Exception as e:
                    raise ImageReadError(
                        path, f"no DICOM Rows/Columns ({type(e).__name__})"
                    ) from None
            size = _png_size(head)
            if size is None and head[:2] == b"\xff\xd8":
                size = _jpeg_size(f)
            if size is not None:
                return size
    except FileNotFoundError:
        raise ImageReadError(path, "file not found") from None
    except ImageReadError:
        raise
    except OSError as e:
        raise ImageReadError(path, f"{type(e).__name__}: {e}") from None
    return tuple(read_xray(path).shape[:2])  # type: ignore[return-value]

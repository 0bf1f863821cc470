"""One film, decoded once: read (the code of ``read_xray``), resized by the long side, encoded as
PNG; and its dataset record scaled to the prepared film."""

from __future__ import annotations

import hashlib
import re
from typing import Sequence

import cv2
import numpy as np
from detectron2.structures import BoxMode

from ...fileio import write_bytes_atomic
from ..io import ImageReadError, read_xray

__all__ = ["FilmResult", "film_job", "prepare_film", "safe_keys", "scale_record", "target_scale"]

#: OpenCV PNG settings of prepared films: level 3, the "Up" row filter and Huffman-only deflate.
#: On radiographs (smooth anatomy under pixel noise) the files come out no larger than with
#: OpenCV's default filters and zlib strategy, and decode and encode faster: decoding is the
#: loader's main cost at small sizes. Any PNG reader reads them.
PNG_PARAMS = [cv2.IMWRITE_PNG_COMPRESSION, 3, cv2.IMWRITE_PNG_FILTER, cv2.IMWRITE_PNG_FILTER_UP,
              cv2.IMWRITE_PNG_STRATEGY, cv2.IMWRITE_PNG_STRATEGY_HUFFMAN_ONLY]  # fmt: skip


def target_scale(height: int, width: int, size: int) -> float:
    """prepared / original pixels: ``size / long side``, never above 1 (films are not enlarged)."""
    return min(1.0, float(size) / max(int(height), int(width)))


def prepare_film(
    source: str, size: int, bit_depth: int = 8
) -> tuple[np.ndarray, float, tuple[int, int]]:
    """Decode ``source`` once and resize it so that its long side is ``size`` pixels.

    Decoding is :func:`cxr.data.io.read_xray` (DICOM rescale, VOI LUT or window,
    MONOCHROME1 inverted) at ``bit_depth``; resizing keeps the aspect ratio with area
    interpolation (``cv2.INTER_AREA``); films whose long side is already <= ``size`` are kept.

    Returns:
        ``(film, scale, (original height, original width))``: the film H x W ``uint8``
        (``uint16`` at 16 bits), scale = prepared / original pixels.

    Raises:
        ImageReadError: naming ``source``.
    """
    img = read_xray(source, bit_depth)
    h, w = img.shape
    scale = target_scale(h, w, size)
    if scale < 1.0:
        out_wh = (max(1, int(round(w * scale))), max(1, int(round(h * scale))))
        img = cv2.resize(img, out_wh, interpolation=cv2.INTER_AREA)
    return img, scale, (h, w)


class FilmResult(dict):
    """What a worker returns for one film: ``index``, ``source_height``, ``source_width``,
    ``height``, ``width``, ``scale``, ``sha256`` (of the PNG bytes), ``data`` (the PNG bytes
    when not written to a file) or ``error`` (the reason the source could not be read)."""


def film_job(job: tuple) -> FilmResult:
    """Worker: ``(index, source, size, bit_depth, destination or None)`` -> :class:`FilmResult`.

    With a destination the PNG is written there atomically (temp file + rename) and not
    returned. An unreadable source gives a result with ``error`` set instead of raising.
    """
    index, source, size, bit_depth, dest = job
    try:
        img, scale, (src_h, src_w) = prepare_film(source, size, bit_depth)
    except ImageReadError as e:
        return FilmResult(index=index, error=str(e))
    ok, buf = cv2.imencode(".png", img, PNG_PARAMS)
    if not ok:
        return FilmResult(index=index, error=f"PNG encoding failed for {source}")
    data = buf.tobytes()
    h, w = img.shape
    res = FilmResult(index=index, height=h, width=w, scale=scale, source_height=src_h,
                     source_width=src_w, sha256=hashlib.sha256(data).hexdigest(), data=None)  # fmt: skip
    if dest is None:
        res["data"] = data
    else:
        write_bytes_atomic(dest, data)
    return res


_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")


def safe_keys(image_ids: Sequence) -> list[str]:
    """File-name-safe keys of ``image_ids`` (every character but letters, digits, ``_`` and
    ``-`` becomes ``_``: no dots, no slashes); two ids that would share a key get a suffix from
    their id's hash, so keys are unique and depend only on the ids."""
    keys = [_UNSAFE.sub("_", str(i)) or "_" for i in image_ids]
    count: dict[str, int] = {}
    for k in keys:
        count[k] = count.get(k, 0) + 1
    return [
        k if count[k] == 1 else f"{k}-{hashlib.sha1(str(i).encode()).hexdigest()[:10]}"
        for k, i in zip(keys, image_ids)
    ]


def _scale_annotation(a: dict, scale: float) -> dict:
    out = dict(a)
    box = BoxMode.convert(list(map(float, a["bbox"])), a.get("bbox_mode", BoxMode.XYXY_ABS),
                          BoxMode.XYXY_ABS)  # fmt: skip
    out["bbox"] = [float(v) * scale for v in box]
    out["bbox_mode"] = int(BoxMode.XYXY_ABS)
    if "area" in a:
        out["area"] = float(a["area"]) * scale * scale
    if isinstance(a.get("segmentation"), list):
        out["segmentation"] = [[float(v) * scale for v in poly] for poly in a["segmentation"]]
    return out


def scale_record(record: dict, film: FilmResult, file_name: str) -> dict:
    """``record`` for the prepared film: ``file_name``, ``height`` / ``width`` of the film, boxes
    converted to XYXY_ABS and multiplied by ``scale`` (``area`` by its square), plus
    ``orig_height``, ``orig_width``, ``scale`` and ``source_file`` (the original
    ``file_name``). Every other field is kept as it is."""
    out = dict(record)
    out.update(
        file_name=file_name, height=int(film["height"]), width=int(film["width"]),
        orig_height=int(film["source_height"]), orig_width=int(film["source_width"]),
        scale=float(film["scale"]), source_file=record.get("file_name"),
    )  # fmt: skip
    if "annotations" in record:
        out["annotations"] = [_scale_annotation(a, film["scale"]) for a in record["annotations"]]
    return out

"""Phantom films at their real size: 16-bit DICOMs of about 2,500 x 3,000 pixels in the VinDr-CXR
layout, on the real NIH box geometry.

Each film is a :func:`~cxr.data.phantom.render_phantom` radiograph rendered square at the long
side, resized (area interpolation) to ``width x height``, and stored as 16-bit data the way
computed radiography DICOMs are: 16 bits allocated, 12 stored (``stored = 16 x gray + dither``,
0-4095), a rescale intercept of -1024 (the modality LUT the readers must apply) and a window
covering the range.
Every second film is ``MONOCHROME1`` (stored inverted: high values dark). Boxes are the real NIH
boxes of the film's image, scaled from the 1024 px frame by ``width / 1024`` in x and
``height / 1024`` in y, written to ``train.csv`` with the VinDr class names
(:data:`NIH_TO_VINDR`) and reader ``R1``; :func:`cxr.data.datasets.load_vindr` reads the folder
(registered as ``phantom_vindr_{train,val,test,all}`` under ``<data root>/phantom_vindr``).

Transfer syntaxes (:data:`TRANSFER_SYNTAXES`): ``explicit`` (Explicit VR Little Endian,
uncompressed, about 15 MB a film) or ``rle`` (RLE Lossless: encapsulated, compressed; pydicom
encodes and decodes it with numpy alone, no plugin package; its pure-Python encoder takes
seconds a film, decoding is fast).

Films are chosen one per patient (seeded) among the NIH box images, so patient-level splits have
as many patients as films. Output is deterministic for the same arguments; a film whose file
exists is not rendered again (a killed run resumes).
"""

from __future__ import annotations

import io
import logging
import os

import cv2
import numpy as np

from ..fileio import write_bytes_atomic, write_text_atomic
from .phantom import NIH_SIZE, read_boxes, render_all, render_phantom

__all__ = [
    "NIH_TO_VINDR",
    "REAL_SIZE",
    "TRANSFER_SYNTAXES",
    "generate_phantom_dicoms",
    "select_films",
    "write_dicom_film",
]

logger = logging.getLogger(__name__)

REAL_SIZE = (3000, 2500)  # (height, width) pixels of a typical VinDr-CXR film
RESCALE_INTERCEPT = -1024.0
NIH_TO_VINDR = {
    "Atelectasis": "Atelectasis",
    "Cardiomegaly": "Cardiomegaly",
    "Effusion": "Pleural effusion",
    "Infiltrate": "Infiltration",
    "Mass": "Nodule/Mass",
    "Nodule": "Nodule/Mass",
    "Pneumonia": "Consolidation",
    "Pneumothorax": "Pneumothorax",
}
VINDR_HEADER = "image_id,class_name,class_id,rad_id,x_min,y_min,x_max,y_max"


def _syntaxes() -> dict:
    from pydicom.uid import ExplicitVRLittleEndian, RLELossless

    return {"explicit": ExplicitVRLittleEndian, "rle": RLELossless}


TRANSFER_SYNTAXES = ("explicit", "rle")


def write_dicom_film(
    path: str, stored: np.ndarray, photometric: str, transfer_syntax: str = "explicit"
) -> None:
    """Write ``stored`` (H x W ``uint16``, 0-4095) as a single-frame DX DICOM, atomically.

    The header carries ``RescaleIntercept`` :data:`RESCALE_INTERCEPT` (slope 1) and a window
    (center / width) spanning the stored range after rescale.

    Args:
        photometric: ``MONOCHROME2`` (high = bright) or ``MONOCHROME1`` (high = dark).
        transfer_syntax: a key of :data:`TRANSFER_SYNTAXES`.
    """
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, DigitalXRayImageStorageForPresentation
    from pydicom.uid import generate_uid

    if transfer_syntax not in TRANSFER_SYNTAXES:
        raise ValueError(
            f"transfer_syntax must be one of {TRANSFER_SYNTAXES}, got {transfer_syntax!r}"
        )
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = DigitalXRayImageStorageForPresentation
    uid = generate_uid(entropy_srcs=[os.path.basename(path)])  # deterministic per file name
    meta.MediaStorageSOPInstanceUID = uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(path, {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, uid
    ds.Modality, ds.SamplesPerPixel, ds.PhotometricInterpretation = "DX", 1, photometric
    ds.Rows, ds.Columns = stored.shape
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.RescaleSlope, ds.RescaleIntercept = 1.0, RESCALE_INTERCEPT
    ds.WindowCenter, ds.WindowWidth = 2048.0 + RESCALE_INTERCEPT, 4096.0
    ds.PixelData = np.ascontiguousarray(stored, np.uint16).tobytes()
    if transfer_syntax != "explicit":
        ds.compress(
            _syntaxes()[transfer_syntax], encoding_plugin="pydicom", generate_instance_uid=False
        )
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    write_bytes_atomic(path, buf.getvalue())


def render_dicom_job(job: tuple) -> None:
    """Worker: render one film and write it (``(path, index, seed, (h, w), boxes, syntax)``;
    boxes ``(label, x0, y0, x1, y1)`` XYXY_ABS in the 1024 px NIH frame)."""
    path, index, seed, (height, width), boxes, syntax = job
    if os.path.isfile(path):
        return
    side = max(height, width)
    rng = np.random.default_rng(np.random.SeedSequence([seed, index, 0xD1C0]))
    k = side / NIH_SIZE
    gray = render_phantom([(b[0], *(v * k for v in b[1:])) for b in boxes], side, rng)
    if (height, width) != (side, side):
        gray = cv2.resize(gray, (width, height), interpolation=cv2.INTER_AREA)
    stored = gray.astype(np.uint16) * np.uint16(16) + rng.integers(0, 16, gray.shape, np.uint16)
    photometric = "MONOCHROME1" if index % 2 else "MONOCHROME2"
    if photometric == "MONOCHROME1":
        stored = np.uint16(4095) - stored
    write_dicom_film(path, stored, photometric, syntax)


def select_films(boxes, num: int, seed: int) -> list[str]:
    """``num`` NIH box image names, one per patient, drawn with ``seed`` (sorted).

    Args:
        boxes: :func:`~cxr.data.phantom.read_boxes` table.
    """
    first = {}
    for name in sorted(boxes["image"].unique()):
        first.setdefault(name.split("_")[0], name)
    names = sorted(first.values())
    if not 0 < num <= len(names):
        raise ValueError(f"num must be in [1, {len(names)}] (patients with boxes), got {num}")
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0x44434D]))
    return sorted(rng.choice(names, size=num, replace=False).tolist())


def _csv_rows(images: list[str], boxes, height: int, width: int) -> list[str]:
    from .datasets.vindr import VINDR_CLASSES

    sx, sy = width / NIH_SIZE, height / NIH_SIZE
    rows = []
    for r in boxes[boxes["image"].isin(set(images))].itertuples(index=False):
        name = NIH_TO_VINDR[r.label]
        x0, y0 = r.x * sx, r.y * sy
        x1, y1 = min(x0 + r.w * sx, width), min(y0 + r.h * sy, height)
        rows.append(f"{os.path.splitext(r.image)[0]},{name},{VINDR_CLASSES.index(name)},R1,"
                    f"{x0:.3f},{y0:.3f},{x1:.3f},{y1:.3f}")  # fmt: skip
    return sorted(rows)


def generate_phantom_dicoms(
    output_dir: str,
    bbox_csv: str,
    num: int,
    *,
    height: int = REAL_SIZE[0],
    width: int = REAL_SIZE[1],
    transfer_syntax: str = "explicit",
    seed: int = 0,
    workers: int = 1,
) -> dict:
    """Render ``num`` phantom DICOM films into ``output_dir`` (VinDr-CXR layout).

    Writes ``output_dir/train/<image id>.dicom`` (image id = the NIH image name without
    ``.png``) and ``output_dir/train.csv`` (VinBigData columns, boxes XYXY_ABS pixels of the
    film, see the module docstring). Films already on disk are kept.

    Args:
        bbox_csv: NIH ``BBox_List_2017.csv[.gz]`` (boxes in the 1024 px frame).
        num: films (one per patient).
        height, width: film size in pixels.
        transfer_syntax: ``explicit`` or ``rle``.
        workers: rendering processes (1 = in this one).

    Returns:
        ``{"num_images", "num_boxes", "height", "width", "transfer_syntax"}``.
    """
    if transfer_syntax not in TRANSFER_SYNTAXES:
        raise ValueError(
            f"transfer_syntax must be one of {TRANSFER_SYNTAXES}, got {transfer_syntax!r}"
        )
    if min(height, width) < 32:
        raise ValueError(f"film size must be >= 32 pixels, got {height} x {width}")
    boxes = read_boxes(bbox_csv)
    images = select_films(boxes, num, seed)
    folder = os.path.join(output_dir, "train")
    os.makedirs(folder, exist_ok=True)
    jobs = []
    for index, name in enumerate(images):
        mine = boxes[boxes["image"] == name]
        b = [(r.label, r.x, r.y, r.x + r.w, r.y + r.h) for r in mine.itertuples(index=False)]
        path = os.path.join(folder, os.path.splitext(name)[0] + ".dicom")
        jobs.append((path, index, int(seed), (int(height), int(width)), b, transfer_syntax))
    render_all(jobs, workers, desc="phantom DICOMs", job_fn=render_dicom_job)
    rows = _csv_rows(images, boxes, height, width)
    text = "\n".join([VINDR_HEADER] + rows) + "\n"
    write_text_atomic(os.path.join(output_dir, "train.csv"), text)
    logger.info("Phantom DICOMs: %d films of %d x %d (%s) in %s", len(images), height, width,
                transfer_syntax, output_dir)  # fmt: skip
    return {"num_images": len(images), "num_boxes": len(rows), "height": int(height),
            "width": int(width), "transfer_syntax": transfer_syntax}  # fmt: skip

"""The bad-input corpus: generated broken images, DICOMs, annotation CSVs and COCO JSON files.

Each :class:`Case` writes its input into a folder and runs the product's reader on it. Its
``expect`` says what must happen: the file is read (``ok``), a documented error names the file,
row and field (``error``), or, with ``strict=False``, bad rows are repaired / skipped and the
count is logged (``lenient``). ``python -m tests.reliability.corpus`` runs every case and prints
the README table from what it observed.
"""
from __future__ import annotations

import json
import logging
import os
import sys
import tempfile
from dataclasses import dataclass, field
from typing import Callable

import cv2
import numpy as np

from tests.data.dataformats import NIH_BBOX_HEADER, write_dicom

VINDR_HEADER = "image_id,class_name,class_id,rad_id,x_min,y_min,x_max,y_max\n"
RSNA_HEADER = "patientId,x,y,width,height,Target\n"
IMG_H, IMG_W = 64, 80  # every generated image; NIH rows below refer to these pixels
GOOD_NIH = "00000001_000.png,Nodule,10,20,8,6\n"


@dataclass
class Case:
    """One bad (or odd) input and the outcome the README documents for it.

    Attributes:
        name: README row label.
        group: "image", "nih", "vindr", "rsna" or "coco".
        write: ``folder -> input path`` (writes the file and whatever it refers to).
        expect: ``"ok"``, ``"error"`` (strict and lenient alike) or ``"lenient"`` (strict
            raises; ``strict=False`` repairs / skips and logs a count).
        row, field: where the error points (``row`` is the 1-based CSV line or a JSON entry).
        log: substring of the lenient-mode warning (e.g. ``"skipped 1 row(s)"``).
        check: ``fn(result)`` asserting what the ``ok`` / lenient read returned (every ``ok``
            and ``lenient`` case has one; its return value is ignored).
    """

    name: str
    group: str
    write: Callable[[str], str]
    expect: str
    row: int | str | None = None
    field: str | None = None
    log: str | None = None
    check: Callable | None = None
    reason: str = ""
    names: str | None = None  # the file the error names, when not the input itself


def _png(folder: str, name: str, img: np.ndarray) -> str:
    path = os.path.join(folder, name)
    cv2.imwrite(path, img)
    return path


def _gray() -> np.ndarray:
    return (np.arange(IMG_H * IMG_W).reshape(IMG_H, IMG_W) % 200 + 20).astype(np.uint8)


def _bytes(name: str, make: Callable[[str], bytes]) -> Callable[[str], str]:
    def write(folder: str) -> str:
        good = _png(folder, "good.png", _gray())
        data = make(good)
        path = os.path.join(folder, name)
        with open(path, "wb") as f:
            f.write(data)
        return path

    return write


def _dicom(mutate: Callable | None = None, **kw) -> Callable[[str], str]:
    def write(folder: str) -> str:
        import pydicom

        px = (np.arange(IMG_H * IMG_W).reshape(IMG_H, IMG_W) * 3).astype(np.uint16)
        path = write_dicom(os.path.join(folder, "x.dcm"), px, **kw)
        if mutate is not None:
            ds = pydicom.dcmread(path)
            mutate(ds)
            ds.save_as(path)
        return path

    return write


def _del(attr: str):
    return lambda ds: delattr(ds, attr)


def _set(**values):
    return lambda ds: [setattr(ds, k, v) for k, v in values.items()]


def _nih_images(folder: str) -> str:
    root = os.path.join(folder, "images")
    os.makedirs(root, exist_ok=True)
    for name in ("00000001_000.png", "00000002_000.png"):
        _png(root, name, _gray())
    return root


def _nih(body: str | bytes, header: str = NIH_BBOX_HEADER) -> Callable[[str], str]:
    def write(folder: str) -> str:
        _nih_images(folder)
        path = os.path.join(folder, "BBox_List_2017.csv")
        data = body if isinstance(body, bytes) else (header + body).encode()
        with open(path, "wb") as f:
            f.write(data)
        return path

    return write


def _csv_with_dicom(image_dir: str, image: str, csv_name: str, default_header: str):
    """Writer of a CSV ``csv_name`` (header + body) beside ``image_dir/image`` (a DICOM)."""

    def make(body: str, header: str = default_header) -> Callable[[str], str]:
        def write(folder: str) -> str:
            os.makedirs(os.path.join(folder, image_dir), exist_ok=True)
            pixels = np.zeros((IMG_H, IMG_W), np.uint16)
            write_dicom(os.path.join(folder, image_dir, image), pixels)
            path = os.path.join(folder, csv_name)
            with open(path, "w") as f:
                f.write(header + body)
            return path

        return write

    return make


_vindr = _csv_with_dicom("train", "a.dicom", "train.csv", VINDR_HEADER)
_rsna = _csv_with_dicom("stage_2_train_images", "a.dcm", "stage_2_train_labels.csv", RSNA_HEADER)


COCO_GT = {
    "images": [{"id": 1, "width": IMG_W, "height": IMG_H}],
    "categories": [{"id": 1, "name": "Nodule"}],
    "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [1, 1, 5, 5]}],
}
COCO_DT = [{"image_id": 1, "category_id": 1, "bbox": [1, 1, 5, 5], "score": 0.9}]


def _coco(gt_edit: Callable | None = None, dt: list | None = None, raw: bytes | None = None):
    def write(folder: str) -> str:
        gt = json.loads(json.dumps(COCO_GT))
        if gt_edit is not None:
            gt_edit(gt)
        path = os.path.join(folder, "gt.json")
        with open(path, "wb") as f:
            f.write(raw if raw is not None else json.dumps(gt).encode())
        with open(os.path.join(folder, "dt.json"), "w") as f:
            json.dump(COCO_DT if dt is None else dt, f)
        return path

    return write


def _boxes(out: list[dict]) -> list:
    return [(d["image_id"], [[round(v, 2) for v in a["bbox"]] for a in d["annotations"]]) for d in out]


def _same_as_good(out) -> None:
    assert _boxes(out) == [("00000001_000", [[10.0, 20.0, 18.0, 26.0]])], _boxes(out)


def _no_images(out: list) -> None:
    assert out == [], out


def _image_without_boxes(image_id: str) -> Callable[[list], None]:
    def check(out: list) -> None:
        assert [(d["image_id"], d["annotations"]) for d in out] == [(image_id, [])], out

    return check


def _second_image_boxes(image_id: str, boxes: list) -> Callable[[list], None]:
    def check(out: list) -> None:
        assert len(out) == 2 and _boxes(out)[1] == (image_id, boxes), _boxes(out)

    return check


def _no_detections(result) -> None:
    assert len(result[4]) == 0, result[4]


def _gray_u8(img) -> None:
    assert img.dtype == np.uint8 and img.shape == (IMG_H, IMG_W)


def _rgba_check(img) -> None:
    _gray_u8(img)
    assert np.array_equal(img, _gray())  # equal R, G, B -> the same gray; alpha ignored


def _u16_check(img) -> None:
    _gray_u8(img)
    assert img.min() == 0 and img.max() == 255  # 16 bit scaled min-max


def _mono1_check(img) -> None:
    _gray_u8(img)
    assert img[0, 0] == 255 and img[-1, -1] == 0  # lowest stored value shown brightest


def _png_rgba(path: str) -> bytes:
    g = _gray()
    ok, buf = cv2.imencode(".png", np.dstack([g, g, g, np.full_like(g, 128)]))
    return buf.tobytes()


def _png_u16(path: str) -> bytes:
    ok, buf = cv2.imencode(".png", _gray().astype(np.uint16) * 250)
    return buf.tobytes()


def _truncated(path: str) -> bytes:
    data = open(path, "rb").read()
    return data[: len(data) // 2]


def _dup_rows() -> str:
    return GOOD_NIH + GOOD_NIH


CASES: list[Case] = [
    # --- image files (cxr.data.io.read_xray) -----------------------------------------------
    Case("zero-byte .png", "image", _bytes("zero.png", lambda p: b""), "error", reason="file is empty"),
    Case("truncated .png (first half)", "image", _bytes("trunc.png", _truncated), "error",
         reason="undecodable or truncated"),
    Case("text file named .png", "image", _bytes("text.png", lambda p: b"hello\n" * 20), "error",
         reason="undecodable"),
    Case("RGBA PNG", "image", _bytes("rgba.png", _png_rgba), "ok", check=_rgba_check),
    Case("16-bit PNG", "image", _bytes("u16.png", _png_u16), "ok", check=_u16_check),
    Case("DICOM MONOCHROME1", "image", _dicom(photometric="MONOCHROME1"), "ok", check=_mono1_check),
    Case("DICOM without pixel data", "image", _dicom(_del("PixelData")), "error",
         reason="no pixel data"),
    Case("DICOM 12 bits stored in 16", "image", _dicom(_set(BitsStored=12, HighBit=11)), "ok",
         check=_gray_u8),
    Case("DICOM BitsAllocated 12 (invalid)", "image", _dicom(_set(BitsAllocated=12)), "error",
         reason="Bits Allocated"),
    Case("DICOM pixel data shorter than Rows x Columns", "image",
         _dicom(_set(BitsAllocated=32, BitsStored=32, HighBit=31)), "error", reason="pixel data"),
    Case("DICOM without Rows", "image", _dicom(_del("Rows")), "error", reason="Rows"),
    Case("DICM magic, garbage after", "image",
         _bytes("fake.dcm", lambda p: b"\0" * 128 + b"DICM" + b"junk" * 20), "error",
         reason="not a readable DICOM"),
    # --- NIH BBox_List CSV (load_nih) ---------------------------------------------------------
    Case("empty CSV (0 bytes)", "nih", _nih(b""), "error", 1, "(header)"),
    Case("header only", "nih", _nih(""), "ok", check=_no_images),
    Case("missing columns (4 of 6)", "nih", _nih("00000001_000.png,Nodule,10,20\n",
         header="Image Index,Finding Label,x,y\n"), "error", 1, "w"),
    Case("extra columns (header and rows)", "nih", _nih(GOOD_NIH.strip() + ",,,,note\n",
         header=NIH_BBOX_HEADER.strip() + ",Comment\n"), "ok", check=_same_as_good),
    Case("first row longer than the header", "nih",
         _nih("00000002_000.png,Mass,1,2,3,4,,,,x,y\n" + GOOD_NIH), "error", 2, "(CSV syntax)"),
    Case("later row longer than the header (usecols: extra fields ignored)", "nih",
         _nih(GOOD_NIH + "00000002_000.png,Mass,1,2,3,4,,,,x,y\n"), "ok",
         check=_second_image_boxes("00000002_000", [[1.0, 2.0, 4.0, 6.0]])),
    Case("UTF-8 BOM", "nih", _nih(("\ufeff" + NIH_BBOX_HEADER + GOOD_NIH).encode()), "ok",
         check=_same_as_good),
    Case("CRLF line ends", "nih", _nih((NIH_BBOX_HEADER + GOOD_NIH).replace("\n", "\r\n").encode()),
         "ok", check=_same_as_good),
    Case("quoted fields", "nih", _nih('"00000001_000.png","Nodule","10","20","8","6"\n'), "ok",
         check=_same_as_good),
    Case("unbalanced quote", "nih", _nih(GOOD_NIH + '"00000002_000.png,Mass,1,2,3,4\n'), "error",
         3, "(CSV syntax)"),
    Case("not a CSV (binary bytes)", "nih", _nih(bytes(range(256)) * 4), "error", 1,
         "Finding Label"),
    Case("unknown class", "nih", _nih(GOOD_NIH + "00000002_000.png,Tumour,1,2,3,4\n"), "lenient",
         3, "Finding Label", "skipped 1 row(s)", check=_same_as_good),
    Case("NaN coordinate", "nih", _nih(GOOD_NIH + "00000002_000.png,Mass,nan,2,3,4\n"), "lenient",
         3, "x", "skipped 1 row(s)", check=_same_as_good),
    Case("text coordinate", "nih", _nih(GOOD_NIH + "00000002_000.png,Mass,1,two,3,4\n"),
         "lenient", 3, "y", "skipped 1 row(s)", check=_same_as_good),
    Case("row missing 3 fields", "nih", _nih(GOOD_NIH + "00000002_000.png,Mass,1\n"), "lenient",
         3, "y", "skipped 1 row(s)", check=_same_as_good),
    Case("negative width", "nih", _nih(GOOD_NIH + "00000002_000.png,Mass,10,2,-3,4\n"),
         "lenient", 3, "w", "skipped 1 row(s)", check=_same_as_good),
    Case("zero height", "nih", _nih(GOOD_NIH + "00000002_000.png,Mass,10,2,3,0\n"), "lenient",
         3, "h", "skipped 1 row(s)", check=_same_as_good),
    Case("box beyond the image (x + w > width)", "nih",
         _nih(GOOD_NIH + "00000002_000.png,Mass,70,2,30,4\n"), "lenient", 3, "w",
         "repaired 1 row(s)",
         check=_second_image_boxes("00000002_000", [[70.0, 2.0, 80.0, 6.0]])),
    Case("box wholly outside the image", "nih",
         _nih(GOOD_NIH + "00000002_000.png,Mass,500,2,30,4\n"), "lenient", 3, "x",
         "skipped 1 row(s)", check=_same_as_good),
    Case("duplicate row", "nih", _nih(_dup_rows()), "lenient", 3, "Image Index",
         "skipped 1 row(s)", check=_same_as_good),
    Case("path ../../etc/passwd", "nih", _nih(GOOD_NIH + "../../etc/passwd,Mass,1,2,3,4\n"),
         "lenient", 3, "Image Index", "skipped 1 row(s)", check=_same_as_good),
    Case("absolute path /etc/passwd", "nih", _nih(GOOD_NIH + "/etc/passwd,Mass,1,2,3,4\n"),
         "lenient", 3, "Image Index", "skipped 1 row(s)", check=_same_as_good),
    # --- VinDr-CXR train.csv (load_vindr) -------------------------------------------------------
    Case("VinDr: empty CSV", "vindr", _vindr("", header=""), "error", 1, "(header)"),
    Case("VinDr: missing column", "vindr", _vindr("a,Nodule/Mass,8\n",
         header="image_id,class_name,class_id\n"), "error", 1, "rad_id"),
    Case("VinDr: row longer than the header", "vindr",
         _vindr("a,Nodule/Mass,8,R1,1,2,10,12,99,99\n"), "error", 2, "(CSV syntax)"),
    Case("VinDr: unknown class_id", "vindr", _vindr("a,Nodule/Mass,99,R1,1,2,10,12\n"), "lenient",
         2, "class_id", "skipped 1 row(s)", check=_no_images),
    Case("VinDr: class_name does not match class_id", "vindr",
         _vindr("a,Nodule/Mass,3,R1,1,2,10,12\n"), "lenient", 2, "class_name", "skipped 1 row(s)",
         check=_no_images),
    Case("VinDr: image_id ../../etc/passwd", "vindr",
         _vindr("../../etc/passwd,Nodule/Mass,8,R1,1,2,10,12\n"), "lenient", 2, "image_id",
         "skipped 1 row(s)", check=_no_images),
    Case("VinDr: x_max < x_min", "vindr", _vindr("a,Nodule/Mass,8,R1,10,2,5,12\n"), "lenient", 2,
         "x_max", "skipped 1 row(s)", check=_image_without_boxes("a")),
    Case("VinDr: DICOM missing", "vindr", _vindr("zz,Nodule/Mass,8,R1,1,2,10,12\n"), "lenient",
         None, None, "unreadable image: 1", names="zz.dicom", check=_no_images),
    # --- RSNA stage_2_train_labels.csv (load_rsna) ----------------------------------------------
    Case("RSNA: Target not 0/1", "rsna", _rsna("a,1,2,3,4,2\n"), "lenient", 2, "Target",
         "skipped 1 row(s)", check=_no_images),
    Case("RSNA: Target=0 with a box", "rsna", _rsna("a,1,2,3,4,0\n"), "lenient", 2, "Target",
         "skipped 1 row(s)", check=_image_without_boxes("a")),
    Case("RSNA: missing column", "rsna", _rsna("a,1\n", header="patientId,x\n"), "error", 1,
         "Target"),
    # --- COCO JSON (tools/eval.py files mode: cxr.apps.coco_json.load_coco_files) ------------
    Case("COCO: not JSON", "coco", _coco(raw=b"{not json"), "error", reason="not valid JSON"),
    Case("COCO: no images key", "coco", _coco(lambda g: g.pop("images")), "error", None, "images"),
    Case("COCO: no categories key", "coco", _coco(lambda g: g.pop("categories")), "error", None,
         "categories"),
    Case("COCO: annotation without bbox", "coco",
         _coco(lambda g: g["annotations"][0].pop("bbox")), "error", "annotations[0]", "bbox"),
    Case("COCO: annotation not an object", "coco", _coco(lambda g: g["annotations"].append(3)),
         "error", "annotations[1]", None),
    Case("COCO: GT unknown category_id", "coco",
         _coco(lambda g: g["annotations"][0].update(category_id=7)), "error", "annotations[0]",
         "category_id"),
    Case("COCO: GT box w = 0", "coco", _coco(lambda g: g["annotations"][0].update(bbox=[1, 1, 0, 5])),
         "error", "annotations[0]", "bbox"),
    Case("COCO: GT box h < 0", "coco",
         _coco(lambda g: g["annotations"][0].update(bbox=[1, 1, 5, -1])), "error",
         "annotations[0]", "bbox"),
    Case("COCO: detection of unknown category_id", "coco",
         _coco(dt=[dict(COCO_DT[0], category_id=9)]), "ok",
         check=_no_detections, log="1 detections of categories not in"),
    Case("COCO: detection box w < 0", "coco", _coco(dt=[dict(COCO_DT[0], bbox=[1, 1, -2, 5])]),
         "error", "entry 0", "bbox", names="dt.json"),
    Case("COCO: detection without score", "coco", _coco(dt=[{"image_id": 1, "category_id": 1,
         "bbox": [1, 1, 5, 5]}]), "error", "entry 0", "score", names="dt.json"),
]  # fmt: skip


def run_case(case: Case, folder: str, strict: bool = True):
    """Write ``case``'s input into ``folder`` and read it with the product's reader."""
    from cxr.data.datasets.nih import load_nih
    from cxr.data.datasets.rsna import load_rsna
    from cxr.data.datasets.vindr import load_vindr
    from cxr.data.io import read_xray
    from cxr.apps.coco_json import load_coco_files

    os.makedirs(folder, exist_ok=True)
    path = case.write(folder)
    if case.group == "image":
        return read_xray(path)
    if case.group == "nih":
        return load_nih(path, os.path.join(folder, "images"), strict=strict)
    if case.group == "vindr":
        return load_vindr(path, os.path.join(folder, "train"), strict=strict)
    if case.group == "rsna":
        return load_rsna(path, os.path.join(folder, "stage_2_train_images"), strict=strict)
    return load_coco_files(path, os.path.join(folder, "dt.json"))


class _Capture(logging.Handler):
    def __init__(self):
        super().__init__(logging.WARNING)
        self.text = []

    def emit(self, record):
        self.text.append(record.getMessage())


def _short(text: str, limit: int = 150) -> str:
    text = text.replace("|", "\\|").replace("\n", " ")
    return text if len(text) <= limit else text[: limit - 1] + "…"


def observe(case: Case) -> tuple[str, str]:
    """``(strict outcome, lenient outcome)`` as README text, from actually running ``case``."""
    outcomes = []
    for strict in (True, False):
        if case.group in ("image", "coco") and not strict:
            outcomes.append("")  # no lenient mode: an image / COCO file is read or refused
            continue
        cap = _Capture()
        logging.getLogger("cxr").addHandler(cap)
        try:
            with tempfile.TemporaryDirectory() as d:
                try:
                    run_case(case, d, strict)
                    logged = [t.replace(d, "…") for t in cap.text]
                    counts = [t.split(": ", 1)[1] for t in logged if "row(s)" in t]
                    text = "read" + (f"; logged: {'; '.join(counts or logged)}" if logged else "")
                except Exception as e:  # noqa: BLE001  (reporting what happened)
                    text = f"{type(e).__name__}: {str(e).replace(d, '…')}"
        finally:
            logging.getLogger("cxr").removeHandler(cap)
        outcomes.append(_short(text))
    return outcomes[0], outcomes[1]


def markdown_table() -> str:
    """The README table: every case, with what strict and lenient loading did."""
    lines = ["| input | default (`strict=True`) | `strict=False` |", "|---|---|---|"]
    for c in CASES:
        s, lenient = observe(c)
        same = "same" if lenient == s else lenient
        lines.append(f"| {c.group}: {c.name} | {s} | {same or 'n/a'} |")
    return "\n".join(lines)


if __name__ == "__main__":
    import warnings

    warnings.filterwarnings("ignore")
    logging.getLogger("cxr").setLevel(logging.INFO)
    logging.getLogger("cxr").propagate = False
    cv2.setLogLevel(0) if hasattr(cv2, "setLogLevel") else None
    import cxr  # noqa: F401

    sys.stdout.write(markdown_table() + "\n")

"""Fixtures of the served app's tests: the demo RetinaNet exported once, films in the real
formats (phantom PNGs, a 16-bit DICOM carrying a patient name and ID), the reference answers
of ``tools/predict.py`` for them, and a real ``tools/serve.py`` process on loopback."""

from __future__ import annotations

import csv

import cv2
import numpy as np
import pytest

from benchmarks.serve import ServedProcess

from ..data.dataformats import write_dicom
from ..export.conftest import demo_retinanet, phantom_images  # noqa: F401
from ..tools.util import load_tool

PHANTOM_CLASSES = ["Atelectasis", "Cardiomegaly", "Effusion", "Infiltrate", "Mass", "Nodule",
                   "Pneumonia", "Pneumothorax"]  # fmt: skip
THRESHOLDS = {"Effusion": 0.6, "Infiltrate": 0.2}  # the others: the stored cm_threshold
PATIENT_NAME, PATIENT_ID = "Doe^Jane Quinn", "PID-7731-XQ"


@pytest.fixture(scope="session")
def model_path(demo_retinanet, tmp_path_factory):  # noqa: F811
    """The demo RetinaNet exported with the phantom class names and two operating points."""
    from cxr.export.exporter import export_model

    cfg, model = demo_retinanet
    out = str(tmp_path_factory.mktemp("served_model"))
    return export_model(cfg, model, out, class_names=PHANTOM_CLASSES, thresholds=THRESHOLDS)


def write_identified_dicom(path: str, gray: np.ndarray) -> str:
    """A 16-bit windowed DICOM of ``gray`` whose header names a patient (PATIENT_NAME/ID)."""
    import pydicom

    write_dicom(path, gray.astype(np.uint16) * 16 + 100, window=(2148, 4096))
    ds = pydicom.dcmread(path)
    ds.PatientName, ds.PatientID = PATIENT_NAME, PATIENT_ID
    ds.PatientBirthDate, ds.InstitutionName = "19610203", "St Quinn Hospital"
    ds.save_as(path, enforce_file_format=True)
    return path


@pytest.fixture(scope="session")
def films(phantom_images, tmp_path_factory):  # noqa: F811
    """{"png": phantom PNG, "dicom": extensionless 16-bit DICOM with a patient name and ID}."""
    root = tmp_path_factory.mktemp("films")
    png = str(root / "film1.png")
    cv2.imwrite(png, phantom_images[1])  # several positive findings
    dicom = write_identified_dicom(str(root / "IM0002"), phantom_images[2])
    return {"png": png, "dicom": dicom}


def _rows(path: str) -> list[list[str]]:
    with open(path, newline="") as f:
        return list(csv.reader(f))


@pytest.fixture(scope="session")
def reference(model_path, films, tmp_path_factory):
    """``tools/predict.py --backend onnxruntime`` on the films: per film, its
    predictions.csv rows (class, score, x1, y1, x2, y2) and findings.csv row."""
    out = tmp_path_factory.mktemp("reference") / "pred"
    load_tool("predict").main(["--backend", "onnxruntime", "--checkpoint", model_path, "--input",
                               *films.values(), "--output", str(out), "--no-overlays"])  # fmt: skip
    preds, finds = _rows(out / "predictions.csv"), _rows(out / "findings.csv")
    names = [h[len("score_") :] for h in finds[0][2:]]
    ref = {}
    for kind, path in films.items():
        boxes = [r[1:] for r in preds[1:] if r[0] == path]
        row = next(r for r in finds[1:] if r[0] == path)
        ref[kind] = {"boxes": boxes, "findings": row[1],
                     "scores": dict(zip(names, map(float, row[2:])))}  # fmt: skip
    return ref


class ServerProcess(ServedProcess):
    """``tools/serve.py`` in a fresh interpreter (``-X importtime``: its log lists every module
    it imports), run from an empty folder with its own empty TMPDIR."""

    def __init__(self, model: str, workdir, *args: str):
        self.workdir, self.tmpdir = workdir / "cwd", workdir / "tmp"
        self.workdir.mkdir()
        self.tmpdir.mkdir()
        super().__init__(model, str(workdir / "server.log"), *args,
                         python_flags=("-X", "importtime"), cwd=self.workdir,
                         env={"TMPDIR": str(self.tmpdir)})  # fmt: skip

    def imported_packages(self) -> set[str]:
        """Top-level packages the process imported (from its ``-X importtime`` lines)."""
        return {line.rsplit("|", 1)[1].strip().split(".")[0] for line in self.log().splitlines()
                if line.startswith("import time:") and line.count("|") == 2}  # fmt: skip

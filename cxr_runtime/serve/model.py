"""The served model and one film's answer.

The answer holds what ``tools/predict.py --backend onnxruntime --checkpoint model.onnx`` (no
``--config-file``) writes for the same file: the reader (:func:`~cxr_runtime.io.read_xray_bytes`,
the same decoding and DICOM windowing as :func:`~cxr_runtime.io.read_xray`), the detector, the
operating points stored in the model file and the decision rule
(:func:`~cxr_runtime.predict.predict_image`). Boxes are XYXY_ABS pixels of the original film.
"""

from __future__ import annotations

import base64
import logging
import os
import time
from typing import Callable

import numpy as np

from ..detector import Detections, OnnxDetector, resized_shape
from ..fileio import sha256_file
from ..io import ImageReadError, read_xray_bytes
from ..operating_points import class_thresholds
from ..predict import predict_image

__all__ = ["DEFAULT_MAX_PIXELS", "ServedModel"]

logger = logging.getLogger(__name__)

#: largest film, in pixels (width x height), decoded; larger headers are refused unread
DEFAULT_MAX_PIXELS = 40_000_000
#: long side, in pixels, of the film image returned for display (``display=true``)
DISPLAY_MAX_SIDE = 1024


def _display_png(gray: np.ndarray) -> str:
    """The film as a ``data:image/png;base64`` URL, its long side at most DISPLAY_MAX_SIDE."""
    import cv2

    h, w = gray.shape
    scale = min(1.0, DISPLAY_MAX_SIDE / max(h, w))
    if scale < 1.0:
        size = (max(1, round(w * scale)), max(1, round(h * scale)))
        gray = cv2.resize(gray, size, interpolation=cv2.INTER_AREA)
    ok, png = cv2.imencode(".png", gray)
    if not ok:
        raise RuntimeError("the film could not be encoded as PNG for display")
    return "data:image/png;base64," + base64.b64encode(png.tobytes()).decode("ascii")


class ServedModel:
    """An exported model as the app serves it.

    Attributes:
        predictor: ``HxWxC uint8 image -> Detections`` (the :class:`OnnxDetector`).
        class_names: names by class index (stored in the model file).
        thresholds: (C,) operating point per class: the model's stored ``thresholds``, else its
            ``cm_threshold``, as ``tools/predict.py`` uses them.
        card: the model card (``GET /v1/model``).
    """

    def __init__(
        self,
        predictor: Callable[[np.ndarray], Detections],
        metadata: dict,
        *,
        path: str,
        backend: str,
        sha256: str,
        max_pixels: int | None = DEFAULT_MAX_PIXELS,
    ):
        self.predictor = predictor
        self.class_names: list[str] = list(metadata["class_names"])
        stored = metadata.get("thresholds") or None
        self.cm_threshold = float(metadata["cm_threshold"])
        self.thresholds = class_thresholds(self.class_names, stored, self.cm_threshold)
        self.max_pixels = max_pixels
        self.model_id = f"sha256:{sha256[:16]}"
        self.card = {
            "model_id": self.model_id,
            "name": os.path.basename(os.path.dirname(os.path.abspath(path))) + "/"
            + os.path.basename(path),
            "sha256": sha256,
            "backend": backend,
            "meta_architecture": metadata.get("meta_architecture", ""),
            "class_names": list(self.class_names),
            "operating_points": dict(zip(self.class_names, self.thresholds.tolist())),
            "cm_threshold": self.cm_threshold,
            "input_size": {"min_size_test": int(metadata["min_size_test"]),
                           "max_size_test": int(metadata["max_size_test"])},
        }  # fmt: skip

    @classmethod
    def load(
        cls,
        path: str,
        backend: str = "onnxruntime",
        threads: int = 0,
        max_pixels: int | None = DEFAULT_MAX_PIXELS,
    ) -> "ServedModel":
        """Load ``path`` (a ``model.onnx`` of ``tools/export.py``) with ``backend``.

        Raises:
            ValueError when the file is not a ``.onnx`` file or has no cxr metadata;
            FileNotFoundError when it does not exist.
        """
        if not path.endswith(".onnx"):
            raise ValueError(
                f"--checkpoint must be a model.onnx from tools/export.py, got {path!r}"
            )
        if backend == "onnxruntime":  # a hospital's server sends nothing to third parties
            from ..detector import import_onnxruntime

            import_onnxruntime().disable_telemetry_events()
        detector = OnnxDetector(path, engine=backend, num_threads=threads)
        return cls(detector, detector.metadata, path=path, backend=backend,
                   sha256=sha256_file(path), max_pixels=max_pixels)  # fmt: skip

    def predict(self, data: bytes, name: str, dicom: bool | None, display: bool = False) -> dict:
        """One film's answer (``POST /v1/predict``).

        Args:
            data: the uploaded file.
            name: used for its extension only (``.dcm``: DICOM without a preamble) and in
                error messages; never logged.
            dicom: True when the request declared DICOM (``application/dicom``), else None.
            display: add ``display_png``, the film as the model read it (DICOM: windowed).

        Raises:
            cxr_runtime.io.ImageReadError for unreadable, empty, too large or too narrow films.
        """
        t0 = time.perf_counter()
        gray = read_xray_bytes(data, name, dicom=dicom, max_pixels=self.max_pixels)
        size = self.card["input_size"]
        if min(resized_shape(*gray.shape, size["min_size_test"], size["max_size_test"])) < 1:
            raise ImageReadError(name, f"a {gray.shape[1]} x {gray.shape[0]} film is too narrow "
                                 "to be resized to the model's input size")  # fmt: skip
        t1 = time.perf_counter()
        p = predict_image(self.predictor, gray, self.thresholds, 1)
        t2 = time.perf_counter()
        names, thr = self.class_names, self.thresholds
        detections = [
            {"class_name": names[c], "score": float(s), "x0": float(b[0]), "y0": float(b[1]),
             "x1": float(b[2]), "y1": float(b[3]), "positive": bool(k)}
            for b, s, c, k in zip(p.boxes, p.scores, p.classes, p.positive)
        ]  # fmt: skip
        findings = [
            {"class_name": n, "score": float(s), "operating_point": float(t), "positive": bool(f)}
            for n, s, t, f in zip(names, p.image_scores, thr, p.findings)
        ]
        out = {
            "model_id": self.model_id,
            "image": {"height": int(gray.shape[0]), "width": int(gray.shape[1])},
            "detections": detections,
            "findings": findings,
            "positive_findings": [f["class_name"] for f in findings if f["positive"]],
            "timing_ms": {"read": (t1 - t0) * 1000, "predict": (t2 - t1) * 1000},
        }
        if display:
            out["display_png"] = _display_png(gray)
        out["timing_ms"]["total"] = (time.perf_counter() - t0) * 1000
        logger.info(
            "predicted a %d x %d film: %d detections, %d positive findings, %.0f ms",
            gray.shape[1], gray.shape[0], len(detections), len(out["positive_findings"]),
            out["timing_ms"]["total"],
        )  # fmt: skip
        return out

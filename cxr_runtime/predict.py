"""Prediction on X-ray files: the loop behind ``tools/predict.py``, for any backend.

The loop takes a predictor ``HxWxC uint8 image -> Detections`` (boxes XYXY_ABS in the image's
pixels): :class:`~cxr_runtime.detector.OnnxDetector` on the torch-free path
(``tools/predict.py --backend onnxruntime`` without ``--config-file``, :func:`run_predict`), or
the PyTorch model through an adapter (:mod:`cxr.apps.predictor`).

Outputs (in an output folder that is neither an input folder, nor inside one, nor the folder of
an input file):

- ``predictions.csv``: ``file, class, score, x1, y1, x2, y2`` — every detection, XYXY_ABS
  pixels of the original image;
- ``findings.csv``: per image, ``file, findings`` (classes positive at their operating point by
  :func:`~cxr_runtime.operating_points.positive_findings`, ``;``-separated, or
  ``No finding``) then each class's image score: its highest box score, or the predictor's
  ``Detections.image_scores`` (an image-label classifier, which has no boxes and so no
  ``predictions.csv`` rows);
- ``overlays/NNNNN_<name>.png``: the image with the boxes at or above the operating points (and
  whatever ``overlay_hooks`` add, e.g. ``NNNNN_<name>_gradcam.png``);
- ``errors.csv`` (when any): ``file, error`` for each input that is not a readable image;
- ``log.txt`` (the tools).

Images are read, predicted and written one at a time (memory stays flat over many images).
Files in input folders are taken by extension (PNG, JPEG, DICOM) or, whatever their name, by
the DICOM ``DICM`` preamble; other files are listed in ``errors.csv`` as not images.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import dataclasses
import logging
import os
import sys
from typing import Callable, Iterator, Sequence

import numpy as np

from .detector import Detections
from .fileio import atomic_open, write_csv_atomic, write_png_atomic
from .io import ImageReadError, is_dicom, read_xray
from .operating_points import class_thresholds, load_thresholds, positive_findings
from .paths import check_predict_output, input_not_found

__all__ = [
    "IMAGE_EXTENSIONS",
    "PredictedImage",
    "add_backend_argument",
    "draw_overlay",
    "iter_image_files",
    "parse_predict_args",
    "predict_files",
    "predict_image",
    "run_predict",
    "runs_without_torch",
    "scan_inputs",
    "setup_logging",
]

logger = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".dcm", ".dicom")
NOT_AN_IMAGE = "not an image: no PNG/JPEG/DICOM extension and no DICOM 'DICM' preamble"


def scan_inputs(inputs: Sequence[str]) -> Iterator[tuple[str, str | None]]:
    """Walk ``inputs``: yield ``(path, None)`` for each image to read and ``(path, reason)``
    for each file of an input folder that is not an image.

    Given files are yielded as images (the reader decides). Folders are walked recursively in
    sorted order; a file is an image when its extension is in :data:`IMAGE_EXTENSIONS`
    (case-insensitive) or it starts with the DICOM preamble (extensionless PACS exports such
    as ``IM0001``). Hidden files (``.name``) are passed over.

    Raises:
        FileNotFoundError for an input path that does not exist.
    """
    for p in inputs:
        if os.path.isfile(p):
            yield p, None
        elif os.path.isdir(p):
            for root, dirs, files in os.walk(p):
                dirs.sort()
                for f in sorted(files):
                    if f.startswith("."):
                        continue
                    path = os.path.join(root, f)
                    ok = f.lower().endswith(IMAGE_EXTENSIONS) or is_dicom(path)
                    yield path, None if ok else NOT_AN_IMAGE
        else:
            raise input_not_found("input", p, "--input")


def iter_image_files(inputs: Sequence[str]) -> Iterator[str]:
    """The image paths of :func:`scan_inputs` (non-images left out)."""
    for path, reason in scan_inputs(inputs):
        if reason is None:
            yield path


def draw_overlay(gray: np.ndarray, boxes: np.ndarray, labels: list[str]) -> np.ndarray:
    """BGR copy of ``gray`` (HxW uint8) with ``boxes`` (XYXY_ABS pixels) drawn in red and
    labelled."""
    import cv2

    img = cv2.cvtColor(gray, cv2.COLOR_GRAY2BGR)
    t = max(1, round(max(gray.shape) / 400))
    for (x1, y1, x2, y2), text in zip(boxes.round().astype(int), labels):
        cv2.rectangle(img, (x1, y1), (x2, y2), (0, 0, 255), t)
        cv2.putText(
            img,
            text,
            (x1, max(y1 - 4 * t, 10)),
            cv2.FONT_HERSHEY_SIMPLEX,
            0.4 * t,
            (0, 255, 255),
            t,
        )
    return img


@dataclasses.dataclass
class PredictedImage:
    """One predicted image, as given to the ``overlay_hooks`` of :func:`predict_files`.

    Attributes:
        index: position of the file among the inputs (the ``NNNNN`` of the overlay names).
        path: the input file.
        image: (H, W, C) uint8, what the predictor was given.
        boxes: (R, 4) float64 XYXY_ABS pixels of ``image``; scores: (R,); classes: (R,) int64.
        positive: (R,) bool, the boxes at or above their class's operating point.
        image_scores: (C,) the image's score per class (``findings.csv``).
        findings: (C,) bool, the classes positive at their operating point
            (:func:`~cxr_runtime.operating_points.positive_findings` of ``image_scores``).
    """

    index: int
    path: str
    image: np.ndarray
    boxes: np.ndarray
    scores: np.ndarray
    classes: np.ndarray
    positive: np.ndarray
    image_scores: np.ndarray | None = None
    findings: np.ndarray | None = None


def predict_image(
    predictor: Callable[[np.ndarray], Detections],
    gray: np.ndarray,
    thresholds: np.ndarray,
    in_channels: int = 1,
    *,
    index: int = 0,
    path: str = "",
) -> PredictedImage:
    """Detections and findings of one film: the rows ``predictions.csv`` and ``findings.csv``
    hold for it (the served app answers with the same).

    Args:
        predictor: ``HxWxC uint8 image -> Detections`` (boxes XYXY_ABS in the image's pixels).
        gray: the film, H x W uint8 (:func:`~cxr_runtime.io.read_xray`).
        thresholds: (C,) operating point per class
            (:func:`~cxr_runtime.operating_points.class_thresholds`).
        in_channels: channels given to the predictor (the gray film repeated).
        index, path: recorded in the result.

    Returns:
        a :class:`PredictedImage`, boxes XYXY_ABS pixels of ``gray``; ``image_scores`` each
        class's highest box score (or the predictor's own image scores).
    """
    img = np.repeat(gray[:, :, None], in_channels, axis=2)
    det: Detections = predictor(img)
    boxes = np.asarray(det.boxes, np.float64).reshape(-1, 4)
    scores = np.asarray(det.scores, np.float64)
    classes = np.asarray(det.classes, np.int64)
    img_scores = np.zeros(len(thresholds))
    np.maximum.at(img_scores, classes, scores)
    if det.image_scores is not None:  # a model that scores the image itself
        img_scores = np.asarray(det.image_scores, np.float64).reshape(len(thresholds))
    keep = np.asarray(positive_findings(scores, thresholds[classes]), bool).reshape(-1)
    findings = positive_findings(img_scores, thresholds)
    return PredictedImage(index, path, img, boxes, scores, classes, keep, img_scores, findings)


#: ``hook(predicted) -> {suffix: BGR uint8 image}``: extra overlays, written as
#: ``overlays/NNNNN_<name><suffix>.png``.
OverlayHook = Callable[[PredictedImage], "dict[str, np.ndarray]"]


class _Run:
    """State of one :func:`predict_files` call: the predictor, thresholds and counters."""

    def __init__(self, predictor, class_names, thr, in_channels: int, overlay_dir: str | None,
                 overlay_hooks: Sequence[OverlayHook] = ()):  # fmt: skip
        self.predictor, self.names, self.thr = predictor, list(class_names), thr
        self.in_channels, self.overlay_dir = in_channels, overlay_dir
        self.hooks = list(overlay_hooks)
        self.errors: list[list[str]] = []
        self.stats = {"images": 0, "detections": 0, "errors": 0, "not_images": 0}
        self.stats["positive_images"] = 0

    def image(self, i: int, path: str, preds, finds) -> None:
        """Predict one file and write its rows (errors are recorded, not raised)."""
        try:
            gray = read_xray(path)
        except ImageReadError as e:
            logger.warning("Skipping %s: %s", path, e)
            self.errors.append([path, str(e)])
            return
        p = predict_image(self.predictor, gray, self.thr, self.in_channels, index=i, path=path)
        for b, s, c in zip(p.boxes, p.scores, p.classes):
            preds.writerow([path, self.names[c], f"{s:.6f}", *(f"{v:.2f}" for v in b)])
        pos = [n for n, f in zip(self.names, p.findings) if f]
        finds.writerow(
            [path, ";".join(pos) if pos else "No finding", *(f"{v:.6f}" for v in p.image_scores)]
        )
        if self.overlay_dir:
            self._overlays(gray, p)
        self.stats["images"] += 1
        self.stats["detections"] += len(p.scores)
        self.stats["positive_images"] += bool(pos)

    def _overlays(self, gray: np.ndarray, p: PredictedImage) -> None:
        k = p.positive
        labels = [f"{self.names[c]} {s:.2f}" for c, s in zip(p.classes[k], p.scores[k])]
        stem = os.path.join(
            self.overlay_dir, f"{p.index:05d}_{os.path.splitext(os.path.basename(p.path))[0]}"
        )
        write_png_atomic(stem + ".png", draw_overlay(gray, p.boxes[k], labels))
        for hook in self.hooks:
            for suffix, bgr in hook(p).items():
                write_png_atomic(f"{stem}{suffix}.png", bgr)


def predict_files(
    predictor: Callable[[np.ndarray], Detections],
    inputs: Sequence[str],
    output_dir: str,
    class_names: Sequence[str],
    thresholds: dict[str, float] | None = None,
    cm_threshold: float = 0.3,
    in_channels: int = 3,
    overlays: bool = True,
    overlay_hooks: Sequence[OverlayHook] = (),
) -> dict:
    """Predict every image of ``inputs`` and stream the output files (module docstring).

    Args:
        predictor: callable ``HxWxC uint8 image -> Detections`` (boxes XYXY_ABS in the
            image's pixels), e.g. an :class:`~cxr_runtime.detector.OnnxDetector`.
        inputs: files and/or folders (PNG, JPEG, DICOM).
        output_dir: output folder (checked by :func:`check_predict_output`).
        class_names: names by class index.
        thresholds: class name -> operating point (thresholds.json); others use cm_threshold.
        in_channels: channels of the image given to the predictor (the gray image repeated);
            1 for an ``OnnxDetector``, which repeats after resizing.
        overlays: write overlay PNGs.
        overlay_hooks: extra overlays per image (:data:`OverlayHook`), when ``overlays``.

    Returns:
        ``{"images", "detections", "errors", "not_images", "positive_images"}`` counts;
        ``errors`` counts every ``errors.csv`` row (unreadable files and non-images).
    """
    from tqdm import tqdm

    inputs = list(inputs)
    check_predict_output(output_dir, inputs)
    os.makedirs(output_dir, exist_ok=True)
    thr = class_thresholds(class_names, thresholds, cm_threshold)
    ov_dir = os.path.join(output_dir, "overlays") if overlays else None
    if ov_dir:
        os.makedirs(ov_dir, exist_ok=True)
    run = _Run(predictor, class_names, thr, in_channels, ov_dir, overlay_hooks)

    with contextlib.ExitStack() as stack:
        preds, finds = (
            csv.writer(stack.enter_context(atomic_open(os.path.join(output_dir, f), newline="")))
            for f in ("predictions.csv", "findings.csv")
        )
        preds.writerow(["file", "class", "score", "x1", "y1", "x2", "y2"])
        finds.writerow(["file", "findings", *[f"score_{n}" for n in class_names]])
        files = list(scan_inputs(inputs))
        for i, (path, reason) in enumerate(tqdm(files, desc="predict", unit="file", disable=None)):
            if reason is not None:
                run.errors.append([path, reason])
                run.stats["not_images"] += 1
                continue
            run.image(i, path, preds, finds)
    run.stats["errors"] = len(run.errors)
    if run.errors:
        write_csv_atomic(os.path.join(output_dir, "errors.csv"), ["file", "error"], run.errors)
        logger.warning(
            "%d inputs were not read (%d not images); listed in %s",
            len(run.errors),
            run.stats["not_images"],
            os.path.join(output_dir, "errors.csv"),
        )
    return run.stats


# ---------------------------------------------------------------------------------------------
# tools/predict.py


def add_backend_argument(parser: argparse.ArgumentParser) -> None:
    """``--backend`` of tools/eval.py and tools/predict.py (inference backends by name)."""
    parser.add_argument(
        "--backend",
        default="torch",
        choices=("torch", "onnxruntime", "openvino"),
        help="torch (.pth, BatchNorm folded), onnxruntime or openvino (--checkpoint "
        "DIR/model.onnx from tools/export.py, run by ONNX Runtime or OpenVINO); docs/deploy.md",
    )


def _predict_parser(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description=description, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--config-file",
        default="",
        help="model config (required with --backend torch; with onnxruntime it supplies the "
        "data set / class names, else they come from the model.onnx)",
    )
    p.add_argument("--checkpoint", required=True, help="model weights (.pth) or model.onnx")
    add_backend_argument(p)
    p.add_argument("--input", nargs="+", required=True, help="image files and/or folders")
    p.add_argument("--output", required=True, help="output folder (not beside the inputs)")
    p.add_argument("--thresholds", default="", help="thresholds.json (per-class operating points)")
    p.add_argument(
        "--cm-threshold",
        type=float,
        default=None,
        help="threshold for classes without an operating point (default CXR.EVAL, or the "
        "value stored in model.onnx)",
    )
    p.add_argument(
        "--classes",
        default="",
        help="comma-separated class names (default: the config's dataset metadata, or the "
        "names stored in model.onnx)",
    )
    p.add_argument("--no-overlays", action="store_true", help="skip the overlay PNGs")
    p.add_argument(
        "--gradcam", action="store_true", help="also write Grad-CAM overlays of the positive boxes"
    )
    p.add_argument(
        "opts", nargs=argparse.REMAINDER, help="KEY VALUE config overrides (with --config-file)"
    )
    return p


def runs_without_torch(args: argparse.Namespace) -> bool:
    """True when ``tools/predict.py`` takes the torch-free path: ``--backend onnxruntime`` (or
    ``openvino``) and no ``--config-file`` (everything the model needs is stored in the exported
    file)."""
    return args.backend in ("onnxruntime", "openvino") and not args.config_file


def parse_predict_args(argv: Sequence[str] | None, description: str) -> argparse.Namespace:
    """The arguments of ``tools/predict.py``, checked (argparse errors exit with status 2).

    Args:
        argv: the command line (None: ``sys.argv[1:]``).
        description: the tool's help text.
    """
    p = _predict_parser(description)
    args = p.parse_args(argv)
    if args.backend == "torch" and not args.config_file:
        p.error("--config-file is required with --backend torch")
    if runs_without_torch(args) and args.opts:
        p.error(
            f"KEY VALUE overrides {' '.join(args.opts)!r} need --config-file: without one, "
            "model.onnx's own settings are used (sizes and post-processing are fixed at export)"
        )
    if runs_without_torch(args) and args.gradcam:
        p.error("--gradcam needs the PyTorch model (--backend torch)")
    return args


class _PlainFormatter(logging.Formatter):
    def __init__(self):
        super().__init__("[%(asctime)s] %(name)s %(levelname)s: %(message)s", "%m/%d %H:%M:%S")


def setup_logging(output_dir: str | None) -> None:
    """Log ``cxr_runtime`` to the console and ``<output_dir>/log.txt`` (appended), replacing
    the handlers an earlier call set up.

    Args:
        output_dir: folder of ``log.txt`` (created); None = console only.
    """
    log = logging.getLogger("cxr_runtime")
    for h in [h for h in log.handlers if isinstance(h.formatter, _PlainFormatter)]:
        log.removeHandler(h)
        h.close()
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stdout)]
    if output_dir:
        os.makedirs(output_dir, exist_ok=True)
        handlers.append(logging.FileHandler(os.path.join(output_dir, "log.txt"), "a", "utf-8"))
    for h in handlers:
        h.setFormatter(_PlainFormatter())
        log.addHandler(h)
    log.setLevel(logging.INFO)
    log.propagate = False


def _class_names(classes: str, detector) -> list[str]:
    names = [c.strip() for c in classes.split(",") if c.strip()] or detector.class_names
    if len(names) != len(detector.class_names):
        raise SystemExit(
            f"--classes names {len(names)} classes {names} but {detector.path} has "
            f"{len(detector.class_names)}: {detector.class_names}"
        )
    return list(names)


def run_predict(args: argparse.Namespace) -> dict:
    """``tools/predict.py`` without torch: an exported ``model.onnx`` run by ONNX Runtime on
    every input image; class names, operating points and sizes come from the file's metadata
    (``--classes`` / ``--thresholds`` / ``--cm-threshold`` replace them).

    Returns:
        :func:`predict_files`' counts.

    Raises:
        ValueError when ``--checkpoint`` is not a ``.onnx`` file; SystemExit when ``--classes``
        does not name as many classes as the model has.
    """
    from .detector import OnnxDetector

    check_predict_output(args.output, args.input)
    setup_logging(args.output)
    if not args.checkpoint.endswith(".onnx"):
        raise ValueError(
            f"--backend {args.backend} needs --checkpoint DIR/model.onnx (tools/export.py), "
            f"got {args.checkpoint!r}"
        )
    detector = OnnxDetector(args.checkpoint, engine=args.backend)
    meta = detector.metadata
    names = _class_names(args.classes, detector)
    thresholds = load_thresholds(args.thresholds) if args.thresholds else meta.get("thresholds")
    cm = meta["cm_threshold"] if args.cm_threshold is None else args.cm_threshold
    logger.info(
        "Predicting with %s (%s, %s, %d classes)",
        args.checkpoint,
        args.backend,
        meta.get("meta_architecture", "?"),
        len(names),
    )
    return predict_files(
        detector, args.input, args.output, names, thresholds or None, cm, 1, not args.no_overlays
    )

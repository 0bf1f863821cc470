"""Prediction on X-ray files (what ``tools/predict.py`` drives).

Outputs (in an output folder that is neither an input folder, nor inside one, nor the folder of
an input file):

- ``predictions.csv``: ``file, class, score, x1, y1, x2, y2`` — every detection, XYXY_ABS
  pixels of the original image;
- ``findings.csv``: per image, ``file, findings`` (classes positive at their operating point by
  :func:`~cxr.evaluation.operating_points.positive_findings`, ``;``-separated, or
  ``No finding``) then each class's max score;
- ``overlays/NNNNN_<name>.png``: the image with the boxes at or above the operating points;
- ``errors.csv`` (when any): ``file, error`` for each input that is not a readable image.

Images are read, predicted and written one at a time (memory stays flat over many images).
Files in input folders are taken by extension (PNG, JPEG, DICOM) or, whatever their name, by
the DICOM ``DICM`` preamble; other files are listed in ``errors.csv`` as not images.
"""

from __future__ import annotations

import contextlib
import csv
import logging
import os
from typing import Iterator, Sequence

import detectron2.data.transforms as T
import numpy as np
from detectron2.data import MetadataCatalog
from detectron2.engine import DefaultPredictor
from tqdm import tqdm

from ..data.io import ImageReadError, is_dicom, read_xray
from ..evaluation.operating_points import class_thresholds, positive_findings
from ..evaluation.report import write_csv
from ..fileio import atomic_open, write_bytes_atomic
from ..modeling.gradcam import image_detection_cam, overlay
from .model import load_inference_model
from .paths import check_predict_output, input_not_found

__all__ = [
    "IMAGE_EXTENSIONS",
    "XrayPredictor",
    "check_predict_output",
    "class_names_from_cfg",
    "iter_image_files",
    "predict_files",
    "scan_inputs",
]

logger = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".dcm", ".dicom")
NOT_AN_IMAGE = "not an image: no PNG/JPEG/DICOM extension and no DICOM 'DICM' preamble"


class XrayPredictor(DefaultPredictor):
    """detectron2's ``DefaultPredictor`` for a cxr config and checkpoint: one HxWxC uint8
    image in, ``{"instances"}`` out (boxes XYXY_ABS in the input image's pixels).

    ``DefaultPredictor.__init__`` is not called: it would load ``MODEL.WEIGHTS`` with
    detectron2's pickle-capable checkpointer and ignore EMA weights; this sets the same
    attributes with :func:`~cxr.apps.model.load_inference_model` and reuses its ``__call__``
    (flip for RGB models, ``ResizeShortestEdge(INPUT.MIN_SIZE_TEST, INPUT.MAX_SIZE_TEST)``).

    Args:
        cfg: config of the model.
        checkpoint: weights to load (ignored when ``model`` is given).
        model: an already built model in eval mode (any module taking detectron2's list of
            ``{"image", "height", "width"}`` and returning ``[{"instances"}]``), e.g. another
            inference backend.
    """

    def __init__(self, cfg, checkpoint: str = "", *, model=None):
        self.cfg = cfg.clone()
        self.model = model if model is not None else load_inference_model(cfg, checkpoint)[0]
        if len(cfg.DATASETS.TEST):
            self.metadata = MetadataCatalog.get(cfg.DATASETS.TEST[0])
        self.aug = T.ResizeShortestEdge(
            [cfg.INPUT.MIN_SIZE_TEST, cfg.INPUT.MIN_SIZE_TEST], cfg.INPUT.MAX_SIZE_TEST
        )
        self.input_format = cfg.INPUT.FORMAT
        assert self.input_format in ("RGB", "BGR"), self.input_format


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


def _overlay(gray: np.ndarray, boxes: np.ndarray, labels: list[str]) -> np.ndarray:
    """BGR copy of ``gray`` with ``boxes`` (XYXY_ABS) drawn in red and labelled."""
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


class _Run:
    """State of one :func:`predict_files` call: the predictor, thresholds and counters."""

    def __init__(
        self, predictor, class_names, thr, in_channels: int, overlay_dir: str | None,
        gradcam: bool = False,
    ):  # fmt: skip
        self.predictor, self.names, self.thr = predictor, list(class_names), thr
        self.gradcam = gradcam
        self.in_channels, self.overlay_dir = in_channels, overlay_dir
        self.errors: list[dict] = []
        self.stats = {"images": 0, "detections": 0, "errors": 0, "not_images": 0}
        self.stats["positive_images"] = 0

    def image(self, i: int, path: str, preds, finds) -> None:
        """Predict one file and write its rows (errors are recorded, not raised)."""
        try:
            gray = read_xray(path)
        except ImageReadError as e:
            logger.warning("Skipping %s: %s", path, e)
            self.errors.append({"file": path, "error": str(e)})
            return
        img = np.repeat(gray[:, :, None], self.in_channels, axis=2)
        inst = self.predictor(img)["instances"].to("cpu")
        boxes = inst.pred_boxes.tensor.numpy().astype(np.float64)
        scores = inst.scores.numpy().astype(np.float64)
        classes = inst.pred_classes.numpy().astype(np.int64)
        for b, s, c in zip(boxes, scores, classes):
            preds.writerow([path, self.names[c], f"{s:.6f}", *(f"{v:.2f}" for v in b)])
        img_scores = np.zeros(len(self.names))
        np.maximum.at(img_scores, classes, scores)
        pos = [n for n, p in zip(self.names, positive_findings(img_scores, self.thr)) if p]
        finds.writerow(
            [path, ";".join(pos) if pos else "No finding", *(f"{v:.6f}" for v in img_scores)]
        )
        if self.overlay_dir:
            self._overlay(i, path, gray, boxes, scores, classes)
        if self.overlay_dir and self.gradcam:
            self._gradcam(i, path, img, boxes, scores, classes)
        self.stats["images"] += 1
        self.stats["detections"] += len(scores)
        self.stats["positive_images"] += bool(pos)

    def _overlay(self, i, path, gray, boxes, scores, classes) -> None:
        import cv2

        keep = positive_findings(scores, self.thr[classes]) if len(classes) else []
        keep = np.asarray(keep, bool)
        labels = [f"{self.names[c]} {s:.2f}" for c, s in zip(classes[keep], scores[keep])]
        ok, buf = cv2.imencode(".png", _overlay(gray, boxes[keep], labels))
        stem = os.path.splitext(os.path.basename(path))[0]
        write_bytes_atomic(os.path.join(self.overlay_dir, f"{i:05d}_{stem}.png"), buf.tobytes())


    def _gradcam(self, i, path, img, boxes, scores, classes) -> None:
        """Grad-CAM of the boxes at their operating points, one heat map per image."""
        import cv2

        keep = positive_findings(scores, self.thr[classes]) if len(classes) else []
        keep = np.asarray(keep, bool)
        cam = image_detection_cam(self.predictor, img, boxes[keep], classes[keep])
        rgb = overlay(img[:, :, 0], cam)
        ok, buf = cv2.imencode(".png", rgb[:, :, ::-1])
        stem = os.path.splitext(os.path.basename(path))[0]
        path = os.path.join(self.overlay_dir, f"{i:05d}_{stem}_gradcam.png")
        write_bytes_atomic(path, buf.tobytes())


def predict_files(
    predictor,
    inputs: Sequence[str],
    output_dir: str,
    class_names: Sequence[str],
    thresholds: dict[str, float] | None = None,
    cm_threshold: float = 0.3,
    in_channels: int = 3,
    overlays: bool = True,
    gradcam: bool = False,
) -> dict:
    """Predict every image of ``inputs`` and stream the output files (module docstring).

    Args:
        predictor: callable ``HxWxC uint8 image -> {"instances": Instances}`` (detectron2's
            ``DefaultPredictor`` semantics: boxes XYXY_ABS in the original image's pixels).
        inputs: files and/or folders (PNG, JPEG, DICOM).
        output_dir: output folder (checked by :func:`check_predict_output`).
        class_names: names by class index.
        thresholds: class name -> operating point (thresholds.json); others use cm_threshold.
        in_channels: channels the model expects; the gray image is repeated to fill them.
        overlays: write overlay PNGs.
        gradcam: also write ``<name>_gradcam.png`` overlays: the Grad-CAM of each positive box
            (:func:`cxr.modeling.gradcam.image_detection_cam`; PyTorch RetinaNet-family models).

    Returns:
        ``{"images", "detections", "errors", "not_images", "positive_images"}`` counts;
        ``errors`` counts every ``errors.csv`` row (unreadable files and non-images).
    """
    inputs = list(inputs)
    check_predict_output(output_dir, inputs)
    os.makedirs(output_dir, exist_ok=True)
    thr = class_thresholds(class_names, thresholds, cm_threshold)
    ov_dir = os.path.join(output_dir, "overlays") if overlays else None
    if ov_dir:
        os.makedirs(ov_dir, exist_ok=True)
    run = _Run(predictor, class_names, thr, in_channels, ov_dir, gradcam)

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
                run.errors.append({"file": path, "error": reason})
                run.stats["not_images"] += 1
                continue
            run.image(i, path, preds, finds)
    run.stats["errors"] = len(run.errors)
    if run.errors:
        write_csv(os.path.join(output_dir, "errors.csv"), run.errors)
        logger.warning(
            "%d inputs were not read (%d not images); listed in %s",
            len(run.errors),
            run.stats["not_images"],
            os.path.join(output_dir, "errors.csv"),
        )
    return run.stats


def class_names_from_cfg(cfg) -> list[str] | None:
    """``thing_classes`` of the config's first test (else train) dataset, if registered."""
    for name in list(cfg.DATASETS.TEST) + list(cfg.DATASETS.TRAIN):
        names = MetadataCatalog.get(name).get("thing_classes", None)
        if names:
            return list(names)
    return None

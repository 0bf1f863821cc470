"""The logic behind ``tools/predict.py``: run a model over X-ray files, stream the results.

Outputs (in an output folder that is neither an input folder, nor inside one, nor the folder of
an input file):

- ``predictions.csv``: ``file, class, score, x1, y1, x2, y2`` — every detection, XYXY_ABS
  pixels of the original image;
- ``findings.csv``: per image, ``file, findings`` (classes whose max score >= their operating
  point, ``;``-separated, or ``No finding``) then each class's max score;
- ``overlays/NNNNN_<name>.png``: the image with the boxes at or above the operating points.

Images are read, predicted and written one at a time (memory stays flat over many images).
Unreadable files are logged and listed in ``errors.csv``; the run continues.
"""

from __future__ import annotations

import csv
import logging
import os
import tempfile
from typing import Iterable, Iterator, Sequence

import numpy as np

__all__ = ["IMAGE_EXTENSIONS", "check_predict_output", "iter_image_files", "predict_files"]

logger = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".dcm", ".dicom")


def iter_image_files(inputs: Sequence[str]) -> Iterator[str]:
    """Yield image files: given files as-is, folders walked recursively (sorted) for
    :data:`IMAGE_EXTENSIONS` (case-insensitive).

    Raises:
        FileNotFoundError for an input path that does not exist.
    """
    for p in inputs:
        if os.path.isfile(p):
            yield p
        elif os.path.isdir(p):
            for root, dirs, files in os.walk(p):
                dirs.sort()
                for f in sorted(files):
                    if f.lower().endswith(IMAGE_EXTENSIONS):
                        yield os.path.join(root, f)
        else:
            hint = " (KEY VALUE overrides go after another flag, not after --input)"
            raise FileNotFoundError(
                f"input not found: {p}" + (hint if p.split(".")[0].isupper() else "")
            )


def check_predict_output(output_dir: str, inputs: Sequence[str]) -> None:
    """Refuse an output folder that is an input folder, lies inside one, is the folder of an
    input file, or is an input file.

    Raises:
        ValueError naming the input.
    """
    out = os.path.realpath(output_dir)
    for p in inputs:
        rp = os.path.realpath(p)
        folder = rp if os.path.isdir(rp) else os.path.dirname(rp)
        if out == rp or out == folder or os.path.commonpath([out, folder]) == folder:
            raise ValueError(
                f"--output {output_dir!r} is next to or inside the input {p!r}; "
                "predictions are never written beside their inputs"
            )


class _AtomicCsv:
    """A CSV written to a temp file and moved into place on close (rows streamed)."""

    def __init__(self, path: str, header: list[str]):
        self.path = path
        fd, self.tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".csv", dir=os.path.dirname(path))
        self.f = os.fdopen(fd, "w", newline="")
        self.w = csv.writer(self.f)
        self.w.writerow(header)

    def row(self, values: Iterable) -> None:
        self.w.writerow(values)

    def close(self, ok: bool = True) -> None:
        self.f.close()
        if ok:
            os.replace(self.tmp, self.path)
        elif os.path.exists(self.tmp):
            os.remove(self.tmp)


def _overlay(gray: np.ndarray, boxes: np.ndarray, labels: list[str]) -> np.ndarray:
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


def predict_files(
    predictor,
    inputs: Sequence[str],
    output_dir: str,
    class_names: Sequence[str],
    thresholds: dict[str, float] | None = None,
    cm_threshold: float = 0.3,
    in_channels: int = 3,
    overlays: bool = True,
) -> dict:
    """Predict every image of ``inputs`` and stream the output files.

    Args:
        predictor: callable ``HxWxC uint8 image -> {"instances": Instances}`` (detectron2's
            ``DefaultPredictor`` semantics: boxes XYXY_ABS in the original image's pixels).
        inputs: files and/or folders (PNG, JPEG, DICOM).
        output_dir: output folder (checked by :func:`check_predict_output`).
        class_names: names by class index.
        thresholds: class name -> operating point (thresholds.json); others use cm_threshold.
        in_channels: channels the model expects; the gray image is repeated to fill them.
        overlays: write overlay PNGs.

    Returns:
        ``{"images": n, "detections": n, "errors": n, "positive_images": n}``.
    """
    import cv2

    from ..data.io import ImageReadError, read_xray
    from ..fileio import write_bytes_atomic

    inputs = list(inputs)
    check_predict_output(output_dir, inputs)
    os.makedirs(output_dir, exist_ok=True)
    thr = np.array([(thresholds or {}).get(n, cm_threshold) for n in class_names], np.float64)
    ov_dir = os.path.join(output_dir, "overlays")
    if overlays:
        os.makedirs(ov_dir, exist_ok=True)
    preds = _AtomicCsv(
        os.path.join(output_dir, "predictions.csv"),
        ["file", "class", "score", "x1", "y1", "x2", "y2"],
    )
    finds = _AtomicCsv(
        os.path.join(output_dir, "findings.csv"),
        ["file", "findings", *[f"score_{n}" for n in class_names]],
    )
    errors = []
    stats = {"images": 0, "detections": 0, "errors": 0, "positive_images": 0}
    ok = False
    try:
        for i, path in enumerate(iter_image_files(inputs)):
            try:
                gray = read_xray(path)
            except ImageReadError as e:
                logger.warning("Skipping %s: %s", path, e)
                errors.append((path, str(e)))
                continue
            img = np.repeat(gray[:, :, None], in_channels, axis=2)
            inst = predictor(img)["instances"].to("cpu")
            boxes = inst.pred_boxes.tensor.numpy().astype(np.float64)
            scores = inst.scores.numpy().astype(np.float64)
            classes = inst.pred_classes.numpy()
            for b, s, c in zip(boxes, scores, classes):
                preds.row([path, class_names[c], f"{s:.6f}", *(f"{v:.2f}" for v in b)])
            img_scores = np.zeros(len(class_names))
            np.maximum.at(img_scores, classes, scores)
            pos = [
                n
                for c, n in enumerate(class_names)
                if img_scores[c] > 0 and img_scores[c] >= thr[c]
            ]
            finds.row(
                [path, ";".join(pos) if pos else "No finding", *(f"{v:.6f}" for v in img_scores)]
            )
            if overlays:
                keep = scores >= thr[classes] if len(classes) else np.zeros(0, bool)
                labels = [f"{class_names[c]} {s:.2f}" for c, s in zip(classes[keep], scores[keep])]
                ov = _overlay(gray, boxes[keep], labels)
                stem = os.path.splitext(os.path.basename(path))[0]
                okk, buf = cv2.imencode(".png", ov)
                write_bytes_atomic(os.path.join(ov_dir, f"{i:05d}_{stem}.png"), buf.tobytes())
            stats["images"] += 1
            stats["detections"] += len(scores)
            stats["positive_images"] += bool(pos)
        ok = True
    finally:
        preds.close(ok)
        finds.close(ok)
    stats["errors"] = len(errors)
    if errors:
        err = _AtomicCsv(os.path.join(output_dir, "errors.csv"), ["file", "error"])
        for e in errors:
            err.row(e)
        err.close()
    return stats


class XrayPredictor:
    """detectron2 ``DefaultPredictor`` equivalent for a model and checkpoint: one HxWxC uint8
    image in, ``{"instances"}`` out (boxes XYXY_ABS in the input image's pixels).

    Resizes with ``ResizeShortestEdge(INPUT.MIN_SIZE_TEST, INPUT.MAX_SIZE_TEST)``; the gray image
    repeated over channels is the same in RGB and BGR, so ``INPUT.FORMAT`` needs no flip.
    """

    def __init__(self, cfg, checkpoint: str):
        import detectron2.data.transforms as T

        from ..engine import Trainer
        from ..engine.checkpoint import load_model_weights

        self.model = Trainer.build_model(cfg)
        load_model_weights(self.model, checkpoint)
        self.model.eval()
        self.aug = T.ResizeShortestEdge(
            [cfg.INPUT.MIN_SIZE_TEST, cfg.INPUT.MIN_SIZE_TEST], cfg.INPUT.MAX_SIZE_TEST
        )

    def __call__(self, image: np.ndarray) -> dict:
        import torch

        with torch.no_grad():
            h, w = image.shape[:2]
            img = self.aug.get_transform(image).apply_image(image)
            if img.ndim == 2:
                img = img[:, :, None]
            t = torch.as_tensor(np.ascontiguousarray(img.transpose(2, 0, 1)).astype("float32"))
            return self.model([{"image": t, "height": h, "width": w}])[0]


def class_names_from_cfg(cfg) -> list[str] | None:
    """``thing_classes`` of the config's first test (else train) dataset, if registered."""
    from detectron2.data import MetadataCatalog

    for name in list(cfg.DATASETS.TEST) + list(cfg.DATASETS.TRAIN):
        names = MetadataCatalog.get(name).get("thing_classes", None)
        if names:
            return list(names)
    return None

"""Inference on an exported cxr model with ONNX Runtime (or OpenVINO): numpy, Pillow and the
engine only.

This module never imports torch or detectron2, so a process that only predicts starts in about a
second (see docs/deploy.md). What the exported graph leaves out is done here in numpy, the same
way detectron2's RetinaNet does it (detectron2 cannot be imported here, so its few steps are
re-expressed; the tests check each against detectron2's own code):

1. resize so the short side is ``min_size_test`` (long side at most ``max_size_test``; Pillow
   bilinear, as detectron2's ``ResizeShortestEdge``), pad to ``size_divisibility`` with the pixel
   mean (which the graph normalizes to exactly 0, detectron2's padding value);
2. the graph: normalization, backbone, head, sigmoid; per level scores ``(N, Hi, Wi, A, K)`` and
   box deltas ``(N, Hi, Wi, A, 4)``;
3. per level: scores above ``score_thresh``, the ``topk_candidates`` best, anchors decoded
   (``Box2BoxTransform``); all levels: per-class NMS at ``nms_thresh``, the
   ``detections_per_image`` best;
4. boxes scaled to the original image (XYXY_ABS pixels), clipped to it, empty boxes dropped.

The model's settings (class names, operating points, anchors, thresholds, sizes) are read from
the ONNX file's metadata entry ``cxr`` (a JSON object written by ``tools/export.py``).
"""
from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
from typing import Sequence

import numpy as np

from .optional import import_optional

__all__ = [
    "Detections",
    "METADATA_KEY",
    "GRAPH_ENGINES",
    "OnnxDetector",
    "OnnxRuntimeGraph",
    "OpenVinoGraph",
    "batched_nms",
    "decode_dense_predictions",
    "grid_anchors",
    "import_onnxruntime",
    "import_openvino",
    "load_metadata",
    "postprocess_detections",
    "resize_image",
    "resized_shape",
]

logger = logging.getLogger(__name__)

# Key of the JSON settings in the ONNX metadata_props (and the TorchScript extra file name stem).
METADATA_KEY = "cxr"


@dataclasses.dataclass
class Detections:
    """Detections of one image.

    Attributes:
        boxes: (R, 4) float32 XYXY_ABS pixels of the image given to the detector.
        scores: (R,) float32 in (0, 1], descending.
        classes: (R,) int64 class indices into the model's class names.
        image_scores: (C,) per-class image scores of a model that scores whole images (an
            image-label classifier, no boxes); None: each class's highest box score.
    """

    boxes: np.ndarray
    scores: np.ndarray
    classes: np.ndarray
    image_scores: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.scores)


def import_onnxruntime():
    """``onnxruntime``, or an ImportError naming the ``cxr[deploy]`` extra (it is optional)."""
    return import_optional("onnxruntime", "the onnxruntime backend")


def import_openvino():
    """``openvino``, or an ImportError naming the ``cxr[deploy]`` extra (it is optional)."""
    return import_optional("openvino", "the openvino backend")


def resized_shape(height: int, width: int, short_edge: int, max_size: int) -> tuple[int, int]:
    """Output (height, width) of detectron2's ``ResizeShortestEdge`` for one short-edge length.

    The short side becomes ``short_edge`` unless the long side would exceed ``max_size``, in
    which case the long side becomes ``max_size``; both are rounded half up.
    """
    scale = short_edge / min(height, width)
    new_h, new_w = height * scale, width * scale
    if max(new_h, new_w) > max_size:
        shrink = max_size / max(new_h, new_w)
        new_h, new_w = new_h * shrink, new_w * shrink
    return int(new_h + 0.5), int(new_w + 0.5)


def resize_image(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """Bilinear resize of a uint8 HxW or HxWxC image with Pillow (detectron2's ResizeTransform).

    A gray image may be resized before repeating it over channels: Pillow resizes each band the
    same way.
    """
    from PIL import Image

    if image.dtype != np.uint8:
        raise ValueError(f"resize_image needs a uint8 image, got {image.dtype}")
    squeeze = image.ndim == 3 and image.shape[2] == 1
    pil = Image.fromarray(image[:, :, 0] if squeeze else image)
    out = np.asarray(pil.resize((width, height), Image.BILINEAR))
    return out[:, :, None] if squeeze else out


def grid_anchors(cell_anchors: np.ndarray, stride: int, height: int, width: int, offset: float):
    """Anchors of one level in detectron2's order (row, column, anchor), XYXY_ABS.

    Args:
        cell_anchors: (A, 4) anchors centred on (0, 0), XYXY.
        stride: level stride in input pixels.
        height, width: feature map size.
        offset: anchor centre offset in strides (detectron2's ANCHOR_GENERATOR.OFFSET).

    Returns:
        (height * width * A, 4) float32.
    """
    xs = np.arange(offset * stride, width * stride, stride, dtype=np.float32)[:width]
    ys = np.arange(offset * stride, height * stride, stride, dtype=np.float32)[:height]
    sy, sx = np.meshgrid(ys, xs, indexing="ij")
    shifts = np.stack([sx.ravel(), sy.ravel(), sx.ravel(), sy.ravel()], axis=1)
    cells = np.asarray(cell_anchors, np.float32)
    return (shifts[:, None, :] + cells[None, :, :]).reshape(-1, 4)


def _apply_deltas(deltas: np.ndarray, anchors: np.ndarray, weights, scale_clamp: float):
    """detectron2's ``Box2BoxTransform.apply_deltas`` for (R, 4) deltas and (R, 4) XYXY anchors."""
    widths = anchors[:, 2] - anchors[:, 0]
    heights = anchors[:, 3] - anchors[:, 1]
    ctr_x = anchors[:, 0] + np.float32(0.5) * widths
    ctr_y = anchors[:, 1] + np.float32(0.5) * heights
    w = np.asarray(weights, np.float32)
    d = deltas.astype(np.float32) / w
    dw = np.minimum(d[:, 2], np.float32(scale_clamp))
    dh = np.minimum(d[:, 3], np.float32(scale_clamp))
    cx = d[:, 0] * widths + ctr_x
    cy = d[:, 1] * heights + ctr_y
    half_w = np.float32(0.5) * np.exp(dw) * widths
    half_h = np.float32(0.5) * np.exp(dh) * heights
    return np.stack([cx - half_w, cy - half_h, cx + half_w, cy + half_h], axis=1)


def decode_dense_predictions(
    scores: Sequence[np.ndarray],
    deltas: Sequence[np.ndarray],
    anchors: Sequence[np.ndarray],
    *,
    score_thresh: float,
    topk_candidates: int,
    box_weights: Sequence[float],
    scale_clamp: float,
) -> Detections:
    """Per level: scores above the threshold, the best ``topk_candidates``, boxes decoded.

    Args:
        scores: per level (R_l, K) probabilities of one image.
        deltas: per level (R_l, 4) box deltas.
        anchors: per level (R_l, 4) XYXY_ABS anchors of the padded input.

    Returns:
        all levels' candidates (boxes XYXY_ABS in the resized input's pixels), level by level.
    """
    boxes, kept_scores, classes = [], [], []
    for s, d, a in zip(scores, deltas, anchors):
        flat = s.reshape(-1)
        idx = np.flatnonzero(flat > score_thresh)
        order = np.argsort(-flat[idx], kind="stable")[:topk_candidates]
        idx = idx[order]
        anchor_idx, class_idx = np.divmod(idx, s.shape[1])
        boxes.append(_apply_deltas(d[anchor_idx], a[anchor_idx], box_weights, scale_clamp))
        kept_scores.append(flat[idx])
        classes.append(class_idx)
    return Detections(
        np.concatenate(boxes).astype(np.float32),
        np.concatenate(kept_scores).astype(np.float32),
        np.concatenate(classes).astype(np.int64),
    )


def batched_nms(
    boxes: np.ndarray,
    scores: np.ndarray,
    classes: np.ndarray,
    iou_thresh: float,
    max_keep: int | None = None,
) -> np.ndarray:
    """Per-class greedy NMS (torchvision's ``batched_nms`` rule: a box is dropped when its IoU
    with a higher-scored kept box of its class is > ``iou_thresh``, so two empty boxes, IoU
    0 / 0, both stay). Boxes XYXY_ABS.

    The boxes are visited once, in descending score order (ties: input order), so with
    ``max_keep`` the loop stops after that many are kept: the result is the first ``max_keep``
    of the full run (a box's fate depends only on higher-scored boxes of its class).

    Returns:
        kept indices sorted by descending score.
    """
    rest = np.argsort(-scores, kind="stable")
    x1, y1, x2, y2 = boxes.T
    areas = (x2 - x1) * (y2 - y1)
    limit = len(rest) if max_keep is None else max_keep
    keep = []
    while rest.size and len(keep) < limit:
        i, rest = rest[0], rest[1:]
        keep.append(i)
        same = np.flatnonzero(classes[rest] == classes[i])
        r = rest[same]
        iw = np.clip(np.minimum(x2[i], x2[r]) - np.maximum(x1[i], x1[r]), 0, None)
        ih = np.clip(np.minimum(y2[i], y2[r]) - np.maximum(y1[i], y1[r]), 0, None)
        inter = iw * ih
        with np.errstate(invalid="ignore", divide="ignore"):
            iou = inter / (areas[i] + areas[r] - inter)
        alive = np.ones(rest.size, bool)
        alive[same[iou > iou_thresh]] = False
        rest = rest[alive]
    return np.asarray(keep, np.int64)


def postprocess_detections(
    det: Detections,
    resized_hw: tuple[int, int],
    output_hw: tuple[int, int],
    *,
    nms_thresh: float,
    max_detections: int,
) -> Detections:
    """Per-class NMS, the best ``max_detections``, then detectron2's ``detector_postprocess``:
    boxes scaled from the resized input to ``output_hw``, clipped to it, empty ones dropped.

    Args:
        det: candidates from :func:`decode_dense_predictions` (resized-input pixels).
        resized_hw: (height, width) of the resized image before padding.
        output_hw: (height, width) of the original image.
    """
    keep = batched_nms(det.boxes, det.scores, det.classes, nms_thresh, max_detections)
    boxes = det.boxes[keep].copy()
    (rh, rw), (oh, ow) = resized_hw, output_hw
    boxes[:, 0::2] *= np.float32(ow / rw)
    boxes[:, 1::2] *= np.float32(oh / rh)
    boxes[:, 0::2] = np.clip(boxes[:, 0::2], 0, ow)
    boxes[:, 1::2] = np.clip(boxes[:, 1::2], 0, oh)
    ok = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
    return Detections(boxes[ok], det.scores[keep][ok], det.classes[keep][ok])


def load_metadata(path: str) -> dict:
    """The ``cxr`` settings stored in an exported ONNX file (written by ``tools/export.py``).

    Raises:
        ValueError naming the file when the entry is missing or is not JSON.
    """
    ort = import_onnxruntime()
    sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    return _metadata_of(sess, path)


def _parse_metadata(props: dict, path: str) -> dict:
    if METADATA_KEY not in props:
        raise ValueError(f"{path}: no '{METADATA_KEY}' metadata: not exported by tools/export.py")
    try:
        return json.loads(props[METADATA_KEY])
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: metadata '{METADATA_KEY}' is not valid JSON ({e})") from None


def _metadata_of(session, path: str) -> dict:
    return _parse_metadata(session.get_modelmeta().custom_metadata_map, path)


class OnnxRuntimeGraph:
    """The exported graph in an ONNX Runtime CPU session (all graph optimizations: the NCHWc
    layout and the SiLU fusion are worth 2x and 1.4x on EfficientDet-D0, docs/deploy.md)."""

    def __init__(self, path: str, num_threads: int = 0, optimization: str = "all"):
        ort = import_onnxruntime()
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = num_threads
        opts.graph_optimization_level = {
            "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
            "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
            "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
            "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
        }[optimization]
        self.session = ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])
        self.metadata = _metadata_of(self.session, path)
        self._input_name = self.session.get_inputs()[0].name

    def run(self, batch: np.ndarray) -> list[np.ndarray]:
        """The graph's outputs (scores per level, then deltas per level) for an NCHW batch."""
        return self.session.run(None, {self._input_name: batch})


class OpenVinoGraph:
    """The exported graph compiled by OpenVINO for the CPU (latency hint, float32 precision even
    on CPUs where OpenVINO would pick bfloat16; dynamic batch and size, as exported). Same outputs
    as :class:`OnnxRuntimeGraph`."""

    def __init__(self, path: str, num_threads: int = 0, optimization: str = "all"):
        ov = import_openvino()
        core = ov.Core()
        model = core.read_model(path)
        props = {}
        if model.has_rt_info(["framework", METADATA_KEY]):
            props[METADATA_KEY] = model.get_rt_info(["framework", METADATA_KEY]).astype(str)
        self.metadata = _parse_metadata(props, path)
        config = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": "f32"}
        if num_threads > 0:
            config["INFERENCE_NUM_THREADS"] = num_threads
        self._compiled = core.compile_model(model, "CPU", config)
        self._request = self._compiled.create_infer_request()
        self._outputs = list(self._compiled.outputs)

    def run(self, batch: np.ndarray) -> list[np.ndarray]:
        """The graph's outputs (scores per level, then deltas per level) for an NCHW batch."""
        result = self._request.infer({0: batch})
        return [np.asarray(result[o]) for o in self._outputs]


# Engines that run the exported graph, by the name --backend gives them.
GRAPH_ENGINES = {"onnxruntime": OnnxRuntimeGraph, "openvino": OpenVinoGraph}


class OnnxDetector:
    """An exported cxr detector run on the CPU by ONNX Runtime (or OpenVINO).

    ``detector(image)`` takes one HxW or HxWxC uint8 image (gray X-rays may stay 2-D) and returns
    :class:`Detections` in its pixels; :meth:`run_resized` takes images already resized by a data
    loader (what ``tools/eval.py`` uses).

    Attributes:
        metadata: the settings stored at export (class_names, thresholds, sizes, anchors, ...).
        class_names: class names by index.
        graph: the engine running the graph (:data:`GRAPH_ENGINES`).
    """

    def __init__(
        self,
        path: str,
        *,
        num_threads: int = 0,
        optimization: str = "all",
        engine: str = "onnxruntime",
    ):
        """
        Args:
            path: the exported ``model.onnx``.
            num_threads: intra-op threads (0: the engine's default, one per core).
            optimization: ONNX Runtime graph optimization level: "disable", "basic", "extended"
                or "all".
            engine: "onnxruntime" or "openvino" (:data:`GRAPH_ENGINES`).
        """
        if engine not in GRAPH_ENGINES:
            raise ValueError(f"unknown engine {engine!r}; choose from {sorted(GRAPH_ENGINES)}")
        if not os.path.isfile(path):
            raise FileNotFoundError(f"exported model not found: {path}")
        self.graph = GRAPH_ENGINES[engine](path, num_threads, optimization)
        self.path = path
        self.metadata = self.graph.metadata
        m = self.metadata
        self.class_names: list[str] = list(m["class_names"])
        self._pad_value = np.asarray(m["pixel_mean"], np.float32)[:, None, None]
        self._cell_anchors = [np.asarray(a, np.float32) for a in m["cell_anchors"]]
        self._anchor_cache: dict[tuple, list[np.ndarray]] = {}

    def __call__(self, image: np.ndarray) -> Detections:
        m = self.metadata
        h, w = image.shape[:2]
        rh, rw = resized_shape(h, w, m["min_size_test"], m["max_size_test"])
        img = resize_image(image, rh, rw)
        if img.ndim == 2:
            img = img[:, :, None]
        chw = np.ascontiguousarray(img.transpose(2, 0, 1), dtype=np.float32)
        if chw.shape[0] == 1:
            chw = np.repeat(chw, len(m["pixel_mean"]), axis=0)
        return self.run_resized([chw], [(h, w)])[0]

    def run_resized(
        self, images: Sequence[np.ndarray], output_hw: Sequence[tuple[int, int]]
    ) -> list[Detections]:
        """Detect on images already resized for the model, as one padded batch.

        Args:
            images: (C, h_i, w_i) float32 pixel arrays (0-255, the model's channel order).
            output_hw: per image, the (height, width) its boxes are scaled to.

        Returns:
            one :class:`Detections` per image, boxes XYXY_ABS in ``output_hw`` pixels.
        """
        m = self.metadata
        div = max(int(m["size_divisibility"]), 1)
        ph = int(math.ceil(max(i.shape[1] for i in images) / div) * div)
        pw = int(math.ceil(max(i.shape[2] for i in images) / div) * div)
        batch = np.empty((len(images), images[0].shape[0], ph, pw), np.float32)
        batch[:] = self._pad_value
        for b, img in enumerate(images):
            batch[b, :, : img.shape[1], : img.shape[2]] = img
        outputs = self.graph.run(batch)
        levels = len(self._cell_anchors)
        scores, deltas = outputs[:levels], outputs[levels:]
        anchors = self._anchors([s.shape[1:3] for s in scores])
        results = []
        for b, img in enumerate(images):
            det = decode_dense_predictions(
                [s[b].reshape(-1, s.shape[-1]) for s in scores],
                [d[b].reshape(-1, 4) for d in deltas],
                anchors,
                score_thresh=m["score_thresh"],
                topk_candidates=m["topk_candidates"],
                box_weights=m["box_weights"],
                scale_clamp=m["scale_clamp"],
            )
            results.append(
                postprocess_detections(
                    det,
                    img.shape[1:],
                    tuple(output_hw[b]),
                    nms_thresh=m["nms_thresh"],
                    max_detections=m["detections_per_image"],
                )
            )
        return results

    def _anchors(self, sizes: list[tuple[int, int]]) -> list[np.ndarray]:
        key = tuple(map(tuple, sizes))
        if key not in self._anchor_cache:
            m = self.metadata
            self._anchor_cache[key] = [
                grid_anchors(c, s, h, w, m["anchor_offset"])
                for c, s, (h, w) in zip(self._cell_anchors, m["strides"], sizes)
            ]
        return self._anchor_cache[key]

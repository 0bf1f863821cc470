"""Export a trained cxr dense detector (RetinaNet / EfficientDet families) to ONNX or TorchScript.

The exported graph is :class:`DenseDetectorGraph`: BatchNorm folded (``fuse_for_inference``),
input ``images`` (N, 3, H, W) float32 raw pixels (0-255, the config's ``INPUT.FORMAT`` channel
order; N, H and W dynamic, H and W multiples of ``size_divisibility``), normalization, backbone,
head and sigmoid inside; outputs per level ``scores_p{k}`` (N, Hk, Wk, A, K) and
``deltas_p{k}`` (N, Hk, Wk, A, 4). Resizing, padding, anchor decoding, score threshold, top-k,
per-class NMS and the scale back to the original image are a short numpy step
(:mod:`cxr.export.runtime`), so ONNX Runtime runs them without torch. Every setting that step
needs, plus the class names and operating points, is stored as JSON in the file (ONNX metadata
entry ``cxr``; TorchScript extra file ``cxr.json``) and beside it as ``model.json``.

Faster R-CNN (two-stage, data-dependent ROI pooling) is not exported: :func:`export_model`
refuses it with a clear message.
"""
from __future__ import annotations

import json
import logging
import os
import warnings
from typing import Sequence

import torch
from torch import nn

from ..fileio import atomic_write, write_json_atomic
from .runtime import METADATA_KEY

__all__ = [
    "DenseDetectorGraph",
    "EXPORT_FORMATS",
    "build_metadata",
    "check_exportable",
    "export_model",
]

logger = logging.getLogger(__name__)

# File names written into the output folder, by format.
EXPORT_FORMATS = {"onnx": "model.onnx", "torchscript": "model.ts"}
ONNX_OPSET = 17


class DenseDetectorGraph(nn.Module):
    """The exportable part of a detectron2 dense detector (RetinaNet-like: ``backbone``,
    ``head``, ``head_in_features``, ``anchor_generator``): raw pixels in, per-level
    probabilities and box deltas out (layout in the module docstring)."""

    def __init__(self, model: nn.Module):
        """
        Args:
            model: an eval-mode CXRRetinaNet (or detectron2 RetinaNet), weights loaded.
        """
        super().__init__()
        for attr in ("backbone", "head", "head_in_features", "anchor_generator", "num_classes"):
            if not hasattr(model, attr):
                raise TypeError(
                    f"{type(model).__name__} has no {attr!r}: only dense detectors (RetinaNet, "
                    "EfficientDet) are exported; Faster R-CNN is not supported"
                )
        self.backbone = model.backbone
        self.head = model.head
        self.in_features = list(model.head_in_features)
        self.num_classes = int(model.num_classes)
        self.num_anchors = list(model.anchor_generator.num_cell_anchors)
        self.register_buffer("pixel_mean", model.pixel_mean.detach().clone(), persistent=False)
        self.register_buffer("pixel_std", model.pixel_std.detach().clone(), persistent=False)

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """
        Args:
            images: (N, 3, H, W) float32 raw pixels, padded to ``size_divisibility``.

        Returns:
            L score maps (N, Hk, Wk, A, K) then L delta maps (N, Hk, Wk, A, 4).
        """
        x = (images - self.pixel_mean) / self.pixel_std
        feats = self.backbone(x)
        logits, deltas = self.head([feats[f] for f in self.in_features])
        k = self.num_classes
        scores = [self._nhwa(torch.sigmoid(t), a, k) for t, a in zip(logits, self.num_anchors)]
        boxes = [self._nhwa(t, a, 4) for t, a in zip(deltas, self.num_anchors)]
        return (*scores, *boxes)

    @staticmethod
    def _nhwa(t: torch.Tensor, anchors: int, dim: int) -> torch.Tensor:
        n, _, h, w = t.shape
        return t.reshape(n, anchors, dim, h, w).permute(0, 3, 4, 1, 2)


def check_exportable(cfg) -> None:
    """Refuse, before any weights are read, a config whose ``MODEL.META_ARCHITECTURE`` is not a
    dense detector (detectron2's ``DenseDetector``: RetinaNet, CXRRetinaNet, EfficientDet).

    Raises:
        SystemExit naming the architecture and what it is (image-label classifier, two-stage
        detector, other).
    """
    from detectron2.modeling import META_ARCH_REGISTRY
    from detectron2.modeling.meta_arch.dense_detector import DenseDetector
    from detectron2.modeling.meta_arch.rcnn import GeneralizedRCNN

    from ..modeling.meta_arch.classifier import CXRClassifier

    name = cfg.MODEL.META_ARCHITECTURE
    arch = META_ARCH_REGISTRY.get(name)
    if isinstance(arch, type) and issubclass(arch, DenseDetector):
        return
    if isinstance(arch, type) and issubclass(arch, GeneralizedRCNN):
        kind = "a two-stage detector (Faster R-CNN: its second stage pools regions chosen at "
        kind += "run time)"
    elif isinstance(arch, type) and issubclass(arch, CXRClassifier):
        kind = "an image-label classifier (use it with tools/predict.py --backend torch)"
    else:
        kind = "not a dense detector"
    raise SystemExit(
        f"MODEL.META_ARCHITECTURE {name} is {kind}; tools/export.py exports dense detectors "
        "only (RetinaNet and EfficientDet configs)"
    )


def build_metadata(
    cfg, model: nn.Module, class_names: Sequence[str], thresholds: dict[str, float] | None = None
) -> dict:
    """The JSON settings stored with an export (read back by :mod:`cxr.export.runtime`).

    Args:
        cfg: the model's config.
        model: the eval-mode model (anchors, thresholds and box transform are read from it).
        class_names: names by class index (length MODEL.RETINANET.NUM_CLASSES).
        thresholds: class name -> operating point (thresholds.json), if any.
    """
    if len(class_names) != model.num_classes:
        raise ValueError(f"{len(class_names)} class names for a {model.num_classes}-class model")
    gen = model.anchor_generator
    return {
        "format_version": 1,
        "meta_architecture": cfg.MODEL.META_ARCHITECTURE,
        "class_names": list(class_names),
        "thresholds": dict(thresholds or {}),
        "cm_threshold": float(cfg.CXR.EVAL.CM_THRESHOLD),
        "input_format": cfg.INPUT.FORMAT,
        "pixel_mean": [float(v) for v in model.pixel_mean.flatten()],
        "pixel_std": [float(v) for v in model.pixel_std.flatten()],
        "min_size_test": int(cfg.INPUT.MIN_SIZE_TEST),
        "max_size_test": int(cfg.INPUT.MAX_SIZE_TEST),
        "size_divisibility": int(model.backbone.size_divisibility),
        "feature_levels": list(model.head_in_features),
        "strides": [int(s) for s in gen.strides],
        "cell_anchors": [c.tolist() for c in gen.cell_anchors],
        "anchor_offset": float(gen.offset),
        "score_thresh": float(model.test_score_thresh),
        "topk_candidates": int(model.test_topk_candidates),
        "nms_thresh": float(model.test_nms_thresh),
        "detections_per_image": int(model.max_detections_per_image),
        "box_weights": [float(w) for w in model.box2box_transform.weights],
        "scale_clamp": float(model.box2box_transform.scale_clamp),
    }


def _output_names(levels: Sequence[str]) -> list[str]:
    return [f"scores_{f}" for f in levels] + [f"deltas_{f}" for f in levels]


def _example_input(meta: dict) -> torch.Tensor:
    div = max(meta["size_divisibility"], 1)
    side = -(-meta["min_size_test"] // div) * div
    return torch.full((1, len(meta["pixel_mean"]), side, side), 128.0)


def _export_onnx(graph: DenseDetectorGraph, meta: dict, path: str) -> None:
    import onnx

    names = _output_names(meta["feature_levels"])
    dynamic = {"images": {0: "batch", 2: "height", 3: "width"}}
    dynamic.update({n: {0: "batch", 1: f"h_{n[-2:]}", 2: f"w_{n[-2:]}"} for n in names})
    tmp = path + ".export-tmp"
    try:
        torch.onnx.export(
            graph, (_example_input(meta),), tmp, input_names=["images"], output_names=names,
            dynamic_axes=dynamic, opset_version=ONNX_OPSET, dynamo=False, do_constant_folding=True,
        )  # fmt: skip
        proto = onnx.load(tmp)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    onnx.helper.set_model_props(proto, {METADATA_KEY: json.dumps(meta)})
    onnx.checker.check_model(proto)
    atomic_write(path, lambda f: f.write(proto.SerializeToString()))


def _export_torchscript(graph: DenseDetectorGraph, meta: dict, path: str) -> None:
    with torch.no_grad():
        traced = torch.jit.trace(graph, (_example_input(meta),), check_trace=False)
    extra = {f"{METADATA_KEY}.json": json.dumps(meta)}
    atomic_write(path, lambda f: torch.jit.save(traced, f, _extra_files=extra))


_WRITERS = {"onnx": _export_onnx, "torchscript": _export_torchscript}


def export_model(
    cfg,
    model: nn.Module,
    output_dir: str,
    *,
    fmt: str = "onnx",
    class_names: Sequence[str],
    thresholds: dict[str, float] | None = None,
) -> str:
    """Fold BN, trace ``model`` and write ``output_dir/model.onnx`` (or ``model.ts``) and
    ``output_dir/model.json`` (the stored settings, for people).

    Args:
        cfg: the model's config (sizes, pixel statistics, CXR.EVAL.CM_THRESHOLD).
        model: a CXRRetinaNet / RetinaNet with its weights loaded (fused here if not yet).
        output_dir: folder to write into (created).
        fmt: "onnx" or "torchscript".
        class_names: names by class index.
        thresholds: class name -> operating point.

    Returns:
        the path of the exported model file.
    """
    if fmt not in _WRITERS:
        raise ValueError(f"unknown export format {fmt!r}; choose from {sorted(_WRITERS)}")
    model.eval()
    if hasattr(model, "fuse_for_inference") and not getattr(model, "_fused_for_inference", False):
        model.fuse_for_inference()
    graph = DenseDetectorGraph(model).eval()
    meta = build_metadata(cfg, model, class_names, thresholds)
    os.makedirs(output_dir, exist_ok=True)
    path = os.path.join(output_dir, EXPORT_FORMATS[fmt])
    with warnings.catch_warnings():
        # Tracing notes that shape checks become constants (the graph is traced per call and
        # checked against PyTorch: --verify, tests/export/), and torch's deprecation notices
        # of torch.jit.trace / save: about this call, nothing a user of the file acts on.
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        warnings.filterwarnings("ignore", message=r"`torch\.jit\.\w+` is deprecated",
                                category=FutureWarning)  # fmt: skip
        _WRITERS[fmt](graph, meta, path)
    write_json_atomic(os.path.join(output_dir, "model.json"), meta)
    logger.info("Exported %s (%s) to %s", cfg.MODEL.META_ARCHITECTURE, fmt, path)
    return path

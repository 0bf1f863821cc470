"""Prediction on X-ray files with a cxr config (what ``tools/predict.py`` drives with
``--config-file``).

The loop, its output files and their formats are those of :mod:`cxr_runtime.predict` (the
torch-free runtime); this module feeds it detectron2 predictors: :class:`XrayPredictor` (any
inference backend behind detectron2's model interface), whose ``Instances`` an adapter turns
into :class:`~cxr_runtime.detector.Detections`, and the Grad-CAM overlays of PyTorch models.

An image-label classifier (``CXRClassifier``) goes through the same loop: its per-class scores
are the images' scores (:class:`ImageScoresPredictor`), so ``findings.csv`` has the detector's
columns and ``predictions.csv`` no rows; ``--gradcam`` explains its top positive finding, else
its top class (:class:`ClassifierGradcamOverlay`).
"""

from __future__ import annotations

from typing import Sequence

import detectron2.data.transforms as T
import numpy as np
from cxr_runtime import predict as _runtime
from cxr_runtime.detector import Detections
from cxr_runtime.predict import IMAGE_EXTENSIONS, PredictedImage, iter_image_files, scan_inputs
from detectron2.data import MetadataCatalog
from detectron2.engine import DefaultPredictor

from ..engine.inference import load_inference_model
from ..evaluation.operating_points import class_thresholds, positive_findings
from .paths import check_predict_output

__all__ = [
    "IMAGE_EXTENSIONS",
    "ClassifierGradcamOverlay",
    "GradcamOverlay",
    "ImageScoresPredictor",
    "InstancesPredictor",
    "XrayPredictor",
    "check_predict_output",
    "class_names_from_cfg",
    "iter_image_files",
    "predict_files",
    "scan_inputs",
]


class XrayPredictor(DefaultPredictor):
    """detectron2's ``DefaultPredictor`` for a cxr config and checkpoint: one HxWxC uint8
    image in, ``{"instances"}`` out (boxes XYXY_ABS in the input image's pixels).

    ``DefaultPredictor.__init__`` is not called: it would load ``MODEL.WEIGHTS`` with
    detectron2's pickle-capable checkpointer and ignore EMA weights; this sets the same
    attributes with :func:`~cxr.engine.inference.load_inference_model` and reuses its ``__call__``
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



class InstancesPredictor:
    """A detectron2 predictor (``HxWxC uint8 image -> {"instances": Instances}``, boxes
    XYXY_ABS) as the runtime's ``image -> Detections`` predictor."""

    def __init__(self, predictor):
        self.predictor = predictor

    def __call__(self, image: np.ndarray) -> Detections:
        from ..engine.inference import instances_to_detections

        return instances_to_detections(self.predictor(image)["instances"])


class ImageScoresPredictor:
    """A classifier's detectron2 predictor (``HxWxC uint8 image -> {"scores"}``, one sigmoid
    score per class) as the runtime's ``image -> Detections``: no boxes, ``image_scores`` the
    class scores."""

    def __init__(self, predictor):
        self.predictor = predictor

    def __call__(self, image: np.ndarray) -> Detections:
        scores = self.predictor(image)["scores"].float().cpu().numpy()
        return Detections(np.zeros((0, 4), np.float32), np.zeros(0, np.float32),
                          np.zeros(0, np.int64), image_scores=scores)  # fmt: skip


class ClassifierGradcamOverlay:
    """Overlay hook (:data:`cxr_runtime.predict.OverlayHook`) of a classifier: the Grad-CAM of
    the image's highest-scoring finding at or above its operating point (else of its
    highest-scoring class) as ``NNNNN_<name>_gradcam.png``, the class and score written on it.

    Args:
        predictor: the classifier's :class:`XrayPredictor`.
        class_names: names by class index.
        thresholds: (C,) operating point per class.
        method: the map rule (:data:`~cxr.modeling.gradcam.CAM_METHOD_REGISTRY` name).
    """

    def __init__(self, predictor, class_names: Sequence[str], thresholds: np.ndarray,
                 method: str = "gradcam"):  # fmt: skip
        self.predictor, self.names = predictor, list(class_names)
        self.thresholds = np.asarray(thresholds, np.float64)
        self.method = method

    def __call__(self, p: PredictedImage) -> dict[str, np.ndarray]:
        import cv2

        from ..modeling.gradcam import image_classifier_cam, overlay

        scores = np.asarray(p.image_scores, np.float64)
        ranked = np.where(positive_findings(scores, self.thresholds), scores, scores - 2.0)
        c = int(ranked.argmax())  # positives (scores in [0, 1]) rank above every negative
        cam = image_classifier_cam(self.predictor, p.image, c, self.method)
        rgb = overlay(p.image[:, :, 0], cam)
        bgr = np.ascontiguousarray(rgb[:, :, ::-1])
        t = max(1, round(max(bgr.shape[:2]) / 400))
        cv2.putText(bgr, f"{self.names[c]} {scores[c]:.2f}", (4 * t, 14 * t),
                    cv2.FONT_HERSHEY_SIMPLEX, 0.4 * t, (255, 255, 255), t)  # fmt: skip
        return {"_gradcam": bgr}


class GradcamOverlay:
    """Overlay hook (:data:`cxr_runtime.predict.OverlayHook`): the Grad-CAM of an image's
    positive boxes as ``NNNNN_<name>_gradcam.png`` (PyTorch RetinaNet-family models).

    Args:
        predictor: the detectron2 predictor that made the detections (:class:`XrayPredictor`).
        method: the map rule (:data:`~cxr.modeling.gradcam.CAM_METHOD_REGISTRY` name).
    """

    def __init__(self, predictor, method: str = "gradcam"):
        self.predictor, self.method = predictor, method

    def __call__(self, p: PredictedImage) -> dict[str, np.ndarray]:
        from ..modeling.gradcam import image_detection_cam, overlay

        k = p.positive
        cam = image_detection_cam(self.predictor, p.image, p.boxes[k], p.classes[k], self.method)
        rgb = overlay(p.image[:, :, 0], cam)
        return {"_gradcam": rgb[:, :, ::-1]}


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
    gradcam_method: str = "gradcam",
) -> dict:
    """Predict every image of ``inputs`` with a detectron2 predictor and stream the output
    files (:func:`cxr_runtime.predict.predict_files`: the same files and formats).

    Args:
        predictor: callable ``HxWxC uint8 image -> {"instances": Instances}`` (detectron2's
            ``DefaultPredictor`` semantics: boxes XYXY_ABS in the original image's pixels), or
            whose ``model`` is a ``CXRClassifier`` (``-> {"scores"}``: image-level findings).
        inputs: files and/or folders (PNG, JPEG, DICOM).
        output_dir: output folder (checked by :func:`check_predict_output`).
        class_names: names by class index.
        thresholds: class name -> operating point (thresholds.json); others use cm_threshold.
        in_channels: channels the model expects; the gray image is repeated to fill them.
        overlays: write overlay PNGs.
        gradcam: also write ``<name>_gradcam.png`` overlays (:class:`GradcamOverlay`,
            :class:`ClassifierGradcamOverlay`).
        gradcam_method: their map rule (``CXR.VIS.GRADCAM_METHOD``).

    Returns:
        ``{"images", "detections", "errors", "not_images", "positive_images"}`` counts;
        ``errors`` counts every ``errors.csv`` row (unreadable files and non-images).

    Raises:
        ValueError with ``gradcam`` for a model Grad-CAM cannot explain (an ONNX Runtime
        session, Faster R-CNN), before any file is written.
    """
    from ..engine.gradcam_hook import explained_model
    from ..modeling.meta_arch.classifier import CXRClassifier

    model = getattr(predictor, "model", None)
    if gradcam and (model is None or explained_model(model) is None):
        raise ValueError(
            f"--gradcam explains PyTorch CXRClassifier and RetinaNet-family models (--backend "
            f"torch), not {type(model).__name__}"
        )
    if isinstance(model, CXRClassifier):
        thr = class_thresholds(class_names, thresholds, cm_threshold)
        adapter = ImageScoresPredictor(predictor)
        hook = ClassifierGradcamOverlay(predictor, class_names, thr, gradcam_method)
    else:
        adapter = InstancesPredictor(predictor)
        hook = GradcamOverlay(predictor, gradcam_method)
    hooks = [hook] if gradcam else []
    return _runtime.predict_files(adapter, inputs, output_dir, class_names, thresholds,
                                  cm_threshold, in_channels, overlays, hooks)  # fmt: skip


def class_names_from_cfg(cfg) -> list[str] | None:
    """``thing_classes`` of the config's first test (else train) dataset, if registered."""
    for name in list(cfg.DATASETS.TEST) + list(cfg.DATASETS.TRAIN):
        names = MetadataCatalog.get(name).get("thing_classes", None)
        if names:
            return list(names)
    return None

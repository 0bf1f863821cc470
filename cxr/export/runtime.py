"""Inference on an exported cxr model with ONNX Runtime, without torch: the runner of
:mod:`cxr_runtime.detector` (the deployable runtime package), under its cxr name."""
from cxr_runtime.detector import (  # noqa: F401
    METADATA_KEY,
    Detections,
    OnnxDetector,
    __all__,
    batched_nms,
    decode_dense_predictions,
    grid_anchors,
    import_onnxruntime,
    load_metadata,
    postprocess_detections,
    resize_image,
    resized_shape,
)

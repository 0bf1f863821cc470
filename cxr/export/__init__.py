"""Deployment: export to ONNX / TorchScript (:mod:`.exporter`), the torch-free ONNX Runtime
runner (:mod:`.runtime`), the ``onnxruntime`` inference backend (:mod:`.backends`), an optional
INT8 copy (:mod:`.quantize`) and the backend comparison (:mod:`.verify`). See docs/deploy.md."""
from . import backends  # noqa: F401  (registers the onnxruntime inference backend)

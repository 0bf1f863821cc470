"""Deployment: export to ONNX / TorchScript (:mod:`.exporter`), the torch-free ONNX Runtime
runner (:mod:`.runtime`), an optional INT8 copy (:mod:`.quantize`) and the backend comparison
(:mod:`.verify`). The ``onnxruntime`` / ``openvino`` inference backends that run an exported
model live in :mod:`cxr.engine.inference`. See docs/deploy.md."""

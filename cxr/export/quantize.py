"""Optional INT8 copy of an exported model (ONNX Runtime dynamic quantization). Never automatic:
``tools/export.py --int8`` writes ``model.int8.onnx`` beside ``model.onnx``; docs/deploy.md
reports its AP change and speed on the phantom set."""
from __future__ import annotations

import logging

__all__ = ["quantize_int8"]

logger = logging.getLogger(__name__)


class _DropMessage(logging.Filter):
    """Drops the records whose message starts with ``prefix``. Here: ONNX Runtime's advice to
    run its shape pre-processing first, which targets static quantization; dynamic quantization
    of the exported graph is measured as it is (docs/deploy.md)."""

    def __init__(self, prefix: str):
        super().__init__()
        self.prefix = prefix

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith(self.prefix)


def quantize_int8(src: str, dst: str) -> str:
    """Write ``dst``: ``src`` with INT8 weights of its Conv / MatMul nodes (activations
    quantized on the fly), the ``cxr`` metadata kept.

    Returns:
        ``dst``.
    """
    import onnx
    from cxr_runtime.optional import import_optional

    from ..fileio import atomic_write
    from .runtime import METADATA_KEY

    ortq = import_optional("onnxruntime.quantization", "tools/export.py --int8")
    tmp = dst + ".quant-tmp"
    advice = _DropMessage("Please consider to run pre-processing before quantization")
    logging.getLogger().addFilter(advice)  # ONNX Runtime logs it on the root logger
    try:
        ortq.quantize_dynamic(src, tmp, weight_type=ortq.QuantType.QInt8,
                         op_types_to_quantize=["Conv", "MatMul"])  # fmt: skip
    finally:
        logging.getLogger().removeFilter(advice)
    proto = onnx.load(tmp)
    meta = {p.key: p.value for p in onnx.load(src, load_external_data=False).metadata_props}
    onnx.helper.set_model_props(proto, {METADATA_KEY: meta[METADATA_KEY]})
    atomic_write(dst, lambda f: f.write(proto.SerializeToString()))
    import os

    os.remove(tmp)
    logger.info("Wrote the INT8 copy %s", dst)
    return dst

"""Reading chest radiographs (PNG / JPEG / DICOM): the readers of :mod:`cxr_runtime.io`, shared
with the torch-free runtime."""
from cxr_runtime.io import (  # noqa: F401
    __all__,
    ImageReadError,
    decode_xray,
    has_dicom_preamble,
    is_dicom,
    read_xray,
    read_xray_size,
)

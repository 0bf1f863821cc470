"""Reading JSON with errors that name the file, and atomic file writes: the helpers of
:mod:`cxr_runtime.fileio` (the torch-free runtime writes its outputs with the same code)."""
from cxr_runtime.fileio import (  # noqa: F401
    __all__,
    atomic_open,
    atomic_write,
    json_safe,
    read_json,
    sha256_file,
    write_bytes_atomic,
    write_csv_atomic,
    write_json_atomic,
    write_png_atomic,
    write_text_atomic,
)

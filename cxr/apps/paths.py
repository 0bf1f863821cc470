"""Input and output paths of the tools: the checks of :mod:`cxr_runtime.paths`, shared with the
torch-free runtime."""
from cxr_runtime.paths import (  # noqa: F401
    __all__,
    check_output_dir,
    check_predict_output,
    input_not_found,
)

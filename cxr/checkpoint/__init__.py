"""Weight conversion from other projects' checkpoints into cxr models.

Each converter maps a source state dict onto the state dict of the matching cxr model and says
what it kept, dropped and re-initialized (:class:`ConversionReport`); the tests show that each
converted model computes the same function as its source, on random weights.
``tools/convert_weights.py`` is the command line (:mod:`.commands`).
"""
from .common import (  # noqa: F401
    ConversionReport,
    reinit_class_layer,
    write_checkpoint,
    write_config,
)
from .effdet import (  # noqa: F401
    EFFDET_ARCHS,
    EffdetArch,
    convert_effdet_state,
    effdet_config_body,
)
from .resnet import TORCHVISION_MEAN, TORCHVISION_STD, convert_torchvision_resnet  # noqa: F401
from .torchxrayvision import (  # noqa: F401
    XRV_PIXEL_MEAN,
    XRV_PIXEL_STD,
    convert_xrv_densenet,
    convert_xrv_state,
    load_xrv_model,
)

"""Meta-architectures registered in detectron2's META_ARCH_REGISTRY, and their heads."""
from .retinanet import (  # noqa: F401
    RETINANET_HEAD_REGISTRY,
    CXRRetinaNet,
    EfficientDetHead,
    build_retinanet_head,
)
from .classifier import CLASSIFICATION_LOSS_REGISTRY, CXRClassifier, trunk_of  # noqa: F401

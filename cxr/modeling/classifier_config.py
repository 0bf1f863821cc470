"""Config keys of the image classifier (:class:`~cxr.modeling.meta_arch.classifier.CXRClassifier`)
and of trunk transfer from a classifier to a detector; each with a comment."""

from detectron2.config import CfgNode as CN

from ..config import CONFIG_REGISTRY


@CONFIG_REGISTRY.register_as("classifier")
def add_classifier_config(cfg) -> None:
    """Add ``MODEL.CLASSIFIER`` and ``MODEL.TRUNK_WEIGHTS`` to ``cfg`` in place."""
    cfg.MODEL.CLASSIFIER = CN()
    # Number of findings (sigmoid outputs): 14 for nih_cls_*, 8 for phantom_nih_cls_*.
    cfg.MODEL.CLASSIFIER.NUM_CLASSES = 14
    # Trunk output that is pooled: a feature name of a detectron2 trunk ("res5") or the index
    # of a timm features_only output ("-1"); "" = the trunk's last (coarsest) output.
    cfg.MODEL.CLASSIFIER.IN_FEATURE = ""
    # Global pooling of that map: "avg", "max" or "avgmax" (mean of both).
    cfg.MODEL.CLASSIFIER.POOL = "avg"
    # Head on the pooled vector: "linear" or "mlp" (Linear -> ReLU -> Dropout -> Linear).
    cfg.MODEL.CLASSIFIER.HEAD = "mlp"
    # Width of the MLP head's hidden layer.
    cfg.MODEL.CLASSIFIER.HIDDEN_DIM = 512
    # Dropout before the last linear layer (both heads).
    cfg.MODEL.CLASSIFIER.DROPOUT = 0.2
    # Loss on the sigmoid outputs, by name from CLASSIFICATION_LOSS_REGISTRY: "bce", "focal"
    # or "asymmetric" (ASL, Ridnik et al. 2021).
    cfg.MODEL.CLASSIFIER.LOSS = "bce"
    # Focal loss gamma ("focal").
    cfg.MODEL.CLASSIFIER.FOCAL_GAMMA = 2.0
    # Asymmetric loss: focusing exponents of negatives / positives and the probability margin
    # shifted off negatives (p_m = max(p - CLIP, 0)).
    cfg.MODEL.CLASSIFIER.ASL_GAMMA_NEG = 4.0
    cfg.MODEL.CLASSIFIER.ASL_GAMMA_POS = 0.0
    cfg.MODEL.CLASSIFIER.ASL_CLIP = 0.05
    # Per-class weight of the positive term: None = none; "auto" = negatives / positives per class
    # counted on DATASETS.TRAIN (1 for a class without positives); or a list of NUM_CLASSES.
    cfg.MODEL.CLASSIFIER.POS_WEIGHT = None
    # A classifier checkpoint (.pth, written by training a CXRClassifier) whose trunk weights
    # initialise this model's trunk (a detector's FPN bottom-up or EfficientDet trunk); the
    # loaded and skipped tensors are logged. MODEL.WEIGHTS, when set, is applied after it.
    cfg.MODEL.TRUNK_WEIGHTS = ""

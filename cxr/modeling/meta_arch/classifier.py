"""``CXRClassifier``: multi-label image classifier on any cxr trunk, in detectron2's
``META_ARCH_REGISTRY``.

trunk -> global pooling -> linear or 2-layer MLP head -> one sigmoid per finding. The trunk is
the bottom-up part of whatever ``MODEL.BACKBONE.NAME`` builds (:func:`trunk_of`: an FPN's
``bottom_up``, the EfficientDet backbone's timm ``trunk``, or a plain trunk backbone such as
detectron2's ``build_resnet_backbone`` as it is), so a classifier and a detector built from the
same ``MODEL.*`` keys share the trunk's architecture and parameter names, and the classifier's
trunk transfers to the detector (:mod:`cxr.modeling.trunk_transfer`).

Input: detectron2 batched inputs (``image`` uint8 CHW, ``labels`` (C,) float 0/1 in training).
Training returns ``{"loss_cls": ...}``; inference returns per image ``{"scores": (C,)
probabilities, "embedding": (D,) pooled trunk features}``.
"""

from __future__ import annotations

import logging
from typing import Sequence

import numpy as np
import torch
from detectron2.config import configurable
from detectron2.modeling import META_ARCH_REGISTRY, build_backbone
from detectron2.structures import ImageList
from torch import nn
from torch.nn import functional as F

from ...registry import NamedRegistry
from ..losses import sigmoid_focal_loss

__all__ = [
    "CLASSIFICATION_LOSS_REGISTRY",
    "CXRClassifier",
    "asymmetric_loss",
    "global_pool",
    "positive_weights_from_datasets",
    "trunk_of",
]

logger = logging.getLogger(__name__)

CLASSIFICATION_LOSS_REGISTRY = NamedRegistry("CXR_CLASSIFICATION_LOSS")
CLASSIFICATION_LOSS_REGISTRY.__doc__ = (
    "Multi-label losses by MODEL.CLASSIFIER.LOSS: fn(logits, targets, pos_weight, cfg_dict) -> "
    "scalar mean over images and classes."
)


def trunk_of(backbone: nn.Module) -> tuple[nn.Module, str]:
    """The feature-extracting trunk of a detectron2 backbone and its attribute name.

    detectron2's FPN keeps it as ``bottom_up``, cxr's EfficientDet backbone as ``trunk`` (timm);
    any other backbone is its own trunk (name ``""``).
    """
    for name in ("bottom_up", "trunk"):
        m = getattr(backbone, name, None)
        if isinstance(m, nn.Module):
            return m, name
    return backbone, ""


def _last_feature(out, in_feature: str) -> torch.Tensor:
    """One map of a trunk's output: a dict (detectron2) or a list (timm features_only)."""
    if isinstance(out, dict):
        return out[in_feature] if in_feature else list(out.values())[-1]
    return out[int(in_feature) if in_feature else -1]


@CLASSIFICATION_LOSS_REGISTRY.register_as("bce")
def _bce(logits, targets, pos_weight, opts):
    return F.binary_cross_entropy_with_logits(logits, targets, pos_weight=pos_weight)


@CLASSIFICATION_LOSS_REGISTRY.register_as("focal")
def _focal(logits, targets, pos_weight, opts):
    loss = sigmoid_focal_loss(
        logits, targets, alpha=-1.0, gamma=opts["focal_gamma"], reduction="none"
    )
    if pos_weight is not None:
        loss = loss * (1 + (pos_weight - 1) * targets)
    return loss.mean()


@CLASSIFICATION_LOSS_REGISTRY.register_as("asymmetric")
def _asymmetric(logits, targets, pos_weight, opts):
    return asymmetric_loss(
        logits, targets, opts["asl_gamma_neg"], opts["asl_gamma_pos"], opts["asl_clip"], pos_weight
    )


def asymmetric_loss(
    logits: torch.Tensor,
    targets: torch.Tensor,
    gamma_neg: float = 4.0,
    gamma_pos: float = 0.0,
    clip: float = 0.05,
    pos_weight: torch.Tensor | None = None,
) -> torch.Tensor:
    """Asymmetric loss (Ridnik et al. 2021), mean over images and classes.

    ``L = -[w y (1-p)^g+ log p + (1-y) p_m^g- log(1-p_m)]`` with ``p_m = max(p - clip, 0)``
    (easy negatives below ``clip`` are discarded), ``w`` the per-class positive weight.
    """
    p = torch.sigmoid(logits)
    p_m = (p - clip).clamp(min=0) if clip > 0 else p
    log_p = F.logsigmoid(logits)
    log_1m = torch.log((1 - p_m).clamp(min=1e-8))
    pos = targets * (1 - p) ** gamma_pos * log_p
    if pos_weight is not None:
        pos = pos * pos_weight
    neg = (1 - targets) * p_m**gamma_neg * log_1m
    return -(pos + neg).mean()


def positive_weights_from_datasets(dataset_names: Sequence[str], num_classes: int) -> list[float]:
    """Per-class ``negatives / positives`` over the ``labels`` of registered datasets (1.0 for
    a class without positives).

    Raises:
        ValueError naming the dataset and record whose ``labels`` has the wrong length.
    """
    from detectron2.data import DatasetCatalog

    pos = np.zeros(num_classes)
    n = 0
    for name in dataset_names:
        for i, d in enumerate(DatasetCatalog.get(name)):
            lab = d.get("labels")
            if lab is None or len(lab) != num_classes:
                raise ValueError(
                    f"dataset {name}: record {i} ({d.get('file_name', '?')}): field labels has "
                    f"{None if lab is None else len(lab)} entries, expected {num_classes}"
                )
            pos += np.asarray(lab, np.float64)
            n += 1
    return [float((n - p) / p) if p > 0 else 1.0 for p in pos]


def global_pool(x: torch.Tensor, kind: str) -> torch.Tensor:
    """(N, D, h, w) -> (N, D): mean ("avg"), max ("max") or their mean ("avgmax")."""
    if kind == "avg":
        return x.mean((2, 3))
    if kind == "max":
        return x.amax((2, 3))
    if kind == "avgmax":
        return 0.5 * (x.mean((2, 3)) + x.amax((2, 3)))
    raise ValueError(f"MODEL.CLASSIFIER.POOL must be avg, max or avgmax, got {kind!r}")


def build_head(in_dim: int, num_classes: int, kind: str, hidden: int, dropout: float) -> nn.Module:
    """``linear`` (Dropout -> Linear) or ``mlp`` (Linear -> ReLU -> Dropout -> Linear)."""
    if kind == "linear":
        return nn.Sequential(nn.Dropout(dropout), nn.Linear(in_dim, num_classes))
    if kind == "mlp":
        return nn.Sequential(
            nn.Linear(in_dim, hidden), nn.ReLU(inplace=True), nn.Dropout(dropout),
            nn.Linear(hidden, num_classes),
        )  # fmt: skip
    raise ValueError(f"MODEL.CLASSIFIER.HEAD must be linear or mlp, got {kind!r}")


@META_ARCH_REGISTRY.register()
class CXRClassifier(nn.Module):
    """Multi-label classifier: trunk -> pooling -> head -> sigmoid (see the module docstring)."""

    @configurable
    def __init__(
        self,
        *,
        trunk: nn.Module,
        head: nn.Module,
        num_classes: int,
        pixel_mean: Sequence[float],
        pixel_std: Sequence[float],
        in_feature: str = "",
        pool: str = "avg",
        loss: str = "bce",
        loss_options: dict | None = None,
        pos_weight: Sequence[float] | None = None,
        size_divisibility: int = 32,
    ):
        """
        Args:
            trunk: maps (N, 3, H, W) normalized images to a dict or list of feature maps.
            head: maps the (N, D) pooled features to (N, num_classes) logits.
            pixel_mean, pixel_std: per-channel normalization (0-255 input scale).
            in_feature: which trunk output is pooled ("" = the last).
            pool: "avg", "max" or "avgmax".
            loss: name in :data:`CLASSIFICATION_LOSS_REGISTRY`; loss_options its settings
                (``focal_gamma``, ``asl_gamma_neg``, ``asl_gamma_pos``, ``asl_clip``).
            pos_weight: per-class weight of the positive term, or None.
            size_divisibility: batches are zero-padded to a multiple of this.
        """
        super().__init__()
        self.backbone = trunk  # named like detectron2's meta-archs: checkpoints say backbone.*
        self.head = head
        self.num_classes = num_classes
        self.in_feature = in_feature
        self.pool = pool
        global_pool(torch.zeros(1, 1, 1, 1), pool)  # validate the name now
        self.loss_fn = CLASSIFICATION_LOSS_REGISTRY.get(loss)
        self.loss_options = {"focal_gamma": 2.0, "asl_gamma_neg": 4.0, "asl_gamma_pos": 0.0,
                             "asl_clip": 0.05, **(loss_options or {})}  # fmt: skip
        self.size_divisibility = size_divisibility
        self.register_buffer("pixel_mean", torch.tensor(pixel_mean).view(-1, 1, 1), False)
        self.register_buffer("pixel_std", torch.tensor(pixel_std).view(-1, 1, 1), False)
        pw = None if pos_weight is None else torch.tensor(pos_weight, dtype=torch.float32)
        self.register_buffer("pos_weight", pw, False)

    @classmethod
    def from_config(cls, cfg) -> dict:
        backbone = build_backbone(cfg)
        trunk, _ = trunk_of(backbone)
        c = cfg.MODEL.CLASSIFIER
        dim = feature_dim(trunk, c.IN_FEATURE, c.POOL)
        pw = c.POS_WEIGHT
        if isinstance(pw, str):
            if pw != "auto":
                raise ValueError(
                    f"MODEL.CLASSIFIER.POS_WEIGHT must be None, 'auto' or a list, got {pw!r}"
                )
            pw = positive_weights_from_datasets(cfg.DATASETS.TRAIN, c.NUM_CLASSES)
            logger.info(
                "Positive weights from %s: %s", cfg.DATASETS.TRAIN, [round(w, 2) for w in pw]
            )
        if pw is not None and len(pw) != c.NUM_CLASSES:
            raise ValueError(
                f"MODEL.CLASSIFIER.POS_WEIGHT has {len(pw)} entries, expected {c.NUM_CLASSES}"
            )
        return {
            "trunk": trunk,
            "head": build_head(dim, c.NUM_CLASSES, c.HEAD, c.HIDDEN_DIM, c.DROPOUT),
            "num_classes": c.NUM_CLASSES,
            "pixel_mean": cfg.MODEL.PIXEL_MEAN,
            "pixel_std": cfg.MODEL.PIXEL_STD,
            "in_feature": c.IN_FEATURE,
            "pool": c.POOL,
            "loss": c.LOSS,
            "loss_options": {"focal_gamma": c.FOCAL_GAMMA, "asl_gamma_neg": c.ASL_GAMMA_NEG,
                             "asl_gamma_pos": c.ASL_GAMMA_POS, "asl_clip": c.ASL_CLIP},
            "pos_weight": pw,
            "size_divisibility": max(32, getattr(backbone, "size_divisibility", 0) or 0),
        }  # fmt: skip

    @property
    def device(self) -> torch.device:
        return self.pixel_mean.device

    def preprocess_image(self, batched_inputs: list[dict]) -> ImageList:
        """Normalize and batch (zero-pad to ``size_divisibility``) the ``image`` tensors."""
        images = [
            (x["image"].to(self.device) - self.pixel_mean) / self.pixel_std for x in batched_inputs
        ]
        return ImageList.from_tensors(images, self.size_divisibility)

    def feature_map(self, x: torch.Tensor) -> torch.Tensor:
        """(N, D, h, w) trunk map that is pooled (Grad-CAM explains this one)."""
        return _last_feature(self.backbone(x), self.in_feature)

    def forward(self, batched_inputs: list[dict]):
        """
        Args:
            batched_inputs: dicts with ``image`` (uint8 CHW) and, in training, ``labels``.

        Returns:
            training: ``{"loss_cls": scalar}``; inference: per image ``{"scores", "embedding"}``.
        """
        images = self.preprocess_image(batched_inputs)
        emb = global_pool(self.feature_map(images.tensor).float(), self.pool)
        logits = self.head(emb)
        if self.training:
            targets = torch.stack(
                [torch.as_tensor(x["labels"], dtype=torch.float32) for x in batched_inputs]
            )
            loss = self.loss_fn(
                logits, targets.to(logits.device), self.pos_weight, self.loss_options
            )
            return {"loss_cls": loss}
        probs = logits.sigmoid()
        return [{"scores": p, "embedding": e} for p, e in zip(probs, emb)]


def feature_dim(trunk: nn.Module, in_feature: str = "", pool: str = "avg") -> int:
    """Channels of the pooled trunk map, from one forward pass of a small zero image."""
    was_training = trunk.training
    trunk.eval()
    try:
        with torch.no_grad():
            p = next(trunk.parameters(), None)
            x = torch.zeros(1, 3, 64, 64, device=p.device if p is not None else "cpu")
            return int(global_pool(_last_feature(trunk(x), in_feature), pool).shape[1])
    finally:
        trunk.train(was_training)

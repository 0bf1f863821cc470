"""Sigmoid focal loss with per-class alpha, and class-balanced alpha from class frequencies."""
from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Union

import numpy as np
import torch
from torch.nn import functional as F

__all__ = [
    "class_balanced_alpha",
    "class_counts_from_datasets",
    "resolve_focal_alpha",
    "sigmoid_focal_loss",
]

logger = logging.getLogger(__name__)

AlphaSpec = Union[None, float, Sequence[float], str]


def sigmoid_focal_loss(
    logits: torch.Tensor,
    targets: torch.Tensor,
    alpha: float | torch.Tensor = 0.25,
    gamma: float = 2.0,
    reduction: str = "sum",
) -> torch.Tensor:
    """Focal loss (Lin et al. 2017) on independent per-class sigmoids, alpha per class allowed.

    ``FL = -a_t (1 - p_t)^gamma log(p_t)`` with ``p_t = p`` for a target 1 and ``1 - p`` for 0,
    ``a_t = alpha_c`` for a target 1 and ``1 - alpha_c`` for 0.

    Args:
        logits: (..., K) raw scores.
        targets: (..., K) float targets in {0, 1} (all zeros = background).
        alpha: a number or a (K,) tensor; a negative number disables alpha weighting.
        gamma: focusing exponent (0 gives alpha-weighted binary cross-entropy).
        reduction: "none", "sum" or "mean".

    Returns:
        The loss, shaped like ``logits`` for "none", else a scalar.
    """
    p = torch.sigmoid(logits)
    ce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    p_t = p * targets + (1 - p) * (1 - targets)
    loss = ce * (1 - p_t) ** gamma if gamma else ce
    if isinstance(alpha, torch.Tensor) or alpha >= 0:
        loss = (alpha * targets + (1 - alpha) * (1 - targets)) * loss
    if reduction == "sum":
        return loss.sum()
    if reduction == "mean":
        return loss.mean()
    if reduction != "none":
        raise ValueError(f"reduction must be none/sum/mean, got {reduction!r}")
    return loss


def class_balanced_alpha(
    counts: Sequence[float], mean_alpha: float = 0.25, power: float = 1.0, clip=(0.01, 0.99)
) -> list[float]:
    """Per-class focal alpha from class frequencies ("auto").

    ``w_c = max(n_c, 1) ** -power``; ``alpha_c = mean_alpha * K * w_c / sum_j w_j``, clipped to
    ``clip``. So the mean alpha over classes is ``mean_alpha`` (before clipping), and a class
    with half the boxes of another gets twice its alpha (``power=1``, inverse frequency).
    A class with no boxes counts as one box.

    Args:
        counts: number of GT boxes per class, index = class id.
        mean_alpha: mean alpha over the classes (detectron2's default 0.25).
        power: exponent p of the inverse frequency.
        clip: (low, high) bounds of each alpha.

    Returns:
        ``len(counts)`` floats.
    """
    n = np.maximum(np.asarray(counts, dtype=np.float64), 1.0)
    if n.ndim != 1 or n.size == 0:
        raise ValueError(f"counts must be a non-empty 1-D sequence, got {counts!r}")
    w = n**-power
    alpha = mean_alpha * n.size * w / w.sum()
    return np.clip(alpha, clip[0], clip[1]).tolist()


def class_counts_from_datasets(dataset_names: Sequence[str], num_classes: int) -> list[int]:
    """Number of GT boxes per class over detectron2-registered datasets (crowd boxes skipped).

    Args:
        dataset_names: names in ``DatasetCatalog`` (e.g. ``cfg.DATASETS.TRAIN``).
        num_classes: K; category ids must lie in [0, K).

    Returns:
        K integers.
    """
    from detectron2.data import DatasetCatalog

    counts = np.zeros(num_classes, dtype=np.int64)
    for name in dataset_names:
        for i, d in enumerate(DatasetCatalog.get(name)):
            for j, a in enumerate(d.get("annotations", [])):
                if a.get("iscrowd", 0):
                    continue
                c = int(a["category_id"])
                if not 0 <= c < num_classes:
                    raise ValueError(
                        f"dataset {name}: record {i} ({d.get('file_name', '?')}), annotation {j}: "
                        f"field category_id={c} outside [0, {num_classes})"
                    )
                counts[c] += 1
    return counts.tolist()


def resolve_focal_alpha(
    spec: AlphaSpec,
    num_classes: int,
    default: float,
    dataset_names: Sequence[str] = (),
    power: float = 1.0,
) -> float | list[float]:
    """Turn a config alpha (None, number, list or "auto") into a number or K numbers.

    Args:
        spec: the config value; None gives ``default``.
        num_classes: K.
        default: the scalar alpha (also the mean alpha of "auto").
        dataset_names: training datasets counted for "auto".
        power: exponent of the "auto" inverse frequency.

    Returns:
        A float (same alpha for all classes) or a list of K floats.
    """
    if spec is None:
        return float(default)
    if isinstance(spec, str):
        if spec.lower() != "auto":
            raise ValueError(f"focal alpha must be a number, a list or 'auto', got {spec!r}")
        if not dataset_names:
            raise ValueError("focal alpha 'auto' needs DATASETS.TRAIN to count classes on")
        counts = class_counts_from_datasets(dataset_names, num_classes)
        alpha = class_balanced_alpha(counts, mean_alpha=default, power=power)
        logger.info("Class-balanced focal alpha from box counts %s: %s", counts, alpha)
        return alpha
    if isinstance(spec, (int, float)):
        return float(spec)
    alpha = [float(a) for a in spec]
    if len(alpha) != num_classes:
        raise ValueError(f"focal alpha list has {len(alpha)} values for {num_classes} classes")
    return alpha

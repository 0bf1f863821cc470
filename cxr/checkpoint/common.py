"""What every weight conversion shares: a report of kept / dropped tensors, class-layer reset,
and writing the converted checkpoint (+ a ready config) atomically."""
from __future__ import annotations

import collections
import dataclasses
import logging
import math
import os

import torch

from ..fileio import atomic_write, write_text_atomic

__all__ = [
    "ConversionReport",
    "check_against_model",
    "reinit_class_layer",
    "write_checkpoint",
    "write_config",
]

logger = logging.getLogger(__name__)


@dataclasses.dataclass
class ConversionReport:
    """What a conversion did, by destination (cxr) tensor name unless said otherwise.

    Attributes:
        kept: converted tensors (destination names).
        dropped: source tensors with no place in the cxr model (source names).
        reinitialized: destination tensors set afresh (e.g. a class layer for another count).
        notes: one line per transformation applied beyond renaming (folds, reorders).
    """

    kept: list[str] = dataclasses.field(default_factory=list)
    dropped: list[str] = dataclasses.field(default_factory=list)
    reinitialized: list[str] = dataclasses.field(default_factory=list)
    notes: list[str] = dataclasses.field(default_factory=list)

    def summary(self, group_over: int = 3) -> str:
        """Human-readable lines: counts, then the dropped and re-initialized names, then notes.

        Dropped tensors that share their last name part with more than ``group_over`` others
        (e.g. every BatchNorm's ``num_batches_tracked``) are one line with their count.
        """
        lines = [
            f"kept {len(self.kept)} tensors, dropped {len(self.dropped)}, "
            f"re-initialized {len(self.reinitialized)}"
        ]
        leaves = collections.Counter(k.rsplit(".", 1)[-1] for k in self.dropped)
        grouped = {leaf for leaf, n in leaves.items() if n > group_over}
        lines += [f"  dropped: {k}" for k in self.dropped if k.rsplit(".", 1)[-1] not in grouped]
        lines += [f"  dropped: {leaves[leaf]} tensors named *.{leaf}" for leaf in sorted(grouped)]
        lines += [f"  re-initialized: {k}" for k in self.reinitialized]
        lines += [f"  note: {n}" for n in self.notes]
        return "\n".join(lines)


def check_against_model(
    converted: dict[str, torch.Tensor], reference: dict[str, torch.Tensor], target: str,
    shown: int = 5,
) -> None:
    """Refuse a conversion that does not fit the model it is meant for: every converted tensor
    must exist in ``reference`` (the target model's state dict) with the same shape, and every
    reference tensor (BatchNorm counters aside) must be converted.

    Args:
        converted: the converted state dict.
        reference: the target architecture's state dict (e.g. ``build_model(cfg).state_dict()``).
        target: names the architecture in the message.
        shown: how many differing tensors the message names.

    Raises:
        ValueError naming the first tensors that differ and the counts.
    """
    shape = [f"{k} {tuple(v.shape)} vs {tuple(reference[k].shape)}"
             for k, v in converted.items() if k in reference and reference[k].shape != v.shape]
    unexpected = [k for k in converted if k not in reference]
    missing = [k for k in reference
               if k not in converted and not k.endswith("num_batches_tracked")]  # fmt: skip
    if not (shape or unexpected or missing):
        return
    first = (shape + [f"{k} (not in {target})" for k in unexpected]
             + [f"{k} (missing from the input)" for k in missing])[:shown]  # fmt: skip
    raise ValueError(
        f"the input does not fit {target}: {len(shape)} tensors differ in shape, "
        f"{len(unexpected)} are not in {target}, {len(missing)} of {target} are missing; first: "
        + "; ".join(first)
        + ". Pass the --arch the file was trained as"
    )


def reinit_class_layer(
    state: dict[str, torch.Tensor],
    weight_key: str,
    bias_key: str,
    num_anchors: int,
    num_classes: int,
    prior_prob: float = 0.01,
    seed: int = 0,
) -> None:
    """In place: a conv class layer for ``num_anchors * num_classes`` outputs, weights
    N(0, 0.01) (seeded) and bias ``-log((1 - p) / p)`` (the focal-loss prior of RetinaNet).
    """
    w = state[weight_key]
    g = torch.Generator().manual_seed(seed)
    shape = (num_anchors * num_classes, *w.shape[1:])
    state[weight_key] = torch.randn(shape, generator=g, dtype=w.dtype) * 0.01
    state[bias_key] = torch.full(
        (shape[0],), -math.log((1 - prior_prob) / prior_prob), dtype=state[bias_key].dtype
    )


def write_checkpoint(path: str, model_state: dict[str, torch.Tensor], meta: dict) -> None:
    """Save ``{"model": state, "meta": meta}`` atomically (loads with weights_only=True)."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    state = {k: v.contiguous() for k, v in model_state.items()}
    atomic_write(path, lambda f: torch.save({"model": state, "meta": meta}, f))


def write_config(path: str, base: str, weights: str, body: str, comment: str) -> None:
    """A config ``_BASE_``-ing ``base`` (relative to ``path``'s folder) with MODEL.WEIGHTS set.

    Args:
        path: the YAML file to write.
        base: the zoo config it extends.
        weights: the converted checkpoint (written relative to the working directory as given).
        body: further YAML lines under ``MODEL:`` and top-level keys, already indented.
        comment: first-line comment saying what the config runs.
    """
    rel = os.path.relpath(os.path.abspath(base), os.path.dirname(os.path.abspath(path)))
    text = f'# {comment}\n_BASE_: "{rel}"\nMODEL:\n  WEIGHTS: "{weights}"\n{body}'
    write_text_atomic(path, text)

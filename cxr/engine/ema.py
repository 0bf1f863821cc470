"""Exponential moving average (EMA) of model weights.

The EMA copy is updated after every optimizer step (:class:`EMAHook`), swapped into the model
for evaluation (:func:`ema_swapped`), and saved in checkpoints under the key ``"ema"`` (it is a
checkpointable: ``state_dict`` / ``load_state_dict``).
"""
from __future__ import annotations

import contextlib
import logging
from typing import Iterator

import torch
from detectron2.engine import HookBase
from torch import nn

__all__ = ["ModelEMA", "EMAHook", "ema_swapped", "unwrap"]

logger = logging.getLogger(__name__)


def unwrap(model: nn.Module) -> nn.Module:
    """The module inside DistributedDataParallel, or the model itself."""
    return model.module if hasattr(model, "module") else model


class ModelEMA:
    """Shadow copy of a model's parameters and floating-point buffers.

    Update rule at update ``n`` (0-based): ``d = min(decay, (1 + n) / (10 + n))``,
    ``ema = d * ema + (1 - d) * weight`` for every floating-point tensor of the state dict;
    integer buffers (e.g. BN's ``num_batches_tracked``) are copied.
    """

    def __init__(self, model: nn.Module, decay: float):
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"MODEL.EMA.DECAY must be in [0, 1), got {decay}")
        self.decay = decay
        self.updates = 0
        self.state = {k: v.detach().clone() for k, v in unwrap(model).state_dict().items()}

    def current_decay(self) -> float:
        return min(self.decay, (1.0 + self.updates) / (10.0 + self.updates))

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        d = self.current_decay()
        floats_ema, floats_model = [], []
        for k, v in unwrap(model).state_dict().items():
            if v.dtype.is_floating_point:
                floats_ema.append(self.state[k])
                floats_model.append(v.detach())
            else:
                self.state[k].copy_(v)
        torch._foreach_mul_(floats_ema, d)
        torch._foreach_add_(floats_ema, floats_model, alpha=1.0 - d)
        self.updates += 1

    def state_dict(self) -> dict:
        return {"weights": self.state, "updates": self.updates, "decay": self.decay}

    def load_state_dict(self, state: dict) -> None:
        missing = set(self.state) - set(state["weights"])
        if missing:
            raise KeyError(f"EMA state lacks {len(missing)} weights, e.g. {sorted(missing)[:3]}")
        for k, v in state["weights"].items():
            if k in self.state:
                self.state[k].copy_(v)
        self.updates = int(state["updates"])


@contextlib.contextmanager
def ema_swapped(model: nn.Module, ema: ModelEMA | None) -> Iterator[nn.Module]:
    """Temporarily load the EMA weights into ``model``; the live weights come back afterwards."""
    if ema is None:
        yield model
        return
    module = unwrap(model)
    live = {k: v.detach().clone() for k, v in module.state_dict().items()}
    module.load_state_dict(ema.state)
    try:
        yield model
    finally:
        module.load_state_dict(live)


class EMAHook(HookBase):
    """Updates a :class:`ModelEMA` after every training step."""

    def __init__(self, ema: ModelEMA):
        self.ema = ema

    def after_step(self):
        self.ema.update(self.trainer.model)

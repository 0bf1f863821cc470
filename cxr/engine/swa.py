"""Stochastic weight averaging (SWA, Izmailov et al. 2018) beside the EMA.

From iteration ``START x MAX_ITER`` on, every ``PERIOD`` iterations the weights are added to an
equal-weight running mean (``mean_n = mean_{n-1} + (w - mean_{n-1}) / n`` over floating-point
parameters and buffers; integer buffers copied). After training, the mean is loaded into the
model, the BatchNorm running statistics are recomputed on ``BN_BATCHES`` training batches
(cumulative average, no gradient, nothing else changes), the result is saved as
``<OUTPUT_DIR>/model_swa.pth`` (a checkpoint ``tools/eval.py`` and ``MODEL.WEIGHTS`` read) and
evaluated on ``DATASETS.TEST`` into ``<OUTPUT_DIR>/inference_swa/<dataset>``, with its metrics
under ``swa/`` in the event storage. The live weights are put back afterwards, so
``model_final.pth`` and the EMA are unchanged.
"""

from __future__ import annotations

import logging
import os
from typing import Callable, Iterable

import torch
from detectron2.engine import HookBase
from detectron2.utils import comm
from torch import nn

from ..fileio import atomic_write
from .ema import unwrap

__all__ = ["SWAHook", "WeightAverage", "recompute_bn_statistics"]

logger = logging.getLogger(__name__)


class WeightAverage:
    """Equal-weight running mean of a model's state dict (see the module docstring)."""

    def __init__(self):
        self.count = 0
        self.state: dict[str, torch.Tensor] = {}

    @torch.no_grad()
    def add(self, model: nn.Module) -> None:
        self.count += 1
        for k, v in unwrap(model).state_dict().items():
            if k not in self.state or not v.dtype.is_floating_point:
                self.state[k] = v.detach().clone()
            else:
                self.state[k] += (v.detach() - self.state[k]) / self.count

    def state_dict(self) -> dict:
        return {"weights": self.state, "count": self.count}

    def load_state_dict(self, state: dict) -> None:
        self.state = {k: v.clone() for k, v in state["weights"].items()}
        self.count = int(state["count"])


@torch.no_grad()
def recompute_bn_statistics(model: nn.Module, batches: Iterable, num_batches: int) -> int:
    """Reset every BatchNorm's running mean / var and re-estimate them as the plain average over
    ``num_batches`` forward passes in training mode (detectron2 models: loss dicts, ignored).

    Returns:
        the number of batches used (0 when the model has no BatchNorm).
    """
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not norms:
        return 0
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative moving average = the plain mean over the batches
    was_training = model.training
    model.train()
    n = 0
    try:
        for batch in batches:
            if n >= num_batches:
                break
            model(batch)
            n += 1
    finally:
        for m, mom in zip(norms, momenta):
            m.momentum = mom
        model.train(was_training)
    return n


class SWAHook(HookBase):
    """Collects the SWA mean during training and finalises it after training.

    Args:
        start_iter: first iteration (0-based) whose weights enter the mean.
        period: iterations between two entries.
        bn_batches: training batches for the BN statistics (0: keep the averaged buffers).
        batches: callable returning an iterator of training batches.
        evaluate: callable(model) -> results dict (or None to skip evaluation).
        output_dir: where ``model_swa.pth`` goes.
    """

    def __init__(
        self,
        start_iter: int,
        period: int,
        bn_batches: int,
        batches: Callable[[], Iterable],
        evaluate: Callable[[nn.Module], dict] | None,
        output_dir: str,
    ):
        if period < 1:
            raise ValueError(f"SOLVER.SWA.PERIOD must be >= 1, got {period}")
        self.start_iter, self.period, self.bn_batches = start_iter, period, bn_batches
        self._batches, self._evaluate, self._output_dir = batches, evaluate, output_dir
        self.average = WeightAverage()

    def after_step(self):
        it = self.trainer.iter
        if it >= self.start_iter and (it - self.start_iter) % self.period == 0:
            self.average.add(self.trainer.model)

    def after_train(self):
        if self.average.count == 0 or self.trainer.iter + 1 < self.trainer.max_iter:
            return  # nothing averaged, or training stopped early (an exception)
        module = unwrap(self.trainer.model)
        live = {k: v.detach().clone() for k, v in module.state_dict().items()}
        module.load_state_dict(self.average.state)
        try:
            n = (
                recompute_bn_statistics(module, self._batches(), self.bn_batches)
                if self.bn_batches
                else 0
            )
            logger.info(
                "SWA: mean of %d snapshots; BN statistics from %d batches", self.average.count, n
            )
            if comm.is_main_process():
                path = os.path.join(self._output_dir, "model_swa.pth")
                meta = {
                    "snapshots": self.average.count,
                    "bn_batches": n,
                    "iteration": self.trainer.iter,
                }
                atomic_write(
                    path, lambda f: torch.save({"model": module.state_dict(), "swa": meta}, f)
                )
                logger.info("SWA weights saved to %s", path)
            results = self._evaluate(self.trainer.model) if self._evaluate else None
            if results and comm.is_main_process():
                flat = {f"swa/{k}/{m}": v for k, d in results.items() for m, v in d.items()
                        if isinstance(v, (int, float))}  # fmt: skip
                self.trainer.storage.put_scalars(**flat, smoothing_hint=False)
        finally:
            module.load_state_dict(live)


def build_swa_hook(trainer) -> SWAHook | None:
    """The :class:`SWAHook` of ``trainer.cfg.SOLVER.SWA`` (None when disabled)."""
    cfg = trainer.cfg
    s = cfg.SOLVER.SWA
    if not s.ENABLED:
        return None
    if not 0.0 <= s.START < 1.0:
        raise ValueError(
            f"SOLVER.SWA.START must be a fraction of MAX_ITER in [0, 1), got {s.START}"
        )

    def evaluate(model):
        if not cfg.DATASETS.TEST:
            return None
        folders = [os.path.join(cfg.OUTPUT_DIR, "inference_swa", n) for n in cfg.DATASETS.TEST]
        evaluators = [
            trainer.build_evaluator(cfg, n, f) for n, f in zip(cfg.DATASETS.TEST, folders)
        ]
        return trainer.test(cfg, model, evaluators)

    return SWAHook(
        int(s.START * cfg.SOLVER.MAX_ITER), s.PERIOD, s.BN_BATCHES,
        # The running training stream: a second iterator of detectron2's aspect-ratio grouped
        # loader would share (and never fill) the first one's half-full buckets.
        lambda: trainer._trainer._data_loader_iter, evaluate, cfg.OUTPUT_DIR,
    )  # fmt: skip

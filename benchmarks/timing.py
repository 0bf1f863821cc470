"""Timing primitives shared by every benchmark: warm-up, repetitions, median and spread."""
from __future__ import annotations

import dataclasses
import resource
import statistics
import sys
import time
from typing import Callable

import torch

from cxr.registry import NamedRegistry

__all__ = [
    "BENCHMARK_REGISTRY",
    "TimingStats",
    "peak_rss_mib",
    "result_row",
    "time_alternating",
    "time_repeated",
]

BENCHMARK_REGISTRY = NamedRegistry("CXR_BENCHMARK")
BENCHMARK_REGISTRY.__doc__ = "Benchmark tasks by --task name: fn(args) -> list of result rows."


@dataclasses.dataclass
class TimingStats:
    """Seconds per call over the timed repetitions (warm-up excluded)."""

    times: list[float]

    @property
    def median(self) -> float:
        return statistics.median(self.times)

    @property
    def spread(self) -> float:
        """Interquartile range in seconds (0 with fewer than 2 samples)."""
        if len(self.times) < 2:
            return 0.0
        q = statistics.quantiles(self.times, n=4, method="inclusive")
        return q[2] - q[0]

    def summary(self, unit_scale: float = 1000.0, unit: str = "ms") -> str:
        return (
            f"median {self.median * unit_scale:.2f} {unit}, IQR {self.spread * unit_scale:.2f} "
            f"{unit}, min {min(self.times) * unit_scale:.2f} {unit}, n={len(self.times)}"
        )


def _sync(device: str | torch.device | None) -> None:
    if device is not None and str(device).startswith("cuda"):
        torch.cuda.synchronize()


def time_repeated(
    fn: Callable[[], object], warmup: int, repeats: int, device: str | None = None
) -> TimingStats:
    """Call ``fn`` ``warmup`` times untimed, then ``repeats`` times timed (wall clock, seconds)."""
    for _ in range(warmup):
        fn()
    _sync(device)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - t0)
    return TimingStats(times)


def time_alternating(
    fns: dict[str, Callable[[], object]], warmup: int, repeats: int, device: str | None = None
) -> dict[str, TimingStats]:
    """Time several callables in turn (A, B, A, B, ...) so that machine load hits each alike.

    Each callable runs ``warmup`` times untimed (interleaved), then ``repeats`` timed rounds in
    which every callable runs once, in the order of ``fns``.

    Returns:
        name -> TimingStats (seconds per call).
    """
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    _sync(device)
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            _sync(device)
            times[name].append(time.perf_counter() - t0)
    return {k: TimingStats(v) for k, v in times.items()}


def peak_rss_mib() -> float:
    """Peak resident set size of this process in MiB (ru_maxrss is KiB on Linux, bytes on macOS)."""
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / (1024 * 1024) if sys.platform == "darwin" else rss / 1024


def result_row(
    name: str, ours: float, peer: float | None, unit: str, better: str, **extra: object
) -> dict:
    """One comparison row: ``ratio`` = ours / peer (None without a peer).

    Args:
        better: "lower" when smaller values win (times), "higher" otherwise (throughput).
    """
    if better not in ("lower", "higher"):
        raise ValueError(f"better must be 'lower' or 'higher', got {better!r}")
    ratio = (ours / peer) if peer else None
    return {"name": name, "ours": ours, "peer": peer, "unit": unit, "ratio": ratio,
            "better": better, **extra}  # fmt: skip

"""Benchmarks: timing helpers and a registry of tasks run by ``tools/benchmark.py``.

Each task is a function ``(args: argparse.Namespace) -> list[dict]`` registered in
:data:`BENCHMARK_REGISTRY` under its ``--task`` name; each returned dict is one result row
(see :func:`cxr.benchmark.timing.result_row`).
"""
from .timing import (  # noqa: F401
    BENCHMARK_REGISTRY,
    TimingStats,
    peak_rss_mib,
    result_row,
    time_alternating,
    time_repeated,
)

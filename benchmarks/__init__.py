"""Benchmarks of cxr against its peers (``make bench``, ``tools/benchmark.py``).

Not part of the installed ``cxr`` package: this folder runs from a source checkout. Each task
is a function ``(args: argparse.Namespace) -> list[dict]`` registered in
:data:`~benchmarks.timing.BENCHMARK_REGISTRY` under its ``--task`` name; each returned dict is
one result row (see :func:`benchmarks.timing.result_row`). :mod:`benchmarks.tasks` registers
the measurements, :mod:`benchmarks.suite` the ``all`` task that runs every peer comparison.
"""
from .timing import (  # noqa: F401
    BENCHMARK_REGISTRY,
    TimingStats,
    peak_rss_mib,
    result_row,
    time_alternating,
    time_repeated,
)

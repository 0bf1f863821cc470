"""Task ``all`` (``make bench``): every peer comparison, each in a fresh process, then the files.

Each comparison of :data:`benchmarks.report.COMPARISONS` runs in its own spawned process (no
state, caches or thread pools shared between them) with ``--repeats`` / ``--warmup`` capped per
comparison; the rows go to ``results.json`` / ``results.md`` / ``details.json`` in the folder of
``--output`` (default ``output/bench``). A comparison that fails is logged and recorded in
details.json; the others are still written, then the task raises.
"""
from __future__ import annotations

import argparse
import logging
import multiprocessing
import os
import traceback

from . import tasks  # noqa: F401  (registers the measurement tasks)
from .report import COMPARISONS, Comparison, machine_description, summary_row, write_results
from .timing import BENCHMARK_REGISTRY

__all__ = ["run_all", "run_in_process", "run_suite"]

logger = logging.getLogger(__name__)

DEFAULT_FOLDER = os.path.join("output", "bench")


def _child(task: str, args: argparse.Namespace, conn) -> None:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        conn.send(("ok", BENCHMARK_REGISTRY.get(task)(args)))
    except BaseException:  # report any failure to the parent, which decides
        conn.send(("error", traceback.format_exc()))
    finally:
        conn.close()


def run_in_process(task: str, args: argparse.Namespace) -> list[dict]:
    """Run benchmark ``task`` with ``args`` in a spawned process; its result rows.

    Raises:
        RuntimeError: the task raised (its traceback is in the message) or the process died.
    """
    ctx = multiprocessing.get_context("spawn")
    recv, send = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_child, args=(task, args, send), name=f"bench-{task}")
    proc.start()
    send.close()
    try:
        status, payload = recv.recv()
    except EOFError:
        proc.join()
        raise RuntimeError(f"benchmark task {task!r} died (exit code {proc.exitcode})") from None
    finally:
        recv.close()
    proc.join()
    if status != "ok":
        raise RuntimeError(f"benchmark task {task!r} failed:\n{payload}")
    return payload


def run_suite(
    args: argparse.Namespace, comparisons: tuple[Comparison, ...], folder: str
) -> list[dict]:
    """Run ``comparisons`` one process each and write the results files into ``folder``.

    Args:
        args: the benchmark arguments (device, warmup, repeats, optional threads / sizes);
            config file and overrides are cleared: each comparison uses its own config.

    Returns:
        The results.json rows of the comparisons that succeeded.
    """
    machine = machine_description(args.device)
    rows, details, failed = [], [], []
    for c in comparisons:
        sub = argparse.Namespace(**vars(args))
        sub.config_file, sub.opts, sub.output, sub.task = "", [], "", c.task
        sub.repeats = max(1, min(int(args.repeats), c.max_repeats))
        sub.warmup = max(0, min(int(args.warmup), c.max_warmup))
        logger.info("== %s (task %s, %d repeats) ==", c.name, c.task, sub.repeats)
        try:
            row = next(r for r in run_in_process(c.task, sub) if r["name"] == c.name)
        except (RuntimeError, StopIteration) as e:
            logger.error("%s failed: %s", c.name, e or "no row of that name")
            failed.append(c.name)
            details.append({"name": c.name, "error": str(e) or "no row of that name"})
            continue
        rows.append(row)
        details.append({**row, "repeats_capped": sub.repeats})
    machine["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
    paths = write_results(folder, rows, machine, details)
    logger.info("wrote %s", ", ".join(paths.values()))
    if failed:
        raise RuntimeError(f"benchmark comparisons failed: {failed}; see {paths['details']}")
    return [summary_row(r) for r in rows]


@BENCHMARK_REGISTRY.register_as("all")
def run_all(args: argparse.Namespace) -> list[dict]:
    """``--task all``: every comparison of COMPARISONS; files in the folder of ``--output``."""
    output = getattr(args, "output", "") or ""
    folder = os.path.dirname(output) if output else DEFAULT_FOLDER
    return run_suite(args, COMPARISONS, folder or ".")

#!/usr/bin/env python
"""Benchmark cxr, detectron2-style: ``--config-file CFG --task {data,train,eval,inference,...}``.

Each task warms up, then times repetitions and prints median and spread, throughput and peak
memory; ``--output FILE`` also writes the result rows as JSON. ``--task all`` runs every peer
comparison (``make bench``). Tasks live in the source tree's ``benchmarks/`` folder (registry
``BENCHMARK_REGISTRY``), which is not installed with cxr.
"""
import argparse
import json
import logging
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # benchmarks/

import cxr  # noqa: E402,F401
from benchmarks import BENCHMARK_REGISTRY  # noqa: E402
from benchmarks import suite  # noqa: E402,F401  (registers every task, "all" included)
from cxr.fileio import json_safe, write_json_atomic  # noqa: E402


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--config-file", default="", help="config of the model / data to benchmark")
    p.add_argument("--task", required=True, help=f"one of {BENCHMARK_REGISTRY.names()}")
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--repeats", type=int, default=10)
    p.add_argument("--output", default="", help="write the result rows here (JSON)")
    p.add_argument("opts", nargs=argparse.REMAINDER, help="KEY VALUE config overrides")
    return p.parse_args(argv)


def main(argv=None):
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    args = parse_args(argv)
    rows = BENCHMARK_REGISTRY.get(args.task)(args)
    for row in rows:
        print(json.dumps(row))
    if args.output:
        write_json_atomic(args.output, json_safe(rows))
    return rows


if __name__ == "__main__":
    main()

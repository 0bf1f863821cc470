#!/usr/bin/env python
"""Benchmark cxr, detectron2-style: ``--config-file CFG --task {data,train,eval,inference,...}``.

Each task warms up, then times repetitions and prints median and spread, throughput and peak
memory; ``--output FILE`` also writes the result rows as JSON. Tasks live in
:mod:`cxr.benchmark` (registry ``BENCHMARK_REGISTRY``).
"""
import argparse
import json
import logging
import os

import cxr  # noqa: F401
from cxr.benchmark import BENCHMARK_REGISTRY
from cxr.benchmark import tasks  # noqa: F401  (registers the tasks)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--config-file", default="", help="config of the model / data to benchmark")
    p.add_argument("--task", required=True, help=f"one of {sorted(BENCHMARK_REGISTRY._obj_map)}")
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
        os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
        tmp = args.output + ".tmp"
        with open(tmp, "w") as f:
            json.dump(rows, f, indent=2)
        os.replace(tmp, args.output)
    return rows


if __name__ == "__main__":
    main()

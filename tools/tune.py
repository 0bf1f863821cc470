#!/usr/bin/env python
"""Hyper-parameter search with Optuna: each trial trains a cxr config with sampled overrides.

    python tools/tune.py --config-file configs/phantom/retinanet_demo.yaml \\
        --space configs/tune/retinanet_space.yaml --trials 20 --study demo --output output/tune \\
        SOLVER.MAX_ITER 500 TEST.EVAL_PERIOD 100

    # more workers (other shells or machines) join the same study through one storage:
    python tools/tune.py ... --study demo --storage sqlite:////shared/tune.db
    python tools/tune.py ... --study demo --storage /shared/tune/study.journal

The space file maps config keys to distributions (``{type: float, low, high, log}``,
``{type: int, low, high, step}``, ``{type: categorical, choices: [...]}``); trailing ``KEY VALUE``
pairs are fixed for every trial. Trials train into OUTPUT/trial_<n>; OUTPUT gets best.yaml (for
tools/train_net.py), trials.csv and plots. A rerun continues the study. Logic: cxr.apps.tune.
"""

import argparse
import json
import sys

import cxr  # noqa: F401  (registers datasets, models, evaluators)


def parse_args(argv=None):
    from cxr.apps.tune import PRUNERS

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("--config-file", required=True, help="YAML or LazyConfig .py config")
    p.add_argument("--space", required=True, help="search-space YAML")
    p.add_argument("--trials", type=int, required=True, help="trials of the study in total")
    p.add_argument("--study", required=True, help="study name")
    p.add_argument("--output", required=True, help="folder of the trials and results")
    p.add_argument(
        "--storage", default="", help="RDB URL or journal file (default OUTPUT/study.journal)"
    )
    p.add_argument("--metric", default="cxr/AP50", help="event-storage key to optimise")
    p.add_argument("--direction", default="maximize", choices=["maximize", "minimize"])
    p.add_argument("--pruner", default="median", choices=PRUNERS.names())
    p.add_argument("--no-plots", action="store_true", help="skip the Optuna plots")
    p.add_argument("opts", nargs=argparse.REMAINDER, help="KEY VALUE overrides for every trial")
    return p.parse_args(argv)


def main(argv=None):
    from cxr.apps.tune import TuneSettings, run_tune

    a = parse_args(argv)
    settings = TuneSettings(a.config_file, a.space, a.trials, a.study, a.output, a.storage,
                            a.metric, a.direction, a.pruner, list(a.opts), not a.no_plots)  # fmt: skip
    summary = run_tune(settings)
    print(json.dumps(summary))
    return summary


if __name__ == "__main__":
    sys.exit(0 if main() is not None else 1)

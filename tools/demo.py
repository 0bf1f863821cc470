#!/usr/bin/env python
"""The phantom demo (``make demo``): render, score the shipped weights, train on, score, report.

Examples::

    python tools/demo.py                       # the fine-tune demo (docs/demo.md)
    python tools/demo.py --full                # from scratch, no shipped weights (longer)
    python tools/demo.py --profile 10          # CPU seconds per training iteration, by part

Prints each step's command before running it. Training evaluates on phantom_nih_val every 500
iterations (AP curves in TensorBoard), keeps the best checkpoint (OUTPUT/model_best.pth) and the
per-class operating points chosen on phantom_nih_val beside it (OUTPUT/thresholds.json); that
model is then scored on phantom_nih_test at those operating points. Last, it prints both
phantom-test AP50 figures, the operating points, the wall time, and the path of the evaluation's
report.html (last line); writes OUTPUT/run.json.
Logic: :mod:`cxr.apps.demo`.
"""

import time

STARTED = time.time()  # the demo's wall time counts from here

import argparse  # noqa: E402
import sys  # noqa: E402

FULL_OPTS = (
    "SOLVER.MAX_ITER",
    "4000",
    "SOLVER.CHECKPOINT_PERIOD",
    "500",
    "TEST.EVAL_PERIOD",
    "1000",
)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--output", default="output/demo", help="training and evaluation folder")
    p.add_argument("--full", action="store_true", help="train from scratch, without weights")
    p.add_argument("--bootstrap", type=int, default=200, help="resamples for the 95%% CIs")
    p.add_argument(
        "--profile",
        type=int,
        default=0,
        metavar="N",
        help="only profile N training iterations of the demo config (CPU s per component)",
    )
    p.add_argument("opts", nargs=argparse.REMAINDER, help="KEY VALUE training config overrides")
    return p.parse_args(argv)


def main(argv=None):
    from cxr.apps.demo import DemoSettings, profile_training, run_demo

    args = parse_args(argv)
    s = DemoSettings(output=args.output, bootstrap=args.bootstrap, opts=tuple(args.opts))
    if args.full:
        s.config, s.start_weights = s.start_config, ""
        s.opts = FULL_OPTS + s.opts
    if args.profile:
        import torch

        from cxr.engine import setup_config

        cfg = setup_config(s.config, list(s.opts))
        times = profile_training(cfg, iterations=args.profile)
        print(f"CPU s per iteration ({torch.get_num_threads()} torch threads), {s.config}:")
        print("\n".join(f"  {k:<11}{v:.3f}" for k, v in times.items()))
        return times
    return run_demo(s, started=STARTED)


if __name__ == "__main__":
    sys.exit(0 if main() else 1)

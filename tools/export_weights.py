#!/usr/bin/env python
"""Strip a training checkpoint down to its model weights (EMA weights when present).

    python tools/export_weights.py output/run/model_final.pth weights.pth [--half] [--no-ema]
"""
import argparse

import cxr  # noqa: F401
from cxr.engine.checkpoint import export_model_weights


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("checkpoint", help="training checkpoint (.pth)")
    p.add_argument("output", help="weights file to write")
    p.add_argument("--half", action="store_true", help="store float tensors as float16")
    p.add_argument("--no-ema", action="store_true", help="export the live weights, not the EMA")
    args = p.parse_args(argv)
    cxr.engine.setup_logging(None)  # console
    if args.output == args.checkpoint:
        p.error("output must differ from the input checkpoint")
    meta = export_model_weights(args.checkpoint, args.output, use_ema=not args.no_ema, half=args.half)
    print(f"wrote {args.output}: {meta}")


if __name__ == "__main__":
    main()

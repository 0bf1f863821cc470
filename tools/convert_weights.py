#!/usr/bin/env python
"""Convert pretrained weights of other projects into cxr checkpoints (see docs/pretrained.md).

Examples::

    python tools/convert_weights.py effdet --arch tf_efficientdet_d0 \\
        --input tf_efficientdet_d0_34-f153e0cf.pth --output pretrained/tf_d0_nih.pth --num-classes 8
    python tools/convert_weights.py torchvision --input resnet50-11ad3fa6.pth --output R-50-tv.pth
    python tools/convert_weights.py torchxrayvision --weights densenet121-res224-all \\
        --output pretrained/xrv-densenet121-res224-all.pth
    python tools/convert_weights.py timm --name densenet121 --output densenet121.pth

Each prints what it kept, dropped and re-initialized. Logic lives in :mod:`cxr.checkpoint`.
"""
import argparse
import os

import cxr  # noqa: F401  (registers the models the configs name)
from cxr.checkpoint.commands import add_subcommands

CONFIGS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_subcommands(parser, CONFIGS)
    args = parser.parse_args(argv)
    cxr.engine.setup_logging(None)  # console
    args.func(args)


if __name__ == "__main__":
    main()

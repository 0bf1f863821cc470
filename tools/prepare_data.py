#!/usr/bin/env python
"""Turn registered data sets into prepared copies: every film decoded once (DICOM rescale, VOI LUT
/ window, MONOCHROME1, exactly as training reads it), resized by the long side, stored as 8- or
16-bit PNG files or WebDataset shards, boxes scaled, with a manifest (sha256 per film).

Examples::

    python tools/prepare_data.py --dataset vindr_cxr_all --size 1024 --workers 8
        # -> <data root>/vindr_cxr@1024/, registered as vindr_cxr_{train,val,test,all}@1024
    python tools/prepare_data.py --dataset nih_cls_all --size 256 --format wds --shard-size 2000
        # -> <data root>/nih@256-wds/ (shards per split, samples shuffled across shards)

A rerun after a kill skips finished films and complete shards. Unreadable sources go to
errors.csv; the exit status is 1 when nothing could be written, 2 on bad arguments or a copy
folder prepared with other settings. See docs/prepare.md. Logic: :mod:`cxr.data.prepare`.
"""

import argparse
import logging
import os
import sys

import cxr  # noqa: F401  (registers the datasets)
from cxr.data.prepare import PrepareError, prepare_datasets


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--dataset", nargs="+", required=True, help="registered data set names")
    p.add_argument("--size", type=int, required=True, help="long side of the prepared films (px)")
    p.add_argument("--format", choices=["png", "wds"], default="png")
    p.add_argument("--output", default="", help="copy folder (default <data root>/<folder>@<size>)")
    p.add_argument("--workers", type=int, default=min(4, os.cpu_count() or 1))
    p.add_argument("--bit-depth", type=int, choices=[8, 16], default=8)
    p.add_argument("--shard-size", type=int, default=1000, help="samples per shard (wds)")
    p.add_argument("--seed", type=int, default=0, help="order of the samples across shards")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        copies = prepare_datasets(
            args.dataset, args.size, args.format, output=args.output or None,
            workers=args.workers, bit_depth=args.bit_depth, shard_size=args.shard_size,
            seed=args.seed,
        )  # fmt: skip
    except PrepareError as e:
        print(f"prepare_data: {e}", file=sys.stderr)
        return 2
    for c in copies:
        print(f"{c['folder']}: {c['films']} films ({c['made']} prepared now, {c['errors']} "
              f"unreadable: see errors.csv there)" if c["errors"] else
              f"{c['folder']}: {c['films']} films ({c['made']} prepared now)")  # fmt: skip
    if not any(c["films"] for c in copies):
        print("prepare_data: nothing was written (no readable film)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

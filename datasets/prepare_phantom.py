#!/usr/bin/env python
"""Render the phantom NIH-layout dataset (synthetic films on the real NIH boxes).

Example::

    python datasets/prepare_phantom.py --output datasets/phantom_nih --size 512 --negatives 120

    # classification set: N Data_Entry rows, image labels only (datasets/phantom_nih_cls)
    python datasets/prepare_phantom.py --classification 3000 --size 256

    # N real-size 16-bit DICOM films (3000 x 2500, VinDr layout: datasets/phantom_vindr)
    python datasets/prepare_phantom.py --dicom 40 --transfer-syntax rle

A rerun with the same arguments on a complete folder returns at once (manifest cache).
See :mod:`cxr.data.phantom` for how lesions look, :mod:`cxr.data.phantom_cls` for the
classification set, :mod:`cxr.data.phantom_dicom` for the DICOM films.
"""
import argparse
import logging
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from cxr.data.phantom import generate_phantom_dataset  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--output", default="", help="dataset root (default phantom_nih[_cls])")
    p.add_argument(
        "--classification", type=int, default=0, metavar="N",
        help="render the classification set of N images (Data_Entry labels) instead",
    )  # fmt: skip
    p.add_argument(
        "--dicom", type=int, default=0, metavar="N",
        help="render N real-size 16-bit DICOM films (VinDr layout) instead",
    )  # fmt: skip
    p.add_argument("--film-size", type=int, nargs=2, default=[3000, 2500], metavar=("H", "W"),
                   help="--dicom film height and width in pixels")  # fmt: skip
    p.add_argument("--transfer-syntax", choices=["explicit", "rle"], default="explicit",
                   help="--dicom: uncompressed or RLE Lossless")  # fmt: skip
    p.add_argument("--size", type=int, default=512, help="image side in pixels")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--negatives", type=int, default=0, help="lesion-free 'No Finding' images")
    p.add_argument("--bbox-csv", default=os.path.join(HERE, "nih", "BBox_List_2017.csv.gz"))
    p.add_argument(
        "--data-entry-csv", default=os.path.join(HERE, "nih", "Data_Entry_2017_v2020.csv.gz")
    )
    p.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1))
    p.add_argument("--force", action="store_true", help="re-render even if up to date")
    p.add_argument(
        "--keep-existing", action="store_true",
        help="render only when the folder holds no rendered set; keep one of any size",
    )  # fmt: skip
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.keep_existing and _kept(args):
        return 0
    if args.classification:
        return _classification(args)
    if args.dicom:
        return _dicom(args)
    args.output = args.output or os.path.join(HERE, "phantom_nih")
    m = generate_phantom_dataset(
        args.output,
        args.bbox_csv,
        args.data_entry_csv,
        size=args.size,
        seed=args.seed,
        num_negatives=args.negatives,
        workers=args.workers,
        force=args.force,
    )
    state = "up to date" if m["skipped"] else "rendered"
    print(
        f"phantom: {m['num_images']} images ({m['num_boxes']} boxes, {m['num_negatives']} "
        f"negatives) at {m['size']} px {state} in {args.output} ({m['seconds']:.1f} s)"
    )
    return 0


def _kept(args) -> bool:
    """--keep-existing: report the rendered set already in the output folder, if any."""
    from cxr.data.phantom import MANIFEST, read_manifest
    from cxr.data.phantom_cls import CLS_MANIFEST

    name = "phantom_nih_cls" if args.classification else "phantom_nih"
    out = args.output or os.path.join(HERE, name)
    m = read_manifest(out, CLS_MANIFEST if args.classification else MANIFEST)
    if m is None:
        return False
    print(
        f"{name}: kept the existing {m['num_images']} images at {m['size']} px in {out} "
        f"(--keep-existing; asked {args.size} px; --force re-renders)"
    )
    return True


def _classification(args) -> int:
    from cxr.data.phantom_cls import generate_phantom_classification

    out = args.output or os.path.join(HERE, "phantom_nih_cls")
    m = generate_phantom_classification(
        out, args.bbox_csv, args.data_entry_csv, args.classification,
        size=args.size, seed=args.seed, workers=args.workers, force=args.force,
    )  # fmt: skip
    state = "up to date" if m["skipped"] else "rendered"
    print(
        f"phantom classification: {m['num_images']} images ({m['no_finding']} No Finding) at "
        f"{m['size']} px {state} in {out} ({m['seconds']:.1f} s); positives: {m['positives']}"
    )
    return 0


def _dicom(args) -> int:
    from cxr.data.phantom_dicom import generate_phantom_dicoms

    out = args.output or os.path.join(HERE, "phantom_vindr")
    h, w = args.film_size
    m = generate_phantom_dicoms(
        out, args.bbox_csv, args.dicom, height=h, width=w,
        transfer_syntax=args.transfer_syntax, seed=args.seed, workers=args.workers,
    )  # fmt: skip
    print(f"phantom DICOMs: {m['num_images']} films ({m['num_boxes']} boxes) of {h} x {w}, "
          f"{m['transfer_syntax']}, in {out}")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())

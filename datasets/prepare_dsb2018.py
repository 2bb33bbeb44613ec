#!/usr/bin/env python
"""Convert the DSB2018 nuclei subset to COCO JSON (RLE) in datasets/generated/dsb2018.

The source defaults to ../shared/data/dsb2018 next to the checkout ($SEGCONTRAST_DSB2018_SOURCE
overrides it); the output folder follows $SEGCONTRAST_DATASETS like the other built-in data.

    python datasets/prepare_dsb2018.py                     # ../shared/data/dsb2018 -> default
    python datasets/prepare_dsb2018.py --source ../shared/data/dsb2018 --output out/dsb --force

Writes images/<id>.png (RGB), train.json and val.json; a fixed split for a given --seed.
Running it again does nothing while the source and the parameters are unchanged. See
segcontrast/data/dsb2018.py for the details and datasets/README.md for the layout.
"""

import argparse
import logging
import sys

import segcontrast.engine  # noqa: F401  (makes detectron2 usable; registers the heads)
from segcontrast.data import DatasetValidationError, convert_dsb2018
from segcontrast.datasets.builtin import builtin_root, dsb2018_source


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", default=str(dsb2018_source()),
                        help="folder holding stage1_train (default: %(default)s)")
    parser.add_argument("--output", default=str(builtin_root() / "dsb2018"),
                        help="output folder (default: %(default)s)")
    parser.add_argument("--val-fraction", type=float, default=0.2,
                        help="share of the images in val (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the split")
    parser.add_argument("--force", action="store_true", help="convert even if up to date")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        paths = convert_dsb2018(args.source, args.output, val_fraction=args.val_fraction,
                                seed=args.seed, force=args.force)
    except (DatasetValidationError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"prepare_dsb2018: {paths['train']} and {paths['val']} "
          f"(images under {paths['image_root']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())

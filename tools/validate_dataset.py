#!/usr/bin/env python
"""Check a COCO instances file and its images, and print every problem found.

    python tools/validate_dataset.py annotations/train.json images/
    python tools/validate_dataset.py annotations/train.json images/ --all

Exit codes: 0 the dataset can be used (dropped items, if any, are listed); 2 a fatal problem.
The rules and their codes are listed in datasets/README.md.
"""

import argparse
import sys
from collections.abc import Sequence

import segcontrast.engine  # noqa: F401  (makes detectron2 usable; registers the heads)
from segcontrast.utils.known_warnings import ignore_known_warnings

ignore_known_warnings()  # before the imports below: some of them warn while importing

from segcontrast.data import validate_coco_file  # noqa: E402


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("json_file", metavar="JSON", help="COCO instances annotation file")
    parser.add_argument("image_root", metavar="IMAGE_ROOT",
                        help="folder that the images' file_names are relative to")
    parser.add_argument("--all", action="store_true",
                        help="list every problem (default: the first 20, fatal ones first)")
    parser.add_argument("--allow-outside-root", action="store_true",
                        help="accept file_names that leave IMAGE_ROOT (absolute or with '..')")
    args = parser.parse_args(argv)
    report = validate_coco_file(args.json_file, args.image_root,
                                allow_outside_root=args.allow_outside_root)
    print(report.format_summary(max_lines=len(report.problems) if args.all else 20))
    if not report.ok:
        print(f"error: {args.json_file}: {len(report.fatal)} fatal problem(s); the dataset "
              "cannot be used until they are fixed", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    from segcontrast.engine.logging_setup import setup_segcontrast_logging

    # Console only: the report is printed; the log adds which Detectron2 is in use.
    setup_segcontrast_logging()
    sys.exit(main())

"""``segcontrast validate``: check a COCO instances file and its images, print every problem.

    segcontrast validate annotations/train.json images/
    segcontrast validate annotations/train.json images/ --all

Exit codes: 0 the dataset can be used (dropped items, if any, are listed); 2 a fatal problem.
The rules and their codes are listed in datasets/README.md.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

__all__ = ["build_argument_parser", "main"]


def build_argument_parser(prog: str = "segcontrast validate") -> argparse.ArgumentParser:
    """The command line of ``segcontrast validate``."""
    parser = argparse.ArgumentParser(
        prog=prog, description="Check a COCO instances file and its images, and print every "
        "problem found (the rules: datasets/README.md).")
    parser.add_argument("json_file", metavar="JSON", help="COCO instances annotation file")
    parser.add_argument("image_root", metavar="IMAGE_ROOT",
                        help="folder that the images' file_names are relative to")
    parser.add_argument("--all", action="store_true",
                        help="list every problem (default: the first 20, fatal ones first)")
    parser.add_argument("--allow-outside-root", action="store_true",
                        help="accept file_names that leave IMAGE_ROOT (absolute or with '..')")
    return parser


def main(argv: Sequence[str] | None = None, prog: str = "segcontrast validate") -> int:
    """Run ``segcontrast validate``.

    Args:
        argv: the arguments (default: ``sys.argv[1:]``).
        prog: the program name shown in usage messages.

    Returns:
        0 when the dataset can be used, 2 when a problem is fatal.
    """
    args = build_argument_parser(prog).parse_args(argv)
    from ..data.coco_loader import validate_coco_file

    report = validate_coco_file(args.json_file, args.image_root,
                                allow_outside_root=args.allow_outside_root)
    print(report.format_summary(max_lines=len(report.problems) if args.all else 20))
    if not report.ok:
        print(f"error: {args.json_file}: {len(report.fatal)} fatal problem(s); the dataset "
              "cannot be used until they are fixed", file=sys.stderr)
        return 2
    return 0

#!/usr/bin/env python
"""Check a COCO instances file and its images: ``segcontrast validate`` (see its --help).

    python tools/validate_dataset.py annotations/train.json images/ [--all]

Exit codes: 0 the dataset can be used (dropped items, if any, are listed); 2 a fatal problem.
"""

import sys

from segcontrast.cli import main

if __name__ == "__main__":
    sys.exit(main(["validate", *sys.argv[1:]]))

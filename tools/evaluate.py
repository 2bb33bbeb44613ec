#!/usr/bin/env python
"""Score a COCO results file from any framework: ``segcontrast evaluate`` (see its --help).

    python tools/evaluate.py --gt annotations/val.json --results coco_instances_results.json \
        --output eval/ [--images images/] [--semantic-dir labels/] [--compare other.json] \
        [TEST.SEGCONTRAST.IOU_THRESHOLD 0.5 ...]

Exit codes: 0 scored (the folder holds metrics.json, per_image.csv, plots and report.html);
2 bad input, with one message naming the file and every offending result; 130 interrupted.
"""

import sys

if __name__ == "__main__":
    try:
        from segcontrast.cli.evaluate import main
    except KeyboardInterrupt:  # Ctrl-C during the imports: one line, not a traceback
        print("interrupted: nothing written", file=sys.stderr)
        sys.exit(130)
    sys.exit(main(prog="tools/evaluate.py"))

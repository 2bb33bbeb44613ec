#!/usr/bin/env python
"""Score a COCO results file from any framework: semantic vs instance, COCO mask AP, report.html.

    python tools/evaluate.py --gt annotations/val.json --results coco_instances_results.json \
        --output eval/ [--images images/] [--semantic-dir labels/] [--compare other.json] \
        [TEST.SEGCONTRAST.IOU_THRESHOLD 0.5 ...]

Exit codes: 0 scored (the folder holds metrics.json, per_image.csv, plots and report.html);
2 bad input, with one message naming the file and every offending result; 130 interrupted
(Ctrl-C), with one line: nothing written, a previous evaluation in the folder unchanged.
"""

import sys

try:  # Ctrl-C during the imports (seconds): one line, not a traceback
    import segcontrast  # noqa: F401  (makes detectron2 usable)
    from segcontrast.utils.known_warnings import ignore_known_warnings

    ignore_known_warnings()  # before the imports below: some of them warn while importing

    from segcontrast.engine.evaluate_files import main
except KeyboardInterrupt:
    print("interrupted: nothing written", file=sys.stderr)
    sys.exit(130)

if __name__ == "__main__":
    sys.exit(main())

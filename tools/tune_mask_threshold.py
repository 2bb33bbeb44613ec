#!/usr/bin/env python
"""Score one model's masks at many mask thresholds: ``segcontrast tune-threshold`` (--help).

Exit codes: 0 written; 2 bad input; 130 interrupted.
"""

import sys

if __name__ == "__main__":
    try:  # Ctrl-C while torch and Detectron2 load (seconds): one line, not a traceback
        from segcontrast.engine.tune_cli import main
    except KeyboardInterrupt:
        print("interrupted before any work; nothing was written", file=sys.stderr)
        sys.exit(130)
    sys.exit(main(prog="tools/tune_mask_threshold.py"))

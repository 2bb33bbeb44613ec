#!/usr/bin/env python
"""Predict with trained weights on image files: ``segcontrast predict`` (see its --help).

    python tools/predict.py --config configs/shapes/mask_rcnn_focal.yaml
        --weights output/shapes/focal/model_final.pth --input "images/*.png" --output out/

Exit codes: 0 predictions written; 2 bad input; 130 interrupted.
"""

import sys

if __name__ == "__main__":
    try:  # Ctrl-C while torch and Detectron2 load (seconds): one line, not a traceback
        from segcontrast.engine.predict_cli import main
    except KeyboardInterrupt:
        print("interrupted before any work; nothing was written", file=sys.stderr)
        sys.exit(130)
    sys.exit(main(prog="tools/predict.py"))

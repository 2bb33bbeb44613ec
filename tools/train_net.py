#!/usr/bin/env python
"""Train or evaluate Mask R-CNN with SegContrast's mask heads and contrast evaluator.

    python tools/train_net.py --config configs/shapes/mask_rcnn_focal.yaml
    python tools/train_net.py --config C --eval-only MODEL.WEIGHTS output/x/model_final.pth
    python tools/train_net.py --config C --num-gpus 2          # 2 GPUs, or 2 CPU processes

See `--help` and the README for datasets, resuming and several machines.
"""

import sys

try:  # Ctrl-C during the imports (seconds): one line, not a traceback
    import segcontrast.engine  # noqa: F401  (makes detectron2 usable; registers the heads)
    from segcontrast.utils.known_warnings import ignore_known_warnings

    ignore_known_warnings()  # before the imports below: some of them warn while importing

    from segcontrast.engine.train_cli import main
except KeyboardInterrupt:
    print("interrupted: nothing started", file=sys.stderr)
    sys.exit(130)

if __name__ == "__main__":
    sys.exit(main())

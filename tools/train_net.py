#!/usr/bin/env python
"""Train or evaluate Mask R-CNN with SegContrast's mask heads: ``segcontrast train`` (--help).

    python tools/train_net.py --config configs/shapes/mask_rcnn_focal.yaml
    python tools/train_net.py --config C --eval-only MODEL.WEIGHTS output/x/model_final.pth
    python tools/train_net.py --config C --num-gpus 2          # 2 GPUs, or 2 CPU processes

See `--help` and the README for datasets, resuming and several machines.
"""

import sys

if __name__ == "__main__":
    try:  # Ctrl-C while torch and Detectron2 load (seconds): one line, not a traceback
        from segcontrast.engine.train_cli import main
    except KeyboardInterrupt:
        print("interrupted before any work; nothing was written", file=sys.stderr)
        sys.exit(130)
    sys.exit(main(prog="tools/train_net.py"))

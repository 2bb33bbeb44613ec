#!/usr/bin/env python
"""Predict with trained weights on image files: overlays, COCO results JSON, label PNGs.

python tools/predict.py --config configs/shapes/mask_rcnn_focal.yaml \
        --weights output/shapes/focal/model_final.pth --input "images/*.png" \
        --output out/ --semantic-png
"""

import argparse
import sys

import segcontrast  # noqa: F401  (makes detectron2 usable; registers the mask heads)
from segcontrast.config import load_config
from segcontrast.data import register_builtin_datasets
from segcontrast.engine.predictor import Predictor, expand_image_inputs, predict_images
from segcontrast.engine.train_cli import USER_ERRORS, UserInputError


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config-file", "--config", dest="config_file", required=True)
    parser.add_argument("--weights", required=True, help="trained weights (.pth)")
    parser.add_argument("--input", required=True, help="an image, a folder, or a glob pattern")
    parser.add_argument("--output", required=True, help="folder for overlays and predictions.json")
    parser.add_argument("--semantic-png", action="store_true", help="also write label PNGs")
    parser.add_argument("--confidence", type=float, default=0.5, help="score shown in overlays")
    parser.add_argument("--limit", type=int, default=0, help="at most this many images (0: all)")
    parser.add_argument("--metadata", default=None,
                        help="registered dataset whose class names to use "
                        "(default: DATASETS.TEST[0])")
    parser.add_argument("--allow-unsafe-pickle", action="store_true")
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="KEY VALUE config overrides")
    args = parser.parse_args()
    try:
        cfg = load_config(args.config_file, args.opts)
        register_builtin_datasets()
        paths = expand_image_inputs(args.input)
        if args.limit > 0:
            paths = paths[: args.limit]
        predictor = Predictor(cfg, args.weights, allow_unsafe_pickle=args.allow_unsafe_pickle)
    except (*USER_ERRORS, UserInputError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    metadata = args.metadata or (cfg.DATASETS.TEST[0] if cfg.DATASETS.TEST else None)
    summary = predict_images(
        predictor,
        paths,
        args.output,
        metadata_name=metadata,
        semantic_png=args.semantic_png,
        confidence=args.confidence,
        mask_threshold=cfg.TEST.SEGCONTRAST.MASK_THRESHOLD,
        score_threshold=cfg.TEST.SEGCONTRAST.SCORE_THRESHOLD,
    )
    if not summary.predicted:
        print(f"error: --input {args.input}: none of the {len(paths)} files is a readable image",
              file=sys.stderr)
        return 2
    skipped = f", {len(summary.skipped)} unreadable files skipped" if summary.skipped else ""
    print(f"predict: {summary.predicted} images -> {args.output} ({summary.json_path}){skipped}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

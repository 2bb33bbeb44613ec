#!/usr/bin/env python
"""Predict with trained weights on image files: overlays, COCO results JSON, label PNGs.

    python tools/predict.py --config configs/shapes/mask_rcnn_focal.yaml \
        --weights output/shapes/focal/model_final.pth --input "images/*.png" \
        --output out/ --semantic-png

Class names and category ids come from the weights (a training run stores them); a dataset
given with --dataset NAME=JSON:IMAGE_ROOT (or a registered one with --metadata NAME) overrides
them. Files that are not readable images are skipped with a warning naming each, and counted.

Exit codes: 0 predictions written; 2 bad input (config, weights, classes, output folder, or
not a single readable image), reported in one line without a traceback.
"""

import argparse
import sys
from collections.abc import Sequence

import segcontrast  # noqa: F401  (makes detectron2 usable; registers the mask heads)
from segcontrast.utils.known_warnings import ignore_known_warnings

ignore_known_warnings()  # before the imports below: some of them warn while importing

from segcontrast.config import load_config  # noqa: E402
from segcontrast.data import (  # noqa: E402
    parse_dataset_arg,
    register_builtin_datasets,
    register_coco_dataset,
    register_datasets_from_config,
)
from segcontrast.engine.logging_setup import (  # noqa: E402
    segcontrast_logging,
    setup_segcontrast_logging,
)
from segcontrast.engine.predictor import (  # noqa: E402
    Predictor,
    expand_image_inputs,
    predict_images,
)
from segcontrast.engine.train_cli import USER_ERRORS, UserInputError  # noqa: E402
from segcontrast.utils.output_dir import check_output_dir_usable  # noqa: E402


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config-file", "--config", dest="config_file", required=True)
    parser.add_argument("--weights", required=True, help="trained weights (.pth)")
    parser.add_argument("--input", required=True, help="an image, a folder, or a glob pattern")
    parser.add_argument("--output", required=True, help="folder for overlays and predictions.json")
    parser.add_argument("--semantic-png", action="store_true", help="also write label PNGs")
    parser.add_argument("--confidence", type=float, default=0.5, help="score shown in overlays")
    parser.add_argument("--limit", type=int, default=0, help="at most this many images (0: all)")
    parser.add_argument("--dataset", action="append", default=[], metavar="NAME=JSON:IMAGE_ROOT",
                        help="register a COCO-format dataset (repeatable); the first one's class "
                        "names and category ids replace those stored in the weights")
    parser.add_argument("--metadata", default=None, metavar="NAME",
                        help="a registered dataset whose class names and category ids replace "
                        "those stored in the weights")
    parser.add_argument("--allow-outside-root", action="store_true",
                        help="let --dataset file_names point outside their image root")
    parser.add_argument("--allow-unsafe-pickle", action="store_true")
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="KEY VALUE config overrides")
    return parser


def _classes_source(args: argparse.Namespace) -> tuple[str | None, str]:
    """The dataset named on the command line for the class names, and the flag that named it."""
    if args.metadata:
        return args.metadata, "--metadata"
    if args.dataset:
        return parse_dataset_arg(args.dataset[0])[0], "--dataset"
    return None, ""


def _run(args: argparse.Namespace) -> int:
    try:
        check_output_dir_usable(args.output, "--output")
        setup_segcontrast_logging(args.output)
        cfg = load_config(args.config_file, args.opts)
        register_builtin_datasets()
        register_datasets_from_config(cfg, allow_outside_root=args.allow_outside_root)
        for spec in args.dataset:
            name, json_file, image_root = parse_dataset_arg(spec)
            register_coco_dataset(name, json_file, image_root,
                                  allow_outside_root=args.allow_outside_root)
        paths = expand_image_inputs(args.input)
        if args.limit > 0:
            paths = paths[: args.limit]
        classes_from, flag = _classes_source(args)
        predictor = Predictor(cfg, args.weights, allow_unsafe_pickle=args.allow_unsafe_pickle,
                              classes_from=classes_from, classes_flag=flag)
    except (*USER_ERRORS, UserInputError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    summary = predict_images(
        predictor,
        paths,
        args.output,
        semantic_png=args.semantic_png,
        confidence=args.confidence,
        mask_threshold=cfg.TEST.SEGCONTRAST.MASK_THRESHOLD,
        score_threshold=cfg.TEST.SEGCONTRAST.SCORE_THRESHOLD,
    )
    if not summary.predicted:
        print(f"error: --input {args.input}: none of the {len(paths)} files is a readable image "
              "(each is named above); nothing was written", file=sys.stderr)
        return 2
    skipped = len(summary.skipped)
    print(f"predict: {summary.predicted} of {len(paths)} files predicted, {skipped} skipped "
          f"(not readable images); {summary.num_results} predictions in {summary.json_path}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    with segcontrast_logging():
        return _run(args)


if __name__ == "__main__":
    sys.exit(main())

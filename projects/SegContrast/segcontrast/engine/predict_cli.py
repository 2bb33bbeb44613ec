"""``segcontrast predict``: trained weights on image files: overlays, COCO results, label PNGs.

    segcontrast predict --config configs/shapes/mask_rcnn_focal.yaml \
        --weights output/shapes/focal/model_final.pth --input "images/*.png" \
        --output out/ --semantic-png

Class names and category ids come from the weights (a training run stores them); a dataset
given with --dataset NAME=JSON:IMAGE_ROOT (or a registered one with --metadata NAME) overrides
them. Files that are not readable images are skipped with a warning naming each, and counted.

Each input gets its own output names, from its whole file name: a.jpg -> a.jpg.overlay.png
(longest side at most --overlay-size, 1600 pixels by default) and a.jpg.semantic.png; the
run lists its files in predict_outputs.json. An --output folder that holds an input file, or a
file of an output's name that no earlier run there wrote, is refused before any work.

Exit codes: 0 predictions written; 2 bad input (config, weights, classes, output folder, or
not a single readable image), reported in one line without a traceback; 130 interrupted
(Ctrl-C): one line, and every file written so far is complete.
"""

import argparse
import os
import sys
from collections.abc import Sequence

from ..config import load_config
from ..datasets import (
    parse_dataset_arg,
    register_builtin_datasets,
    register_coco_dataset,
    register_datasets_from_config,
)
from ..utils.known_warnings import ignore_known_warnings
from ..utils.output_dir import check_output_dir_usable
from .logging_setup import segcontrast_logging, setup_segcontrast_logging
from .predict_outputs import (
    MANIFEST_NAME,
    PREDICTIONS_NAME,
    PredictOutputError,
    plan_outputs,
)
from .prediction_overlays import DEFAULT_OVERLAY_SIZE
from .predictor import Predictor, expand_image_inputs, predict_images
from .train_cli import USER_ERRORS, UserInputError


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of pixels >= 1, got {text!r}")
    return value


def build_parser(prog: str = "segcontrast predict") -> argparse.ArgumentParser:
    """The command line of ``segcontrast predict``."""
    parser = argparse.ArgumentParser(prog=prog, description=__doc__.splitlines()[0])
    parser.add_argument("--config-file", "--config", dest="config_file", required=True)
    parser.add_argument("--weights", required=True, help="trained weights (.pth)")
    parser.add_argument("--input", required=True, help="an image, a folder, or a glob pattern")
    parser.add_argument("--output", required=True, help="folder for overlays and predictions.json")
    parser.add_argument("--semantic-png", action="store_true",
                        help="also write label PNGs (<input file name>.semantic.png, full size)")
    sizes = parser.add_mutually_exclusive_group()
    sizes.add_argument("--overlay-size", type=_positive_int, default=DEFAULT_OVERLAY_SIZE,
                       metavar="PIXELS", help="longest side of the overlays at most (default "
                       f"{DEFAULT_OVERLAY_SIZE}; smaller images keep their size)")
    sizes.add_argument("--full-size-overlays", action="store_true",
                       help="draw overlays at the input's size (memory grows with the image)")
    sizes.add_argument("--no-overlays", action="store_true", help="draw no overlays")
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
    overlays = not args.no_overlays
    try:
        check_output_dir_usable(args.output, "--output")
        cfg = load_config(args.config_file, args.opts)
        paths = expand_image_inputs(args.input)
        if args.limit > 0:
            paths = paths[: args.limit]
        # Before anything is written into the folder (log.txt included).
        plan = plan_outputs(paths, args.output, overlays=overlays,
                            semantic_png=args.semantic_png, shown=args.output)
        setup_segcontrast_logging(args.output)
        register_builtin_datasets()
        register_datasets_from_config(cfg, allow_outside_root=args.allow_outside_root)
        for spec in args.dataset:
            name, json_file, image_root = parse_dataset_arg(spec)
            register_coco_dataset(name, json_file, image_root,
                                  allow_outside_root=args.allow_outside_root)
        classes_from, flag = _classes_source(args)
        predictor = Predictor(cfg, args.weights, allow_unsafe_pickle=args.allow_unsafe_pickle,
                              classes_from=classes_from, classes_flag=flag)
        # The folder may have changed while the model loaded.
        plan = plan_outputs(paths, args.output, overlays=overlays,
                            semantic_png=args.semantic_png, shown=args.output)
    except (*USER_ERRORS, UserInputError, PredictOutputError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    try:
        summary = predict_images(
            predictor,
            paths,
            args.output,
            semantic_png=args.semantic_png,
            confidence=args.confidence,
            mask_threshold=cfg.TEST.SEGCONTRAST.MASK_THRESHOLD,
            score_threshold=cfg.TEST.SEGCONTRAST.SCORE_THRESHOLD,
            overlays=overlays,
            overlay_size=None if args.full_size_overlays else args.overlay_size,
            plan=plan,
        )
    except KeyboardInterrupt:
        done = sum(1 for name in plan.written if os.path.isfile(plan.path(name)))
        print(f"predict: interrupted; the {done} file(s) it wrote are complete and listed in "
              f"{plan.path(MANIFEST_NAME)}; {PREDICTIONS_NAME} is written only at the end: "
              "rerun into the same folder to finish", file=sys.stderr)
        return 130
    if not summary.predicted:
        print(f"error: --input {args.input}: none of the {len(paths)} files is a readable image "
              "(each is named above); no predictions were written", file=sys.stderr)
        return 2
    skipped = len(summary.skipped)
    print(f"predict: {summary.predicted} of {len(paths)} files predicted, {skipped} skipped "
          f"(not readable images); {summary.num_results} predictions in {summary.json_path}; "
          f"every file written is listed in {plan.path(MANIFEST_NAME)}")
    return 0


def main(argv: Sequence[str] | None = None, prog: str = "segcontrast predict") -> int:
    """Run ``segcontrast predict``; returns the exit code (0; 2 bad input; 130 interrupted)."""
    ignore_known_warnings()
    args = build_parser(prog).parse_args(argv)
    try:
        with segcontrast_logging():
            return _run(args)
    except KeyboardInterrupt:  # while the config, datasets or weights were read
        print("predict: interrupted before any prediction was written", file=sys.stderr)
        return 130


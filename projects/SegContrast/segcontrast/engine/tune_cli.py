"""``segcontrast tune-threshold``: one model's masks scored at many mask thresholds.

Works with Mask R-CNN and Panoptic FPN models (anything with instance masks).

    segcontrast tune-threshold --config configs/shapes/mask_rcnn_focal.yaml \
        --weights output/shapes/focal/model_final.pth --output output/shapes/focal/sweep

Runs the model once per image, pastes its soft masks at each threshold (default 0.2 to 0.8),
scores each with the contrast evaluator, prints a table, and writes threshold_sweep.json, .csv
and .png to --output. Use the best one with `TEST.SEGCONTRAST.MASK_THRESHOLD <t>`.

Exit codes: 0 done; 2 bad input (config, weights, dataset, output folder), in one line without a
traceback; 130 interrupted (Ctrl-C): one line, and the sweep's files are written only at its end.
"""

import argparse
import sys
from collections.abc import Sequence

from detectron2.data import build_detection_test_loader

from ..datasets import SegContrastDatasetMapper
from ..modeling.postprocessing import has_instance_masks
from ..utils.known_warnings import ignore_known_warnings
from ..utils.output_dir import check_output_dir_usable
from .checkpoint import load_weights_for_eval
from .class_metadata import check_weights_match_dataset
from .logging_setup import segcontrast_logging, setup_segcontrast_logging
from .threshold_sweep import (
    DEFAULT_THRESHOLDS,
    sweep_mask_thresholds,
    write_sweep,
)
from .train_cli import USER_ERRORS, UserInputError, setup_cfg
from .trainer import SegContrastTrainer


def _thresholds(text: str) -> list[float]:
    try:
        return [float(t) for t in text.split(",") if t.strip()]
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers: {err}") from err


def build_parser(prog: str = "segcontrast tune-threshold") -> argparse.ArgumentParser:
    """The command line of ``segcontrast tune-threshold``."""
    parser = argparse.ArgumentParser(prog=prog, description=__doc__.splitlines()[0])
    parser.add_argument("--config-file", "--config", dest="config_file", required=True)
    parser.add_argument("--weights", required=True, help="trained weights (.pth)")
    parser.add_argument("--output", required=True, help="folder for the sweep's files")
    parser.add_argument("--thresholds", type=_thresholds,
                        default=list(DEFAULT_THRESHOLDS), help="comma-separated, in (0, 1)")
    parser.add_argument("--metric", default="segm/AP",
                        help="GROUP/KEY of the evaluator's results that picks the best threshold "
                        "(e.g. semantic/mIoU, instance/mIoU)")
    parser.add_argument("--dataset", action="append", default=[], metavar="NAME=JSON:IMAGE_ROOT",
                        help="register a COCO-format dataset (repeatable)")
    parser.add_argument("--allow-outside-root", action="store_true")
    parser.add_argument("--allow-unsafe-pickle", action="store_true")
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="KEY VALUE config overrides")
    return parser


def _run(args: argparse.Namespace) -> int:
    setup_args = argparse.Namespace(
        config_file=args.config_file, opts=[*args.opts, "MODEL.WEIGHTS", args.weights],
        eval_only=True, dataset=args.dataset, allow_outside_root=args.allow_outside_root,
    )
    try:
        check_output_dir_usable(args.output, "--output")
        setup_segcontrast_logging(args.output)
        cfg = setup_cfg(setup_args)
        if not cfg.DATASETS.TEST:
            raise UserInputError("DATASETS.TEST is empty: nothing to sweep on")
        model = SegContrastTrainer.build_model(cfg)
        if not has_instance_masks(model):
            raise UserInputError(
                f"--config {args.config_file}: the model ({cfg.MODEL.META_ARCHITECTURE}, "
                f"MODEL.MASK_ON {cfg.MODEL.MASK_ON}) predicts no instance masks, so there is no "
                "mask threshold to tune; a semantic model's labels are the argmax of its logits"
            )
        classes = load_weights_for_eval(model, args.weights,
                                        allow_unsafe_pickle=args.allow_unsafe_pickle,
                                        num_classes=cfg.MODEL.ROI_HEADS.NUM_CLASSES)
        check_weights_match_dataset(classes, cfg.DATASETS.TEST[0])
    except (*USER_ERRORS, UserInputError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    sc = cfg.TEST.SEGCONTRAST
    dataset = cfg.DATASETS.TEST[0]
    loader = build_detection_test_loader(cfg, dataset, mapper=SegContrastDatasetMapper(cfg, False))
    try:
        result = sweep_mask_thresholds(
            model, loader, dataset, args.thresholds,
            metric=args.metric, iou_threshold=sc.IOU_THRESHOLD,
            score_threshold=sc.SCORE_THRESHOLD, boundary_iou=sc.BOUNDARY_IOU,
            boundary_dilation_ratio=sc.BOUNDARY_DILATION_RATIO,
        )
    except KeyboardInterrupt:
        print("tune_mask_threshold: interrupted during the sweep; its files are written only "
              "at the end, so none was written", file=sys.stderr)
        return 130
    try:
        paths = write_sweep(result, args.output)
    except KeyboardInterrupt:
        print(f"tune_mask_threshold: interrupted while writing the sweep's files into "
              f"{args.output}; each file there is complete (written atomically), but not all of "
              "them may be this run's", file=sys.stderr)
        return 130
    print(f"Mask threshold sweep on {dataset} ({args.metric} picks the best):\n")
    print(result.table())
    print(f"\nbest threshold: {result.best:.2f}; files: {', '.join(paths.values())}")
    return 0


def main(argv: Sequence[str] | None = None, prog: str = "segcontrast tune-threshold") -> int:
    """Run ``segcontrast tune-threshold``; returns the exit code (0, 2 bad input, 130 Ctrl-C)."""
    ignore_known_warnings()
    args = build_parser(prog).parse_args(argv)
    try:
        with segcontrast_logging():
            return _run(args)
    except KeyboardInterrupt:  # while the config, datasets or weights were read
        print("tune_mask_threshold: interrupted before the sweep; nothing was written",
              file=sys.stderr)
        return 130


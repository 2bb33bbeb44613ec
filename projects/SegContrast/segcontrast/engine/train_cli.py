"""What ``tools/train_net.py`` does.

Parse Detectron2-style arguments, build the config, register and validate datasets, then train
or evaluate in one or several processes.

Exit codes: 0 success; 2 a problem with the user's input (config value, dataset, weights,
output folder), reported in a few lines without a traceback; 1 anything else.
"""

from __future__ import annotations

import argparse
import glob
import logging
import os
import sys
from collections.abc import Sequence
from typing import Any

import torch
from detectron2.config import CfgNode
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.engine import default_argument_parser, default_setup
from detectron2.utils import comm
from detectron2.utils.logger import setup_logger

from ..config import ConfigError, load_config
from ..data import (
    DatasetValidationError,
    ensure_builtin_dataset,
    parse_dataset_arg,
    register_builtin_datasets,
    register_coco_dataset,
    segcontrast_dataset_names,
    validate_dataset,
)
from ..utils import use_cuda
from .checkpoint import WeightsError, load_weights_for_eval
from .launch import launch
from .trainer import SegContrastTrainer, TrainingDivergedError

__all__ = [
    "USER_ERRORS",
    "UserInputError",
    "build_argument_parser",
    "main",
    "setup_cfg",
]

logger = logging.getLogger("segcontrast")

USER_ERRORS = (ConfigError, DatasetValidationError, WeightsError)


class UserInputError(ValueError):
    """A problem with the command line, config or output folder; shown without traceback."""


def build_argument_parser() -> argparse.ArgumentParser:
    """Detectron2's ``default_argument_parser()`` plus SegContrast's dataset and safety flags.

    ``--config`` is accepted as a short form of Detectron2's ``--config-file``, and
    ``--dist-url`` defaults to "auto" (a free local port on one machine).
    """
    parser = default_argument_parser(
        epilog=(
            "Examples:\n"
            "  tools/train_net.py --config configs/shapes/mask_rcnn_focal.yaml\n"
            "  tools/train_net.py --config C --eval-only MODEL.WEIGHTS out/model_final.pth\n"
            "  tools/train_net.py --config C --dataset mine_train=ann/train.json:images/ \\\n"
            "      DATASETS.TRAIN \"('mine_train',)\" MODEL.ROI_HEADS.NUM_CLASSES 4\n"
        )
    )
    parser.description = (
        "Train or evaluate Mask R-CNN with SegContrast's mask heads and evaluator."
    )
    parser.add_argument("--config", dest="config_file", metavar="FILE",
                        default=argparse.SUPPRESS, help="the same as --config-file")
    parser.set_defaults(dist_url="auto")
    parser.add_argument("--eval-untrained", action="store_true",
                        help="with --eval-only: deliberately evaluate the randomly initialised "
                        "model (a baseline); MODEL.WEIGHTS must then be empty")
    parser.add_argument("--dataset", action="append", default=[], metavar="NAME=JSON:IMAGE_ROOT",
                        help="register a COCO-format dataset under NAME (repeatable)")
    parser.add_argument("--allow-outside-root", action="store_true",
                        help="let dataset file_names point outside their image root")
    parser.add_argument("--allow-unsafe-pickle", action="store_true",
                        help="load .pkl weights from outside Detectron2's model zoo "
                        "(unpickling can run code: only for files you trust)")
    parser.add_argument("--overwrite", action="store_true",
                        help="start a new run in an OUTPUT_DIR that holds another run's "
                        "checkpoints (they are overwritten)")
    parser.add_argument("--panoptic-out", metavar="DIR", default="",
                        help="write the evaluated panoptic segments (ground truth and "
                        "predictions) as COCO panoptic PNG + JSON under DIR/<dataset> "
                        "(TEST.SEGCONTRAST.PANOPTIC_OUTPUT_DIR)")
    return parser


def _used_dataset_names(cfg: CfgNode, args: argparse.Namespace) -> list[str]:
    names = list(cfg.DATASETS.TEST) + ([] if args.eval_only else list(cfg.DATASETS.TRAIN))
    return list(dict.fromkeys(names))


def _release_detectron2_name(name: str) -> None:
    """Let a user's registration replace Detectron2's own (e.g. its ``coco_2017_train``).

    Detectron2 registers its builtin dataset names on import, pointing at
    ``$DETECTRON2_DATASETS``; a dataset the user names explicitly takes precedence.
    """
    if name in DatasetCatalog.list() and name not in segcontrast_dataset_names():
        logger.info("Dataset %s: replacing Detectron2's builtin registration.", name)
        DatasetCatalog.remove(name)
        MetadataCatalog.remove(name)


def _adopt_detectron2_coco(name: str) -> None:
    """Re-register a Detectron2 builtin COCO dataset so that it is validated like any other."""
    if name in segcontrast_dataset_names() or name not in DatasetCatalog.list():
        return
    meta = MetadataCatalog.get(name)
    json_file, image_root = meta.get("json_file", None), meta.get("image_root", None)
    if json_file and image_root:
        _release_detectron2_name(name)
        register_coco_dataset(name, json_file, image_root)


def _register_datasets(cfg: CfgNode, args: argparse.Namespace) -> None:
    """Register every dataset source, then validate the datasets this run uses.

    Raises:
        UserInputError: one or more datasets have fatal problems; the message holds every
            dataset's summary.
    """
    register_builtin_datasets()
    entries = [(e[0], e[1], e[2]) for e in cfg.DATASETS.COCO]
    entries += [parse_dataset_arg(spec) for spec in args.dataset]
    for name, json_file, image_root in entries:
        _release_detectron2_name(name)
        register_coco_dataset(
            name, json_file, image_root, allow_outside_root=args.allow_outside_root
        )
    failures = []
    for name in _used_dataset_names(cfg, args):
        ensure_builtin_dataset(name)
        _adopt_detectron2_coco(name)
        try:
            validate_dataset(name)
        except DatasetValidationError as err:
            failures.append(str(err))
    if failures:
        raise UserInputError("\n".join(failures))


def _check_num_classes(cfg: CfgNode, args: argparse.Namespace) -> None:
    wrong = []
    for name in _used_dataset_names(cfg, args):
        classes = MetadataCatalog.get(name).get("thing_classes", None)
        if classes is not None and len(classes) != cfg.MODEL.ROI_HEADS.NUM_CLASSES:
            wrong.append(f"{name} has {len(classes)} categories ({', '.join(classes)})")
    if wrong:
        raise UserInputError(
            f"MODEL.ROI_HEADS.NUM_CLASSES is {cfg.MODEL.ROI_HEADS.NUM_CLASSES}, but "
            + "; ".join(wrong)
            + ". Set MODEL.ROI_HEADS.NUM_CLASSES to the dataset's category count."
        )


def _pick_mask_format(cfg: CfgNode, args: argparse.Namespace) -> None:
    if args.eval_only:
        return
    formats = {MetadataCatalog.get(n).get("mask_format", "polygon") for n in cfg.DATASETS.TRAIN}
    if "bitmask" in formats and cfg.INPUT.MASK_FORMAT != "bitmask":
        logger.info("Training data has RLE masks: using INPUT.MASK_FORMAT bitmask.")
        cfg.INPUT.MASK_FORMAT = "bitmask"


def setup_cfg(args: argparse.Namespace) -> CfgNode:
    """Build and freeze the config; register and validate the datasets it names.

    Args:
        args: parsed command line.

    Returns:
        The frozen config.

    Raises:
        ConfigValueError, DatasetValidationError, UserInputError: bad input, to be shown to
            the user without a traceback.
    """
    opts = list(args.opts or [])
    if getattr(args, "panoptic_out", ""):
        opts += ["TEST.SEGCONTRAST.PANOPTIC_OUTPUT_DIR", args.panoptic_out]
    cfg = load_config(args.config_file, opts)
    _register_datasets(cfg, args)
    _check_num_classes(cfg, args)
    _pick_mask_format(cfg, args)
    cfg.freeze()
    return cfg


def check_output_dir(cfg: CfgNode, args: argparse.Namespace) -> None:
    """Refuse to start a fresh run over another run's checkpoints without being told to.

    Raises:
        UserInputError: OUTPUT_DIR holds checkpoints and neither --resume nor --overwrite.
    """
    if args.eval_only or args.resume or args.overwrite:
        return
    existing = sorted(glob.glob(os.path.join(cfg.OUTPUT_DIR, "*.pth")))
    if existing or os.path.exists(os.path.join(cfg.OUTPUT_DIR, "last_checkpoint")):
        shown = ", ".join(os.path.basename(p) for p in existing[:3])
        raise UserInputError(
            f"OUTPUT_DIR {cfg.OUTPUT_DIR} already holds checkpoints ({shown or 'last_checkpoint'}) "
            "of another run. Pass --resume to continue it, --overwrite to start over in it, "
            "or choose another OUTPUT_DIR."
        )


def _limit_cpu_threads() -> None:
    # Several CPU processes on one machine would otherwise each start one thread per core.
    if not use_cuda() and comm.get_local_size() > 1:
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // comm.get_local_size()))


def _worker(args: argparse.Namespace) -> dict[str, Any] | None:
    _limit_cpu_threads()
    cfg = setup_cfg(args)
    default_setup(cfg, args)
    # the project's messages (the evaluator's report among them) to the console and log.txt
    setup_logger(cfg.OUTPUT_DIR, distributed_rank=comm.get_rank(), name="segcontrast",
                 abbrev_name="sc")
    if args.eval_only:
        model = SegContrastTrainer.build_model(cfg)
        if args.eval_untrained:
            logger.warning("Evaluating the randomly initialised model (--eval-untrained).")
        else:
            load_weights_for_eval(
                model, cfg.MODEL.WEIGHTS, allow_unsafe_pickle=args.allow_unsafe_pickle
            )
        return SegContrastTrainer.test(cfg, model)
    trainer = SegContrastTrainer(cfg, allow_unsafe_pickle=args.allow_unsafe_pickle)
    trainer.resume_or_load(resume=args.resume)
    trainer.train()
    return getattr(trainer, "_last_eval_results", None)


def _worker_with_exit_codes(args: argparse.Namespace) -> None:
    try:
        _worker(args)
    except (*USER_ERRORS, UserInputError) as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``tools/train_net.py``.

    Args:
        argv: command-line arguments (default: ``sys.argv[1:]``).

    Returns:
        The process exit code.
    """
    args = build_argument_parser().parse_args(argv)
    if args.eval_untrained and (not args.eval_only):
        print("error: --eval-untrained needs --eval-only", file=sys.stderr)
        return 2
    try:
        # Everything that can be wrong with the user's input is checked here, once, before
        # any process starts, so that it is reported in a few lines with exit code 2.
        cfg = setup_cfg(args)
        check_output_dir(cfg, args)
        if args.eval_untrained and cfg.MODEL.WEIGHTS:
            raise UserInputError(
                "--eval-untrained evaluates random weights: leave MODEL.WEIGHTS empty"
            )
    except (*USER_ERRORS, UserInputError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    world = args.num_gpus * args.num_machines
    if world == 1:
        try:
            _worker(args)
        except (*USER_ERRORS, UserInputError) as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
        except TrainingDivergedError as err:
            print(f"error: {err}", file=sys.stderr)
            return 1
        return 0
    try:
        launch(
            _worker_with_exit_codes,
            args.num_gpus,
            num_machines=args.num_machines,
            machine_rank=args.machine_rank,
            dist_url=args.dist_url,
            args=(args,),
        )
    except torch.multiprocessing.ProcessExitedException as err:
        print(f"error: a training process exited with code {err.exit_code}", file=sys.stderr)
        return err.exit_code if err.exit_code == 2 else 1
    return 0

"""What ``tools/train_net.py`` does.

Parse Detectron2-style arguments, build the config, check the output folder and take its lock,
set up logging, register and validate datasets, check the weights, then train or evaluate in
one or several processes. Everything that can be wrong with the user's input is checked once,
in the launching process, before any work starts.

Exit codes: 0 success; 2 a problem with the user's input (config value, dataset, weights,
output folder, a run already using the output folder), reported in a few lines without a
traceback; 130 interrupted (Ctrl-C), with one line: checkpoints and evaluation files are written
atomically, so what is in the output folder is complete; 1 anything else.
"""

from __future__ import annotations

import argparse
import glob
import logging
import os
import sys
import time
from collections.abc import Sequence
from typing import Any

import torch
from detectron2.config import CfgNode
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.engine import default_argument_parser, default_setup
from detectron2.utils import comm

from ..config import (
    ConfigError,
    load_config,
    model_has_instances,
    model_needs_sem_seg,
    num_thing_classes,
)
from ..data import DatasetValidationError
from ..datasets import (
    ensure_builtin_dataset,
    parse_dataset_arg,
    register_builtin_datasets,
    register_coco_dataset,
    segcontrast_dataset_names,
    validate_dataset,
)
from ..device import use_cuda
from ..utils.errors import InputError
from ..utils.interrupts import INTERRUPTED_EXIT_CODE, interrupts_ignored
from ..utils.known_warnings import ignore_known_warnings
from ..utils.output_dir import OutputDirError, OutputDirLock, check_output_dir_usable
from .checkpoint import (
    EMPTY_EVAL_WEIGHTS,
    WeightsError,
    check_weights_file,
    load_weights_for_eval,
    local_weights_file,
)
from .class_metadata import ClassMetadataError, check_weights_match_dataset
from .launch import launch
from .logging_setup import segcontrast_logging, setup_segcontrast_logging
from .trainer import SegContrastTrainer, TrainingDivergedError

__all__ = [
    "USER_ERRORS",
    "UserInputError",
    "build_argument_parser",
    "check_solver_schedule",
    "main",
    "prepare_cfg",
    "setup_cfg",
]

logger = logging.getLogger("segcontrast")

USER_ERRORS = (ConfigError, DatasetValidationError, WeightsError, OutputDirError,
               ClassMetadataError)


class UserInputError(InputError):
    """A problem with the command line, config or output folder; shown without traceback."""


def build_argument_parser(prog: str = "segcontrast train") -> argparse.ArgumentParser:
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
    parser.prog = prog
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
    _check_sem_seg_num_classes(cfg, args)
    if not model_has_instances(cfg):
        return
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


def _check_sem_seg_num_classes(cfg: CfgNode, args: argparse.Namespace) -> None:
    """A semantic head predicts background plus the K thing classes: NUM_CLASSES is K + 1."""
    if not model_needs_sem_seg(cfg):
        return
    labels = cfg.MODEL.SEM_SEG_HEAD.NUM_CLASSES
    wrong = []
    for name in _used_dataset_names(cfg, args):
        classes = MetadataCatalog.get(name).get("thing_classes", None)
        if classes is not None and len(classes) + 1 != labels:
            wrong.append(f"{name} has {len(classes)} categories ({', '.join(classes)}), so "
                         f"{len(classes) + 1} labels with background")
    if wrong:
        raise UserInputError(
            f"MODEL.SEM_SEG_HEAD.NUM_CLASSES is {labels}, but " + "; ".join(wrong)
            + ". Set MODEL.SEM_SEG_HEAD.NUM_CLASSES to the category count + 1 (background first)."
        )


def _pick_mask_format(cfg: CfgNode, args: argparse.Namespace) -> None:
    if args.eval_only:
        return
    formats = {MetadataCatalog.get(n).get("mask_format", "polygon") for n in cfg.DATASETS.TRAIN}
    if "bitmask" in formats and cfg.INPUT.MASK_FORMAT != "bitmask":
        logger.info("Training data has RLE masks: using INPUT.MASK_FORMAT bitmask.")
        cfg.INPUT.MASK_FORMAT = "bitmask"


def check_solver_schedule(cfg: CfgNode, args: argparse.Namespace) -> None:
    """Refuse a learning-rate schedule with a milestone at or after ``SOLVER.MAX_ITER``.

    fvcore refuses a milestone equal to the last iteration with a traceback, and Detectron2
    silently drops later ones (the rate then never drops): both are a config mistake, usually
    a shortened ``SOLVER.MAX_ITER`` on a config made for longer runs.

    Raises:
        UserInputError: naming both keys and their values.
    """
    if args.eval_only or cfg.SOLVER.LR_SCHEDULER_NAME != "WarmupMultiStepLR":
        return
    max_iter, steps = cfg.SOLVER.MAX_ITER, tuple(cfg.SOLVER.STEPS)
    late = [step for step in steps if step >= max_iter]
    if late:
        # A milestone at 80% of the run, when the run has an iteration before its last one.
        suggestion = int(max_iter * 0.8)
        fixes = [f"SOLVER.STEPS \"({suggestion},)\""] if suggestion >= 1 else []
        fixes += ["SOLVER.STEPS \"()\" for no drop", "a larger SOLVER.MAX_ITER"]
        raise UserInputError(
            f"SOLVER.MAX_ITER is {max_iter}, at or below the SOLVER.STEPS milestone(s) "
            f"{', '.join(map(str, late))} (SOLVER.STEPS is {steps}): the learning rate drops at "
            "each milestone, so every milestone must be below SOLVER.MAX_ITER. Set "
            + ("e.g. " if len(fixes) == 3 else "") + ", ".join(fixes[:-1]) + " or " + fixes[-1]
            + "."
        )


def prepare_cfg(cfg: CfgNode, args: argparse.Namespace) -> CfgNode:
    """Check a loaded config, register and validate the datasets it names, and freeze it.

    Args:
        cfg: from :func:`segcontrast.config.load_config`.
        args: parsed command line (``dataset``, ``allow_outside_root``, ``eval_only``).

    Returns:
        The frozen config.

    Raises:
        ConfigValueError, DatasetValidationError, UserInputError: bad input, to be shown to
            the user without a traceback.
    """
    check_solver_schedule(cfg, args)
    _register_datasets(cfg, args)
    _check_num_classes(cfg, args)
    _pick_mask_format(cfg, args)
    cfg.freeze()
    return cfg


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
    return prepare_cfg(load_config(args.config_file, _overrides(args)), args)


def _overrides(args: argparse.Namespace) -> list[str]:
    """The trailing ``KEY VALUE`` pairs, plus the keys that flags stand for."""
    opts = list(args.opts or [])
    if getattr(args, "panoptic_out", ""):
        opts += ["TEST.SEGCONTRAST.PANOPTIC_OUTPUT_DIR", args.panoptic_out]
    return opts


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


def _last_checkpoint_exists(cfg: CfgNode) -> bool:
    return os.path.isfile(os.path.join(cfg.OUTPUT_DIR, "last_checkpoint"))


def check_weights(cfg: CfgNode, args: argparse.Namespace) -> None:
    """Check ``MODEL.WEIGHTS`` before any process starts: present, a checkpoint, downloadable.

    A URL is downloaded here (once, into the cache the processes then read from). Weights that
    a resumed run does not use are not checked.

    Raises:
        WeightsError: none for eval-only, a missing file, a file that is not a PyTorch
            checkpoint, a URL that cannot be downloaded.
    """
    weights = cfg.MODEL.WEIGHTS
    if args.eval_only and not args.eval_untrained and not weights:
        raise WeightsError(EMPTY_EVAL_WEIGHTS)
    if not weights or args.eval_untrained:
        return
    if not args.eval_only and args.resume and _last_checkpoint_exists(cfg):
        return
    check_weights_file(local_weights_file(weights))


def _limit_cpu_threads() -> None:
    # Several CPU processes on one machine would otherwise each start one thread per core.
    if not use_cuda() and comm.get_local_size() > 1:
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // comm.get_local_size()))


def _worker(args: argparse.Namespace, cfg: CfgNode) -> dict[str, Any] | None:
    _limit_cpu_threads()
    default_setup(cfg, args)
    if args.eval_only:
        model = SegContrastTrainer.build_model(cfg)
        if args.eval_untrained:
            logger.warning("Evaluating the randomly initialised model (--eval-untrained).")
        else:
            classes = load_weights_for_eval(
                model, cfg.MODEL.WEIGHTS, allow_unsafe_pickle=args.allow_unsafe_pickle,
                num_classes=num_thing_classes(cfg)[0],
            )
            for name in cfg.DATASETS.TEST:
                check_weights_match_dataset(classes, name)
        return SegContrastTrainer.test(cfg, model)
    trainer = SegContrastTrainer(cfg, allow_unsafe_pickle=args.allow_unsafe_pickle)
    trainer.resume_or_load(resume=args.resume)
    trainer.train()
    return getattr(trainer, "_last_eval_results", None)


def _spawned_worker(args: argparse.Namespace) -> None:
    """One of several processes: set up again (silently), then train or evaluate."""
    with segcontrast_logging():
        try:
            # The launching process has checked, and logged, all of this once already.
            logging.disable(logging.CRITICAL)
            try:
                cfg = setup_cfg(args)
            finally:
                logging.disable(logging.NOTSET)
            setup_segcontrast_logging(cfg.OUTPUT_DIR, announce=False)
            _worker(args, cfg)
        except (*USER_ERRORS, UserInputError) as err:
            print(f"error: {err}", file=sys.stderr)
            sys.exit(2)


def _lock_description(args: argparse.Namespace) -> str:
    mode = "--eval-only" if args.eval_only else "training"
    return f"tools/train_net.py {mode}, started {time.strftime('%Y-%m-%d %H:%M:%S')}"


def _prepare_run(args: argparse.Namespace, lock_holder: list[OutputDirLock]) -> CfgNode:
    """Everything before the work: config, output folder and its lock, logging, datasets."""
    cfg = load_config(args.config_file, _overrides(args))
    check_solver_schedule(cfg, args)
    folder = check_output_dir_usable(cfg.OUTPUT_DIR)
    lock = OutputDirLock(folder, description=_lock_description(args))
    lock.acquire()
    lock_holder.append(lock)
    # Before anything is logged into the folder: another run's log.txt stays as it was.
    check_output_dir(cfg, args)
    setup_segcontrast_logging(cfg.OUTPUT_DIR)
    cfg = prepare_cfg(cfg, args)
    if args.eval_untrained and cfg.MODEL.WEIGHTS:
        raise UserInputError(
            "--eval-untrained evaluates random weights: leave MODEL.WEIGHTS empty"
        )
    check_weights(cfg, args)
    return cfg


def _run(args: argparse.Namespace) -> int:
    locks: list[OutputDirLock] = []
    try:
        try:
            cfg = _prepare_run(args, locks)
        except (*USER_ERRORS, UserInputError) as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
        world = args.num_gpus * args.num_machines
        if world == 1:
            try:
                _worker(args, cfg)
            except (*USER_ERRORS, UserInputError) as err:
                print(f"error: {err}", file=sys.stderr)
                return 2
            except TrainingDivergedError as err:
                print(f"error: {err}", file=sys.stderr)
                return 1
            return 0
        try:
            launch(
                _spawned_worker,
                args.num_gpus,
                num_machines=args.num_machines,
                machine_rank=args.machine_rank,
                dist_url=args.dist_url,
                args=(args,),
            )
        except torch.multiprocessing.ProcessExitedException as err:
            print(f"error: a training process exited with code {err.exit_code}",
                  file=sys.stderr)
            return err.exit_code if err.exit_code == 2 else 1
        return 0
    finally:
        for lock in locks:
            lock.release()


def main(argv: Sequence[str] | None = None, prog: str = "segcontrast train") -> int:
    """Run ``segcontrast train`` (``tools/train_net.py``).

    Args:
        argv: command-line arguments (default: ``sys.argv[1:]``).
        prog: the program name shown in usage messages.

    Returns:
        The process exit code.
    """
    ignore_known_warnings()
    args = build_argument_parser(prog).parse_args(argv)
    if args.eval_untrained and (not args.eval_only):
        print("error: --eval-untrained needs --eval-only", file=sys.stderr)
        return 2
    with segcontrast_logging():
        try:
            return _run(args)
        except KeyboardInterrupt:
            with interrupts_ignored():
                print(_interrupted_message(args), file=sys.stderr)
            return INTERRUPTED_EXIT_CODE


def _interrupted_message(args: argparse.Namespace) -> str:
    if args.eval_only:
        return ("interrupted: evaluation stopped; the evaluation files already in OUTPUT_DIR "
                "are complete (none is half-written)")
    return ("interrupted: training stopped; its checkpoints and evaluation files in OUTPUT_DIR "
            "are complete (none is half-written): --resume continues from the last checkpoint")

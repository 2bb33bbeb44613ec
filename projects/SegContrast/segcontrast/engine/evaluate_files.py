"""What ``tools/evaluate.py`` does: score a COCO results file (any framework's) from files.

The ground truth is a COCO instances file, validated like any dataset (without reading images
unless ``--images`` is given); the results are read and checked once, grouped per image, decoded
one image at a time and handed to :meth:`SegContrastEvaluator.process_predictions`, the per-image
entry point of the training evaluator; ``evaluate()`` is the same too. With ``--compare`` a second
results file is scored the same way and the two are compared with a paired bootstrap over images.

``--output`` is a folder this tool owns (:mod:`segcontrast.utils.output_folder`): it is written
as a hidden sibling and swapped in only after a run that scored successfully, an existing folder
is replaced only when it is empty or an earlier output of this tool holding nothing else, and one
run at a time holds it (a lock next to it).

How many GT images each results file covers is logged and written to ``metrics.json``
(``source.coverage``) and the report; ``--compare`` of two files that cover different images is
refused unless ``--common-images`` restricts both to the images both cover.

Exit codes: 0 success; 2 bad input (one message naming the file and every offending item);
130 interrupted (Ctrl-C): one line, nothing written, a previous ``--output`` unchanged.
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from detectron2.config import CfgNode, get_cfg
from detectron2.data import MetadataCatalog

from ..config import ConfigError, add_segcontrast_config, load_config, validate_segcontrast_config
from ..data import DatasetValidationError
from ..data.coco import (
    dataset_images,
    register_coco_dataset,
    unregister_coco_dataset,
    validate_dataset,
)
from ..evaluation.bootstrap import DEFAULT_SAMPLES
from ..evaluation.compare import compare_states
from ..evaluation.evaluator import SegContrastEvaluator, build_segcontrast_evaluator
from ..evaluation.html_report import AP_RULE, write_html_report
from ..evaluation.report import coverage_is_partial, coverage_sentence
from ..evaluation.results_file import ResultsFile, ResultsFileError, read_results
from ..evaluation.semantic_pngs import SemanticPngs
from ..utils import atomic_write
from ..utils.interrupts import INTERRUPTED_EXIT_CODE, interrupts_ignored
from ..utils.output_dir import OutputDirError
from ..utils.output_folder import OwnedOutputFolder
from .logging_setup import segcontrast_logging, setup_segcontrast_logging
from .score_files import default_workers, score_results

__all__ = ["FileInputError", "GroundTruthFile", "build_argument_parser", "load_ground_truth",
           "main"]

logger = logging.getLogger("segcontrast")

COMPARE_FOLDER = "compare"
TOOL_NAME = "tools/evaluate.py"  # the writer named in --output's manifest
# Validation codes of image files that --images only draws: counted as changed, not fatal.
_IMAGE_FILE_CODES = ("image_missing", "image_empty", "image_not_image", "image_truncated",
                     "image_corrupt", "image_unreadable", "image_size_mismatch")


class FileInputError(ValueError):
    """A problem with the command line or the output folder; shown without traceback."""


def build_argument_parser() -> argparse.ArgumentParser:
    """The command line of ``tools/evaluate.py``."""
    parser = argparse.ArgumentParser(
        prog="tools/evaluate.py",
        description="Score a COCO results file (from any framework) as semantic and instance "
        "segmentation, and explain the gap.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=(
            "Examples:\n"
            "  tools/evaluate.py --gt val.json --results coco_instances_results.json --output ev/\n"
            "  tools/evaluate.py --gt val.json --results a.segm.json --compare b.segm.json "
            "--output ab/\n"
            "  tools/evaluate.py --gt val.json --results r.json --output ev/ "
            "TEST.SEGCONTRAST.IOU_THRESHOLD 0.75\n"
        ),
    )
    parser.add_argument("--gt", required=True, metavar="ANNOTATIONS.json",
                        help="the ground truth: a COCO instances file")
    parser.add_argument("--results", required=True, metavar="RESULTS.json",
                        help="a COCO results list: image_id, category_id (the GT's ids), "
                        "segmentation (RLE or polygons), score, optional bbox")
    parser.add_argument("--output", required=True, metavar="DIR",
                        help="folder for metrics.json, per_image.csv, plots and report.html: "
                        "a new or empty folder, or an earlier output of this tool holding "
                        "nothing else (it is replaced); anything else is refused")
    parser.add_argument("--images", metavar="IMAGE_ROOT",
                        help="the folder the GT's file_names are relative to; only the "
                        "worst-image overlays need it (a missing image is drawn on a grey "
                        "canvas, with a warning), and GT images without height/width take "
                        "them from their files")
    parser.add_argument("--semantic-dir", metavar="DIR",
                        help="label PNGs of a semantic model (<stem>_semantic.png or "
                        "<stem>.png; 0 background, class k as k + 1): scored as 'semantic', "
                        "the painted instances as 'semantic_from_instances'")
    parser.add_argument("--compare", metavar="OTHER_RESULTS.json",
                        help="a second results file: A vs B with paired bootstrap intervals "
                        "(both must cover the same GT images, see --common-images)")
    parser.add_argument("--common-images", action="store_true",
                        help="with --compare: score both files only on the GT images both "
                        "have results for (without it, files covering different images are "
                        "refused)")
    parser.add_argument("--bootstrap", type=int, default=DEFAULT_SAMPLES, metavar="N",
                        help=f"bootstrap resamples of --compare (default {DEFAULT_SAMPLES})")
    parser.add_argument("--seed", type=int, default=0, help="seed of the bootstrap")
    parser.add_argument("--workers", type=int, default=default_workers(),
                        help="processes that score images (default: the CPUs available, at "
                        "most 8; the numbers do not depend on it)")
    parser.add_argument("--match-file-names", action="store_true",
                        help="take each result's image from its file_name (tools/predict.py "
                        "writes one) instead of its image_id")
    parser.add_argument("--config", metavar="FILE",
                        help="a yaml config whose TEST.SEGCONTRAST settings to use")
    parser.add_argument("--panoptic-out", metavar="DIR", default="",
                        help="also write the ground truth and the predictions as COCO panoptic "
                        "PNG + JSON under DIR/<gt file name without .json>/ (TEST.SEGCONTRAST."
                        "PANOPTIC_OUTPUT_DIR)")
    parser.add_argument("--allow-outside-root", action="store_true",
                        help="with --images: let file_names point outside IMAGE_ROOT")
    parser.add_argument("opts", nargs=argparse.REMAINDER,
                        help="TEST.SEGCONTRAST.* KEY VALUE overrides")
    return parser


def _config(args: argparse.Namespace) -> CfgNode:
    opts = list(args.opts or [])
    if args.panoptic_out:
        opts += ["TEST.SEGCONTRAST.PANOPTIC_OUTPUT_DIR", os.path.abspath(args.panoptic_out)]
    keys = opts[0::2]
    others = [k for k in keys if not k.startswith("TEST.SEGCONTRAST.")]
    if others or len(opts) % 2:
        raise ConfigError(
            "overrides must be TEST.SEGCONTRAST.* KEY VALUE pairs (scoring files uses no model "
            f"settings); found {' '.join(others) if others else 'a key without a value'}"
        )
    if args.config:
        return load_config(args.config, opts)
    cfg = get_cfg()
    add_segcontrast_config(cfg)
    try:
        cfg.merge_from_list(opts)
    except (KeyError, ValueError, AssertionError) as err:
        raise ConfigError(f"command-line overrides: {err}") from err
    validate_segcontrast_config(cfg)
    return cfg


def _overlaps(a: str, b: str) -> bool:
    """Whether one of two absolute paths is the other or inside it."""
    return a == b or a.startswith(b.rstrip(os.sep) + os.sep) or b.startswith(
        a.rstrip(os.sep) + os.sep)


def _check_panoptic_out(args: argparse.Namespace, output: str) -> None:
    """Refuse a ``--panoptic-out`` whose folder overlaps ``--output``.

    ``--output`` is replaced as a whole and holds only this tool's files; the panoptic files are
    written straight to their folder while scoring.
    """
    if not args.panoptic_out:
        return
    target = os.path.realpath(os.path.join(
        os.path.abspath(args.panoptic_out),
        os.path.basename(os.path.abspath(args.gt)).removesuffix(".json")))
    if _overlaps(target, output):
        raise FileInputError(
            f"--panoptic-out {args.panoptic_out} writes into {target}, which overlaps --output "
            f"{args.output}: --output is replaced as a whole by each run and holds only what "
            "tools/evaluate.py writes there; choose a --panoptic-out outside it"
        )


@dataclass
class GroundTruthFile:
    """A validated COCO ground-truth file, registered as a dataset.

    Attributes:
        name: the registered dataset name (the file's name).
        json_file: the file, absolute.
        images: image id -> (height, width).
        file_names: image id -> image path (under ``--images``, or next to the JSON).
        id_map: category id -> contiguous class id.
        class_names: names in contiguous order.
        notes: what ``--images`` changed (missing image files, sizes taken from the files),
            for the report.
    """

    name: str
    json_file: str
    images: dict[Any, tuple[int, int]]
    file_names: dict[Any, str]
    id_map: dict[int, int]
    class_names: list[str]
    notes: list[str]


def load_ground_truth(gt_json: str, images: str | None = None, *,
                      allow_outside_root: bool = False) -> GroundTruthFile:
    """Register and validate a ground-truth file (its images are read only when given).

    With ``images`` the files are checked, but only the overlays read them: a missing or
    unreadable file (or one of another size) is a warning and its overlay is drawn on a grey
    canvas; an image entry without ``height``/``width`` takes its file's size.

    Args:
        gt_json: the COCO instances file.
        images: the image root, or None to check the JSON alone (sizes are then the JSON's).
        allow_outside_root: let file_names leave the image root.

    Returns:
        The registered dataset; :func:`unregister_coco_dataset` forgets it.

    Raises:
        DatasetValidationError: every problem of the file.
    """
    gt = os.path.abspath(gt_json)
    name = os.path.basename(gt)
    unregister_coco_dataset(name)  # a registration left by an earlier call in this process
    root = images or os.path.dirname(gt)
    register_coco_dataset(name, gt, root, allow_outside_root=allow_outside_root,
                          check_image_files=bool(images), image_files_optional=True)
    report = validate_dataset(name)
    dicts = dataset_images(name)
    meta = MetadataCatalog.get(name)
    return GroundTruthFile(
        name=name,
        json_file=gt,
        images={d["image_id"]: (int(d["height"]), int(d["width"])) for d in dicts},
        file_names={d["image_id"]: d["file_name"] for d in dicts},
        id_map=dict(meta.thing_dataset_id_to_contiguous_id),
        class_names=list(meta.thing_classes),
        notes=_image_notes(report.changed, images),
    )


def _image_notes(changed: list, images: str | None) -> list[str]:
    """Sentences for the report about what ``--images`` could not give."""
    notes = []
    unread = [p for p in changed if p.code in _IMAGE_FILE_CODES]
    if unread:
        notes.append(f"{len(unread)} image file(s) under --images {images} are missing, "
                     "unreadable or of another size than the GT says (first: "
                     f"{unread[0].format()}): their overlays are drawn on a grey canvas.")
    sized = [p for p in changed if p.code == "image_size_from_file"]
    if sized:
        notes.append(f"{len(sized)} GT image(s) have no height/width in the GT file: taken "
                     f"from their image files under --images {images}.")
    return notes


def _read(path: str, gt: GroundTruthFile, args: argparse.Namespace) -> ResultsFile:
    return read_results(path, gt.images, gt.id_map, match_file_names=args.match_file_names,
                        gt_file_names=gt.file_names)


def _image_ids_shown(ids: set, limit: int = 5) -> str:
    shown = sorted(ids, key=str)[:limit]
    more = f" and {len(ids) - limit} more" if len(ids) > limit else ""
    return ", ".join(map(str, shown)) + more


def _scored_images(args: argparse.Namespace, gt: GroundTruthFile, results_a: ResultsFile,
                   results_b: ResultsFile | None) -> list:
    """The GT images to score: all of them, or with ``--common-images`` those both files cover.

    Raises:
        FileInputError: the two files cover different images and ``--common-images`` is not
            given, or they have no image in common.
    """
    if results_b is None:
        if args.common_images:
            raise FileInputError("--common-images needs --compare (it restricts both results "
                                 "files to the GT images both cover)")
        return list(gt.images)
    covered_a, covered_b = set(results_a.by_image), set(results_b.by_image)
    common = covered_a & covered_b
    if covered_a != covered_b and not args.common_images:
        only_a, only_b = covered_a - covered_b, covered_b - covered_a
        parts = []
        if only_a:
            parts.append(f"{len(only_a)} only in {args.results} (image ids "
                         f"{_image_ids_shown(only_a)})")
        if only_b:
            parts.append(f"{len(only_b)} only in {args.compare} (image ids "
                         f"{_image_ids_shown(only_b)})")
        raise FileInputError(
            f"--results {args.results} has results for {len(covered_a)} of the "
            f"{len(gt.images)} GT images and --compare {args.compare} for {len(covered_b)}; "
            f"{'; '.join(parts)}. Compared as they are, one model's predictions would be paired "
            f"with no predictions on those images. Pass --common-images to compare both on the "
            f"{len(common)} images both cover, or give results files of the same images."
        )
    if not common:
        raise FileInputError(
            f"--common-images: --results {args.results} and --compare {args.compare} have no "
            "GT image in common: nothing to compare"
        )
    return [image_id for image_id in gt.images if image_id in common]


def _coverage(args: argparse.Namespace, results: ResultsFile, gt: GroundTruthFile,
              scored: list) -> dict:
    return {
        "gt_images": len(gt.images),
        "images_with_results": len(results.by_image),
        "images_without_results": len(gt.images) - len(results.by_image),
        "scored_images": len(scored),
        "common_images_only": bool(args.common_images),
    }


def _source(args: argparse.Namespace, results: ResultsFile, gt: GroundTruthFile,
            coverage: dict) -> dict:
    notes = list(results.warnings) + list(gt.notes)
    if args.semantic_dir:
        notes.append("The 'semantic' columns are the semantic model's label PNGs, the "
                     "'semantic_from_instances' columns the results painted as labels.")
    if not args.images:
        notes.append("No --images: the worst-image overlays are drawn on a grey canvas.")
    return {  # the paths as the user gave them
        "results_file": results.path,
        "gt_file": args.gt,
        "semantic_dir": args.semantic_dir,
        "num_results": len(results),
        "images_with_results": len(results.by_image),
        "coverage": coverage,
        "notes": notes,
    }


def _evaluate_one(cfg: CfgNode, gt: GroundTruthFile, results: ResultsFile, scored: list,
                  folder: str, shown: str, args: argparse.Namespace,
                  semantic: SemanticPngs | None) -> tuple[SegContrastEvaluator, dict]:
    for warning in results.warnings:
        logger.warning(warning)
    coverage = _coverage(args, results, gt, scored)
    (logger.warning if coverage_is_partial(coverage) else logger.info)(
        "Coverage of %s: %s", results.path, coverage_sentence(coverage))
    source = _source(args, results, gt, coverage)
    evaluator = build_segcontrast_evaluator(cfg, gt.name, folder, source=source,
                                            shown_output_dir=shown)
    images = {image_id: gt.images[image_id] for image_id in scored}
    score_results(evaluator, results, images, gt.id_map, semantic=semantic,
                  file_names=gt.file_names, workers=args.workers,
                  make_evaluator=lambda: build_segcontrast_evaluator(cfg, gt.name, folder))
    return evaluator, dict(evaluator.evaluate() or {})


def _run(args: argparse.Namespace, cfg: CfgNode, tmp: str, shown: str,
         repaired: str | None = None) -> None:
    """Score into ``tmp`` (published as ``shown`` afterwards); log ``repaired`` first."""
    setup_segcontrast_logging(tmp)
    if repaired:
        logger.warning(repaired)
    gt = load_ground_truth(args.gt, args.images, allow_outside_root=args.allow_outside_root)
    results_a = _read(args.results, gt, args)
    results_b = _read(args.compare, gt, args) if args.compare else None
    scored = _scored_images(args, gt, results_a, results_b)
    semantic = None
    if args.semantic_dir:
        semantic = SemanticPngs(
            args.semantic_dir,
            {i: (gt.file_names[i], *gt.images[i]) for i in scored},
            len(gt.class_names),
        )
    logger.info("Scoring %s (%d results) against %s (%d images).", args.results,
                len(results_a), args.gt, len(gt.images))
    evaluator_a, metrics_a = _evaluate_one(cfg, gt, results_a, scored, tmp, shown, args,
                                           semantic)
    if results_b is not None:
        logger.info("Scoring %s (%d results) to compare.", args.compare, len(results_b))
        evaluator_b, metrics_b = _evaluate_one(
            cfg, gt, results_b, scored, os.path.join(tmp, COMPARE_FOLDER),
            os.path.join(shown, COMPARE_FOLDER), args, semantic)
        comparison = compare_states(
            evaluator_a.state, evaluator_b.state, metrics_a, metrics_b, len(gt.class_names),
            samples=args.bootstrap, seed=args.seed,
            boundary_iou=cfg.TEST.SEGCONTRAST.BOUNDARY_IOU,
        )
        content = comparison.to_dict()
        content["names"] = {"a": args.results, "b": args.compare}
        content["coverage"] = {"gt_images": len(gt.images), "compared_images": len(scored),
                               "common_images_only": bool(args.common_images)}
        text = json.dumps(content, indent=2)
        atomic_write(os.path.join(tmp, "comparison.json"), lambda f: f.write(text), mode="w")
        write_html_report(tmp)
        logger.info("A = %s, B = %s. %s", args.results, args.compare, comparison.sentence)
    logger.info(AP_RULE)


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``tools/evaluate.py``.

    Args:
        argv: command-line arguments (default: ``sys.argv[1:]``).

    Returns:
        The exit code: 0 scored, 2 bad input, 130 interrupted.
    """
    args = build_argument_parser().parse_args(argv)
    # What exists now (torch, Detectron2 and the rest, a million objects) is never garbage: the
    # collector would walk it on every full collection while the files are parsed and scored.
    gc.freeze()
    try:
        with segcontrast_logging():
            return _main(args)
    finally:
        gc.unfreeze()


def _lock_description(args: argparse.Namespace) -> str:
    return f"{TOOL_NAME} --results {args.results}, started {time.strftime('%Y-%m-%d %H:%M:%S')}"


def _interrupted_message(output: OwnedOutputFolder, existed: bool) -> str:
    if output.published:
        return (f"interrupted: after the evaluation was complete; it is in {output.shown}")
    if existed:
        return (f"interrupted: nothing written; the previous evaluation in {output.shown} is "
                "unchanged")
    return f"interrupted: nothing written ({output.shown} was not created)"


def _main(args: argparse.Namespace) -> int:
    output = OwnedOutputFolder(args.output, TOOL_NAME, "--output", _lock_description(args))
    existed = os.path.isdir(output.path)
    name = None
    try:
        if args.bootstrap < 1:
            raise FileInputError(f"--bootstrap {args.bootstrap}: expected at least 1 resample")
        if args.workers < 1:
            raise FileInputError(f"--workers {args.workers}: expected at least 1")
        cfg = _config(args)
        _check_panoptic_out(args, output.path)
        repaired = output.acquire()
        existed = os.path.isdir(output.path)
        tmp = output.stage()
        name = os.path.basename(os.path.abspath(args.gt))
        _run(args, cfg, tmp, output.shown, repaired)
        output.publish()
    except KeyboardInterrupt:
        with interrupts_ignored():
            output.release()
            print(_interrupted_message(output, existed), file=sys.stderr)
        return INTERRUPTED_EXIT_CODE
    except (ConfigError, DatasetValidationError, ResultsFileError, FileInputError,
            OutputDirError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    finally:
        with interrupts_ignored():
            output.release()
            if name is not None:
                unregister_coco_dataset(name)
    print(f"evaluate: {args.results} scored -> {output.shown} (metrics.json, per_image.csv, "
          f"report.html{', comparison.json' if args.compare else ''})")
    return 0

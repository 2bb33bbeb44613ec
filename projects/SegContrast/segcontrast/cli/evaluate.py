"""``segcontrast evaluate``: score a COCO results file (any framework's) from files.

    segcontrast evaluate --gt annotations/val.json --results segm.json --output eval/ \
        [--images images/] [--semantic-dir labels/] [--compare other.json] \
        [TEST.SEGCONTRAST.IOU_THRESHOLD 0.75 ...]

The ground truth is a COCO instances file, validated like any dataset (without reading images
unless ``--images`` is given); the results are read and checked once, grouped per image, decoded
one image at a time and scored by the :class:`~segcontrast.evaluation.Accumulator` (the same
per-image code as the Detectron2 evaluator). With ``--compare`` a second results file is scored
the same way and the two are compared with a paired bootstrap over images. Nothing here
imports torch or Detectron2.

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
import os
import sys
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

from ..utils.errors import InputError
from ..utils.workers import default_workers

if TYPE_CHECKING:  # the modules that do the work are imported once the arguments are read
    from ..evaluation.ground_truth import GroundTruthSet
    from ..evaluation.result import EvaluationResult
    from ..evaluation.results_file import ResultsFile
    from ..evaluation.semantic_pngs import SemanticPngs
    from ..evaluation.settings import EvalSettings
    from ..utils.output_folder import OwnedOutputFolder

__all__ = ["TOOL_NAME", "build_argument_parser", "main"]

COMPARE_FOLDER = "compare"
TOOL_NAME = "tools/evaluate.py"  # the writer named in --output's manifest (both faces)
# Validation codes of image files that --images only draws: counted as changed, not fatal.
_IMAGE_FILE_CODES = ("image_missing", "image_empty", "image_not_image", "image_truncated",
                     "image_corrupt", "image_unreadable", "image_size_mismatch")
# TEST.SEGCONTRAST keys of a training config that scoring files has no use for.
_TRAINING_ONLY_KEYS = ("COCO_EVALUATOR",)


def build_argument_parser(prog: str = "segcontrast evaluate") -> argparse.ArgumentParser:
    """The command line of ``segcontrast evaluate`` (and ``tools/evaluate.py``)."""
    from ..evaluation.metrics.bootstrap import DEFAULT_SAMPLES

    parser = argparse.ArgumentParser(
        prog=prog,
        description="Score a COCO results file (from any framework) as semantic and instance "
        "segmentation, and explain the gap.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=(
            "Examples:\n"
            f"  {prog} --gt val.json --results coco_instances_results.json --output ev/\n"
            f"  {prog} --gt val.json --results a.segm.json --compare b.segm.json --output ab/\n"
            f"  {prog} --gt val.json --results r.json --output ev/ "
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
    parser.add_argument("--overlays", action="store_true",
                        help="draw the worst images' overlays also without --images (on a grey "
                        "canvas); with --images they are always drawn")
    parser.add_argument("--semantic-dir", metavar="DIR",
                        help="label PNGs of a semantic model (<file name>.semantic.png, "
                        "<stem>_semantic.png or <stem>.png; 0 background, class k as k + 1): "
                        "scored as 'semantic', the painted instances as "
                        "'semantic_from_instances'")
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
    matching = parser.add_mutually_exclusive_group()
    matching.add_argument("--match-file-names", action="store_true",
                          help="take each result's image from its file_name (tools/predict.py "
                          "writes one), else from its image_id taken as a file stem (as "
                          "Ultralytics writes it), instead of its image_id")
    matching.add_argument("--match-image-ids", action="store_true",
                          help="take each result's image from its image_id, also where it "
                          "could be a file stem of another image (without either flag, "
                          "results whose image_ids are file stems are matched by file name "
                          "when nothing else fits, and refused when both readings fit)")
    parser.add_argument("--ap-area", choices=("mask", "box"),
                        help="what a prediction's area is for APs/APm/APl: its mask area "
                        "(the default, as Detectron2's COCOEvaluator and MMDetection) or its "
                        "bbox w * h (pycocotools on the file as it is, when the results have "
                        "boxes); sets TEST.SEGCONTRAST.AP_AREA")
    parser.add_argument("--config", metavar="FILE",
                        help="a yaml config (a training config will do) whose "
                        "TEST.SEGCONTRAST settings to use")
    parser.add_argument("--panoptic-out", metavar="DIR", default="",
                        help="also write the ground truth and the predictions as COCO panoptic "
                        "PNG + JSON under DIR/<gt file name without .json>/ (TEST.SEGCONTRAST."
                        "PANOPTIC_OUTPUT_DIR)")
    parser.add_argument("--allow-outside-root", action="store_true",
                        help="with --images: let file_names point outside IMAGE_ROOT")
    parser.add_argument("opts", nargs=argparse.REMAINDER,
                        help="TEST.SEGCONTRAST.* KEY VALUE overrides")
    return parser


class _UsageError(InputError):
    """A problem with the command line or the output folder; shown without traceback."""


def _settings(args: argparse.Namespace) -> EvalSettings:
    from ..evaluation.settings import EvalSettings, read_config_settings

    settings = EvalSettings()
    if args.config:
        node = read_config_settings(args.config)
        node = {k: v for k, v in node.items() if str(k).upper() not in _TRAINING_ONLY_KEYS}
        settings = EvalSettings.from_mapping(node, where=f"{args.config}: TEST.SEGCONTRAST")
    opts = list(args.opts or [])
    if opts and opts[0] == "--":
        opts = opts[1:]
    flags = [o for o in opts if o.startswith("--")]
    if flags:
        raise _UsageError(f"{flags[0]} comes after the KEY VALUE config overrides (after "
                          f"'{opts[0]}'): put flags before the overrides")
    settings = settings.with_overrides(opts)
    if args.ap_area:
        settings = settings.replace(ap_area=args.ap_area)
    return settings


def _overlaps(a: str, b: str) -> bool:
    """Whether one of two absolute paths is the other or inside it."""
    return a == b or a.startswith(b.rstrip(os.sep) + os.sep) or b.startswith(
        a.rstrip(os.sep) + os.sep)


def _panoptic_folder(args: argparse.Namespace, output: str) -> str:
    """``--panoptic-out``'s folder for this GT file, refused where it overlaps ``--output``.

    ``--output`` is replaced as a whole and holds only this tool's files; the panoptic files are
    written straight to their folder while scoring.
    """
    # One folder per GT file; its name loses the ".json": panopticapi finds a JSON's PNG folder
    # by deleting every ".json" in its path.
    target = os.path.join(os.path.abspath(args.panoptic_out),
                          os.path.basename(os.path.abspath(args.gt)).removesuffix(".json"))
    if _overlaps(os.path.realpath(target), output):
        raise _UsageError(
            f"--panoptic-out {args.panoptic_out} writes into {target}, which overlaps --output "
            f"{args.output}: --output is replaced as a whole by each run and holds only what "
            "this tool writes there; choose a --panoptic-out outside it"
        )
    return target


def _image_notes(ground_truth: GroundTruthSet, images: str | None) -> list[str]:
    """Sentences for the report about what ``--images`` could not give."""
    if ground_truth.report is None:
        return []
    changed = ground_truth.report.changed
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


def _image_ids_shown(ids: set, limit: int = 5) -> str:
    shown = sorted(ids, key=str)[:limit]
    more = f" and {len(ids) - limit} more" if len(ids) > limit else ""
    return ", ".join(map(str, shown)) + more


def _scored_images(args: argparse.Namespace, gt: GroundTruthSet, results_a: ResultsFile,
                   results_b: ResultsFile | None) -> list:
    """The GT images to score: all of them, or with ``--common-images`` those both files cover.

    Raises:
        _UsageError: the two files cover different images and ``--common-images`` is not
            given, or they have no image in common.
    """
    if results_b is None:
        if args.common_images:
            raise _UsageError("--common-images needs --compare (it restricts both results "
                              "files to the GT images both cover)")
        return list(gt.records)
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
        raise _UsageError(
            f"--results {args.results} has results for {len(covered_a)} of the "
            f"{len(gt.records)} GT images and --compare {args.compare} for {len(covered_b)}; "
            f"{'; '.join(parts)}. Compared as they are, one model's predictions would be paired "
            f"with no predictions on those images. Pass --common-images to compare both on the "
            f"{len(common)} images both cover, or give results files of the same images."
        )
    if not common:
        raise _UsageError(
            f"--common-images: --results {args.results} and --compare {args.compare} have no "
            "GT image in common: nothing to compare"
        )
    return [image_id for image_id in gt.records if image_id in common]


def _evaluate_one(args: argparse.Namespace, settings: EvalSettings, gt: GroundTruthSet,
                  results: ResultsFile, scored: list, folder: str, shown: str,
                  semantic: SemanticPngs | None, notes: list[str]) -> EvaluationResult:
    import logging

    from ..evaluation.accumulator import Accumulator
    from ..evaluation.api import results_source
    from ..evaluation.report.text import coverage_is_partial, coverage_sentence
    from ..evaluation.score_files import score_results

    logger = logging.getLogger("segcontrast")
    for warning in results.warnings:
        logger.warning(warning)
    coverage = {
        "gt_images": len(gt.records),
        "images_with_results": len(results.by_image),
        "images_without_results": len(gt.records) - len(results.by_image),
        "scored_images": len(scored),
        "common_images_only": bool(args.common_images),
    }
    (logger.warning if coverage_is_partial(coverage) else logger.info)(
        "Coverage of %s: %s", results.path, coverage_sentence(coverage))
    source = results_source(results, gt, args.gt, args.semantic_dir)
    source["notes"] += notes
    source["coverage"] = coverage
    accumulator = Accumulator(gt, settings)
    images = {image_id: gt.images[image_id] for image_id in scored}
    score_results(accumulator, results, images, gt.id_map, semantic=semantic,
                  file_names=gt.file_names, workers=args.workers,
                  make_evaluator=lambda: Accumulator(gt, settings))
    result = accumulator.compute(source=source)
    logger.info("\n" + result.report())
    result.write_files(folder, overlays=bool(args.images or args.overlays))
    logger.info("SegContrast metrics, per-image table, plots and report.html written to %s",
                shown)
    return result


def _run(args: argparse.Namespace, settings: EvalSettings, tmp: str, shown: str,
         repaired: str | None = None) -> None:
    """Score into ``tmp`` (published as ``shown`` afterwards); log ``repaired`` first."""
    import json
    import logging

    from ..evaluation.api import read_results_for
    from ..evaluation.compare import compare_states
    from ..evaluation.ground_truth import GroundTruthSet
    from ..evaluation.report.html import AP_RULE, write_html_report
    from ..evaluation.semantic_pngs import SemanticPngs
    from ..utils import atomic_write
    from ..utils.logging_setup import setup_segcontrast_logging

    setup_segcontrast_logging(tmp)
    logger = logging.getLogger("segcontrast")
    if repaired:
        logger.warning(repaired)
    gt = GroundTruthSet.from_coco(args.gt, args.images,
                                  allow_outside_root=args.allow_outside_root,
                                  image_files_optional=True)
    notes = _image_notes(gt, args.images)

    def read(path: str) -> ResultsFile:
        return read_results_for(path, gt, match_file_names=args.match_file_names,
                                match_image_ids=args.match_image_ids, ap_area=settings.ap_area)

    results_a = read(args.results)
    results_b = read(args.compare) if args.compare else None
    scored = _scored_images(args, gt, results_a, results_b)
    semantic = None
    if args.semantic_dir:
        semantic = SemanticPngs(args.semantic_dir,
                                {i: (gt.file_names[i], *gt.images[i]) for i in scored},
                                gt.num_classes)
    logger.info("Scoring %s (%d results) against %s (%d images).", args.results,
                len(results_a), args.gt, len(gt.records))
    result_a = _evaluate_one(args, settings, gt, results_a, scored, tmp, shown, semantic, notes)
    if results_b is not None:
        logger.info("Scoring %s (%d results) to compare.", args.compare, len(results_b))
        result_b = _evaluate_one(
            args, settings.replace(panoptic_output_dir=""), gt, results_b, scored,
            os.path.join(tmp, COMPARE_FOLDER), os.path.join(shown, COMPARE_FOLDER), semantic,
            notes)
        comparison = compare_states(
            result_a.state, result_b.state, result_a.results, result_b.results,
            gt.num_classes, samples=args.bootstrap, seed=args.seed,
            boundary_iou=settings.boundary_iou,
        )
        content = comparison.to_dict()
        content["names"] = {"a": args.results, "b": args.compare}
        content["coverage"] = {"gt_images": len(gt.records), "compared_images": len(scored),
                               "common_images_only": bool(args.common_images)}
        text = json.dumps(content, indent=2)
        atomic_write(os.path.join(tmp, "comparison.json"), lambda f: f.write(text), mode="w")
        write_html_report(tmp)
        logger.info("A = %s, B = %s. %s", args.results, args.compare, comparison.sentence)
    logger.info(AP_RULE)


def _lock_description(args: argparse.Namespace) -> str:
    return f"{TOOL_NAME} --results {args.results}, started {time.strftime('%Y-%m-%d %H:%M:%S')}"


def _interrupted_message(output: OwnedOutputFolder, existed: bool) -> str:
    if output.published:
        return f"interrupted: after the evaluation was complete; it is in {output.shown}"
    if existed:
        return (f"interrupted: nothing written; the previous evaluation in {output.shown} is "
                "unchanged")
    return f"interrupted: nothing written ({output.shown} was not created)"


def main(argv: Sequence[str] | None = None, prog: str = "segcontrast evaluate") -> int:
    """Run ``segcontrast evaluate``.

    Args:
        argv: the arguments (default: ``sys.argv[1:]``).
        prog: the program name shown in usage messages.

    Returns:
        The exit code: 0 scored, 2 bad input, 130 interrupted.
    """
    args = build_argument_parser(prog).parse_args(argv)
    try:
        from ..utils.interrupts import INTERRUPTED_EXIT_CODE
        from ..utils.logging_setup import segcontrast_logging
    except KeyboardInterrupt:
        print("interrupted: nothing written", file=sys.stderr)
        return 130
    import gc

    # What exists now (the parsed arguments, the modules) is never garbage: the collector would
    # walk it on every full collection while the files are parsed and scored.
    gc.freeze()
    try:
        with segcontrast_logging():
            return _main(args)
    except KeyboardInterrupt:
        print("interrupted: nothing written", file=sys.stderr)
        return INTERRUPTED_EXIT_CODE
    finally:
        gc.unfreeze()


def _main(args: argparse.Namespace) -> int:
    from ..utils.interrupts import INTERRUPTED_EXIT_CODE, interrupts_ignored
    from ..utils.output_folder import OwnedOutputFolder

    output = OwnedOutputFolder(args.output, TOOL_NAME, "--output", _lock_description(args))
    existed = os.path.isdir(output.path)
    try:
        if args.bootstrap < 1:
            raise _UsageError(f"--bootstrap {args.bootstrap}: expected at least 1 resample")
        if args.workers < 1:
            raise _UsageError(f"--workers {args.workers}: expected at least 1")
        settings = _settings(args)
        if args.panoptic_out:
            settings = settings.replace(panoptic_output_dir=_panoptic_folder(args, output.path))
        repaired = output.acquire()
        existed = os.path.isdir(output.path)
        tmp = output.stage()
        _run(args, settings, tmp, output.shown, repaired)
        output.publish()
    except KeyboardInterrupt:
        with interrupts_ignored():
            output.release()
            print(_interrupted_message(output, existed), file=sys.stderr)
        return INTERRUPTED_EXIT_CODE
    except InputError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    finally:
        with interrupts_ignored():
            output.release()
    print(f"evaluate: {args.results} scored -> {output.shown} (metrics.json, per_image.csv, "
          f"report.html{', comparison.json' if args.compare else ''})")
    return 0

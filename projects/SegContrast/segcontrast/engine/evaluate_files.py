"""What ``tools/evaluate.py`` does: score a COCO results file (any framework's) from files.

The ground truth is a COCO instances file, validated like any dataset (without reading images
unless ``--images`` is given); the results are read and checked once, grouped per image, decoded
one image at a time and handed to :meth:`SegContrastEvaluator.add_predictions`, the per-image
entry point of the training evaluator; ``evaluate()`` is the same too. With ``--compare`` a second
results file is scored the same way and the two are compared with a paired bootstrap over images.

Everything is written into a temporary folder next to ``--output`` and renamed to it at the end:
``--output`` exists only after a run that scored successfully.

Exit codes: 0 success; 2 bad input (one message naming the file and every offending item).
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import os
import shutil
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from detectron2.config import CfgNode, get_cfg
from detectron2.data import MetadataCatalog

from ..config import (
    ConfigError,
    add_segcontrast_config,
    check_override_list,
    load_config,
    merge_overrides,
    validate_segcontrast_config,
)
from ..data import DatasetValidationError
from ..datasets.coco import (
    dataset_images,
    register_coco_dataset,
    unregister_coco_dataset,
    validate_dataset,
)
from ..evaluation.compare import compare_states
from ..evaluation.metrics.bootstrap import DEFAULT_SAMPLES
from ..evaluation.report.html import AP_RULE, write_html_report
from ..evaluation.results_file import ResultsFile, ResultsFileError, read_results
from ..evaluation.score_files import default_workers, score_results
from ..evaluation.semantic_pngs import SemanticPngs
from ..utils import atomic_write
from .evaluator import SegContrastEvaluator, build_segcontrast_evaluator
from .logging_setup import segcontrast_logging, setup_segcontrast_logging

__all__ = ["FileInputError", "GroundTruthFile", "build_argument_parser", "load_ground_truth",
           "main"]

logger = logging.getLogger("segcontrast")

COMPARE_FOLDER = "compare"


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
                        help="folder for metrics.json, per_image.csv, plots and report.html "
                        "(a previous evaluation folder there is replaced)")
    parser.add_argument("--images", metavar="IMAGE_ROOT",
                        help="the folder the GT's file_names are relative to; only the "
                        "worst-image overlays need it")
    parser.add_argument("--semantic-dir", metavar="DIR",
                        help="label PNGs of a semantic model (<file name>.semantic.png as "
                        "tools/predict.py writes them, <stem>_semantic.png or <stem>.png; 0 "
                        "background, class k as k + 1): scored as 'semantic', "
                        "the painted instances as 'semantic_from_instances'")
    parser.add_argument("--compare", metavar="OTHER_RESULTS.json",
                        help="a second results file: A vs B with paired bootstrap intervals")
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
    if args.ap_area:
        opts += ["TEST.SEGCONTRAST.AP_AREA", args.ap_area]
    if args.panoptic_out:
        opts += ["TEST.SEGCONTRAST.PANOPTIC_OUTPUT_DIR", os.path.abspath(args.panoptic_out)]
    check_override_list(opts)
    others = [k for k in opts[0::2] if not k.startswith("TEST.SEGCONTRAST.")]
    if others:
        raise ConfigError(
            "overrides must be TEST.SEGCONTRAST.* KEY VALUE pairs (scoring files uses no model "
            f"settings); found {' '.join(others)}"
        )
    if args.config:
        return load_config(args.config, opts)
    cfg = get_cfg()
    add_segcontrast_config(cfg)
    merge_overrides(cfg, opts)
    validate_segcontrast_config(cfg)
    return cfg


def _check_output(output: str) -> None:
    if os.path.exists(output) and not os.path.isdir(output):
        raise FileInputError(f"--output {output}: a file of that name exists; expected a folder")
    if os.path.isdir(output) and os.listdir(output) and not os.path.isfile(
            os.path.join(output, "metrics.json")):
        raise FileInputError(
            f"--output {output} holds other files and no metrics.json: choose a new or empty "
            "folder (a previous evaluation folder is replaced)"
        )


def _publish(tmp: str, output: str) -> None:
    """Move the finished folder into place (replacing a previous evaluation folder)."""
    mask = os.umask(0)
    os.umask(mask)
    os.chmod(tmp, 0o777 & ~mask)  # mkdtemp makes it private
    if os.path.isdir(output):
        old = tempfile.mkdtemp(prefix=f".{os.path.basename(output)}.", suffix=".old",
                               dir=os.path.dirname(output))
        os.rmdir(old)
        os.rename(output, old)
        os.rename(tmp, output)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.rename(tmp, output)


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
        left_out_categories: category ids that are no class -> why (Roboflow's placeholder).
    """

    name: str
    json_file: str
    images: dict[Any, tuple[int, int]]
    file_names: dict[Any, str]
    id_map: dict[int, int]
    class_names: list[str]
    left_out_categories: dict[int, str] = field(default_factory=dict)


def load_ground_truth(gt_json: str, images: str | None = None, *,
                      allow_outside_root: bool = False) -> GroundTruthFile:
    """Register and validate a ground-truth file (its images are read only when given).

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
                          check_image_files=bool(images))
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
        left_out_categories=dict(report.left_out_categories),
    )


def _read(path: str, gt: GroundTruthFile, args: argparse.Namespace, cfg: CfgNode
          ) -> ResultsFile:
    return read_results(path, gt.images, gt.id_map, match_file_names=args.match_file_names,
                        match_image_ids=args.match_image_ids, gt_file_names=gt.file_names,
                        ap_area=cfg.TEST.SEGCONTRAST.AP_AREA,
                        left_out_categories=gt.left_out_categories)


def _area_note(results: ResultsFile) -> str | None:
    """What the results' boxes did for APs/APm/APl, where the user might expect otherwise."""
    if results.ap_area == "mask" and results.has_boxes:
        return ("The results carry boxes; APs/APm/APl take each result's mask area all the "
                "same, as Detectron2's COCOEvaluator and MMDetection do (--ap-area box takes "
                "the boxes' w * h, as pycocotools does on this file as it is).")
    if results.ap_area == "box" and not results.has_boxes and len(results):
        return ("--ap-area box, but the first result has no bbox: APs/APm/APl take mask areas, "
                "as pycocotools does then.")
    return None


def _source(args: argparse.Namespace, results: ResultsFile, gt: GroundTruthFile) -> dict:
    notes = list(results.warnings)
    area = _area_note(results)
    if area:
        notes.append(area)
    notes += [f"Category id {cid} of the ground truth is left out of the per-class tables: "
              f"{why}." for cid, why in sorted(gt.left_out_categories.items())]
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
        "notes": notes,
    }


def _evaluate_one(cfg: CfgNode, gt: GroundTruthFile, results: ResultsFile, folder: str,
                  args: argparse.Namespace, semantic: SemanticPngs | None
                  ) -> tuple[SegContrastEvaluator, dict]:
    for warning in results.warnings:
        logger.warning(warning)
    source = _source(args, results, gt)
    evaluator = build_segcontrast_evaluator(cfg, gt.name, folder, source=source)
    score_results(evaluator, results, gt.images, gt.id_map, semantic=semantic,
                  file_names=gt.file_names, workers=args.workers,
                  make_evaluator=lambda: build_segcontrast_evaluator(cfg, gt.name, folder))
    return evaluator, dict(evaluator.evaluate() or {})


def _run(args: argparse.Namespace, cfg: CfgNode, tmp: str) -> str:
    setup_segcontrast_logging(tmp)
    gt = load_ground_truth(args.gt, args.images, allow_outside_root=args.allow_outside_root)
    results_a = _read(args.results, gt, args, cfg)
    results_b = _read(args.compare, gt, args, cfg) if args.compare else None
    semantic = None
    if args.semantic_dir:
        semantic = SemanticPngs(
            args.semantic_dir,
            {i: (gt.file_names[i], *gt.images[i]) for i in gt.images},
            len(gt.class_names),
        )
    logger.info("Scoring %s (%d results) against %s (%d images).", args.results,
                len(results_a), args.gt, len(gt.images))
    evaluator_a, metrics_a = _evaluate_one(cfg, gt, results_a, tmp, args, semantic)
    if results_b is not None:
        logger.info("Scoring %s (%d results) to compare.", args.compare, len(results_b))
        evaluator_b, metrics_b = _evaluate_one(cfg, gt, results_b,
                                               os.path.join(tmp, COMPARE_FOLDER), args, semantic)
        comparison = compare_states(
            evaluator_a.state, evaluator_b.state, metrics_a, metrics_b, len(gt.class_names),
            samples=args.bootstrap, seed=args.seed,
            boundary_iou=cfg.TEST.SEGCONTRAST.BOUNDARY_IOU,
        )
        content = comparison.to_dict()
        content["names"] = {"a": args.results, "b": args.compare}
        text = json.dumps(content, indent=2)
        atomic_write(os.path.join(tmp, "comparison.json"), lambda f: f.write(text), mode="w")
        write_html_report(tmp)
        logger.info("A = %s, B = %s. %s", args.results, args.compare, comparison.sentence)
    logger.info(AP_RULE)
    return gt.name


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``tools/evaluate.py``.

    Args:
        argv: command-line arguments (default: ``sys.argv[1:]``).

    Returns:
        The exit code: 0 scored, 2 bad input.
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


def _main(args: argparse.Namespace) -> int:
    output = os.path.abspath(args.output)
    tmp = None
    name = None
    try:
        if args.bootstrap < 1:
            raise FileInputError(f"--bootstrap {args.bootstrap}: expected at least 1 resample")
        if args.workers < 1:
            raise FileInputError(f"--workers {args.workers}: expected at least 1")
        cfg = _config(args)
        _check_output(output)
        os.makedirs(os.path.dirname(output), exist_ok=True)
        tmp = tempfile.mkdtemp(prefix=f".{os.path.basename(output)}.", suffix=".tmp",
                               dir=os.path.dirname(output))
        name = os.path.basename(os.path.abspath(args.gt))
        _run(args, cfg, tmp)
        _publish(tmp, output)
        tmp = None
    except (ConfigError, DatasetValidationError, ResultsFileError, FileInputError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
        if name is not None:
            unregister_coco_dataset(name)
    print(f"evaluate: {args.results} scored -> {output} (metrics.json, per_image.csv, "
          f"report.html{', comparison.json' if args.compare else ''})")
    return 0

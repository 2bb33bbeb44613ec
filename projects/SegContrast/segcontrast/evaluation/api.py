"""``segcontrast.evaluate``: score a COCO results file (or list) against a COCO ground truth.

The same implementation as ``segcontrast evaluate``, as a function::

    result = segcontrast.evaluate("val.json", "segm.json", iou_threshold=0.75)
    result.metrics["semantic"]["mIoU"], result.metrics["instance"]["mIoU"]
    print(result.explanation)
    result.save("eval/")          # metrics.json, per_image.csv, plots, report.html

Both arguments may also be the loaded JSON (a dict and a list).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

from ..utils.collector import collector_paused
from .accumulator import Accumulator
from .ground_truth import GroundTruthSet
from .result import EvaluationResult
from .results_file import ResultsFile, check_results, read_results
from .score_files import score_results
from .semantic_pngs import SemanticPngs
from .settings import EvalSettings

__all__ = ["evaluate", "read_results_for", "results_source"]


def read_results_for(results: str | os.PathLike | Sequence[dict], gt: GroundTruthSet, *,
                     match_file_names: bool = False, match_image_ids: bool = False,
                     ap_area: str = "mask", name: str = "results") -> ResultsFile:
    """A results file (or list) checked against the ground truth, grouped per image.

    Args:
        results: the file or the parsed list.
        gt: the ground truth.
        match_file_names: take each result's image from its file name (or file stem).
        match_image_ids: take each result's image from its ``image_id``, without asking
            whether the results name their images by file.
        ap_area: the AP area rule ("mask" or "box").
        name: how messages name a list given in Python.

    Raises:
        ResultsFileError: every problem, each naming the result.
    """
    kwargs = {"match_file_names": match_file_names, "match_image_ids": match_image_ids,
              "gt_file_names": gt.file_names, "ap_area": ap_area,
              "left_out_categories": gt.left_out_categories}
    if isinstance(results, (str, os.PathLike)):
        return read_results(results, gt.images, gt.id_map, **kwargs)
    return check_results(name, list(results), gt.images, gt.id_map, **kwargs)


def _area_note(results: ResultsFile) -> str | None:
    """What the results' boxes did for APs/APm/APl, where the user might expect otherwise."""
    if results.ap_area == "mask" and results.has_boxes:
        # The rule itself is stated beside it (AP_AREA_RULES); this is what it means here.
        return ("The results carry boxes: pycocotools on this file as it is would take the "
                "boxes' w * h for APs/APm/APl (--ap-area box gives its numbers).")
    if results.ap_area == "box" and not results.has_boxes and len(results):
        return ("--ap-area box, but the first result has no bbox: APs/APm/APl take mask areas, "
                "as pycocotools does then.")
    return None


def results_source(results: ResultsFile, gt: GroundTruthSet, gt_label: str | None = None,
                   semantic_dir: str | None = None) -> dict[str, Any]:
    """What was scored, for ``metrics.json``'s ``"source"`` and the report's notes."""
    notes = list(results.warnings)
    area = _area_note(results)
    if area:
        notes.append(area)
    notes += [f"Category id {cid} of the ground truth is left out of the per-class tables: "
              f"{why}." for cid, why in sorted(gt.left_out_categories.items())]
    if semantic_dir:
        notes.append("The 'semantic' columns are the semantic model's label PNGs, the "
                     "'semantic_from_instances' columns the results painted as labels.")
    return {
        "results_file": results.path,
        "gt_file": gt_label or gt.json_file or gt.name,
        "semantic_dir": semantic_dir,
        "num_results": len(results),
        "images_with_results": len(results.by_image),
        "notes": notes,
    }


@collector_paused()
def evaluate(gt: str | os.PathLike | Mapping | GroundTruthSet,
             results: str | os.PathLike | Sequence[dict], *,
             images: str | os.PathLike | None = None, semantic_dir: str | None = None,
             match_file_names: bool = False, match_image_ids: bool = False,
             settings: EvalSettings | None = None,
             workers: int = 1, progress: bool = False, **overrides: Any) -> EvaluationResult:
    """Score predictions as semantic and as instance segmentation, and explain the gap.

    Args:
        gt: a COCO instances file, its parsed dict, or a :class:`GroundTruthSet`.
        results: a COCO results file or its parsed list (``image_id``, ``category_id``,
            ``segmentation`` as RLE or polygons, ``score``, optional ``bbox``).
        images: the image root: checks the image files and draws the worst images'
            overlays on them.
        semantic_dir: label PNGs of a semantic model, scored as the "semantic" group.
        match_file_names: take each result's image from its ``file_name`` (or its file stem
            as ``image_id``, as Ultralytics writes) instead of its ``image_id``.
        match_image_ids: take each result's image from its ``image_id`` even where the ids
            could be file stems (without either flag, results named by file are matched by
            file name where that is the one reading that fits, refused where both fit).
        settings: how to score (default :class:`EvalSettings`).
        workers: processes that score images (the numbers do not depend on it).
        progress: show a progress bar with ETA.
        **overrides: settings by name, e.g. ``iou_threshold=0.75``.

    Returns:
        The result: ``metrics`` (the nested dict of ``metrics.json``), ``explanation``,
        ``save(folder)``.

    Raises:
        InputError: a ground truth, results file or setting that cannot be used; the message
            names the file and every offending item.
    """
    settings = (settings or EvalSettings()).replace(**overrides)
    ground_truth = gt if isinstance(gt, GroundTruthSet) else GroundTruthSet.from_coco(gt, images)
    loaded = read_results_for(results, ground_truth, match_file_names=match_file_names,
                              match_image_ids=match_image_ids, ap_area=settings.ap_area)
    semantic = None
    if semantic_dir:
        semantic = SemanticPngs(
            semantic_dir,
            {i: (ground_truth.file_names[i], *ground_truth.images[i])
             for i in ground_truth.records},
            ground_truth.num_classes,
        )
    accumulator = Accumulator(ground_truth, settings)
    score_results(accumulator, loaded, ground_truth.images, ground_truth.id_map,
                  semantic=semantic, file_names=ground_truth.file_names, progress=progress,
                  workers=workers,
                  make_evaluator=lambda: Accumulator(ground_truth, settings, keep_worst=True))
    source = results_source(loaded, ground_truth, semantic_dir=semantic_dir)
    return accumulator.compute(source=source)

"""Dataset-level metrics from merged sufficient statistics.

``summarize`` turns an :class:`~.records.EvalState` into the float-only result dict that
Detectron2 expects (groups "semantic", "instance", "segm", "contrast", percent like
Detectron2, counts as plain numbers) plus the details that are not floats (class names each
absent-class rule touched, per-class tables) for ``metrics.json`` and the log report.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .accounting.dataset_deltas import accounting_results, panoptic_matrix
from .catalog import ERROR_TYPES
from .explanation import explain
from .metrics.coco_ap import (
    MatchedDetections,
    accumulate,
    concat_ap_images,
    ground_truth_counts,
    match_detections,
)
from .metrics.panoptic import FN, FP, TP, panoptic_scores
from .metrics.semantic import SemanticScores, semantic_scores
from .records import EvalState, ImageRecord

__all__ = [
    "CONTRAST_COUNTS",
    "Summary",
    "contrast_group",
    "instance_group",
    "panoptic_group",
    "segm_group",
    "semantic_group",
    "summarize",
]

# Per image and summed: matched pairs and false positives (not error types), then every error
# type's count; all from the images' error assignments.
CONTRAST_COUNTS = ("matched", "false_positives", *ERROR_TYPES)


@dataclass
class Summary:
    """Results of an evaluation.

    Attributes:
        results: the float-only dict returned by ``evaluate()``.
        details: JSON-ready extras: class-name lists, per-class rows, confusion matrix.
        class_names: the thing classes.
    """

    results: OrderedDict
    details: dict[str, Any] = field(default_factory=dict)
    class_names: list[str] = field(default_factory=list)


def _pct(value: float) -> float:
    return float(value) * 100.0 if not math.isnan(value) else math.nan


def _mean(values: np.ndarray) -> float:
    values = np.asarray(values, np.float64)
    values = values[~np.isnan(values)]
    return float(values.mean()) if values.size else math.nan


def _cat(arrays: Sequence[np.ndarray], dtype: type) -> np.ndarray:
    return np.concatenate(arrays).astype(dtype) if arrays else np.zeros(0, dtype)


def semantic_group(confusion: np.ndarray, per_image_miou: np.ndarray,
                   names: Sequence[str]) -> tuple[OrderedDict, SemanticScores]:
    """A semantic group ("semantic", "semantic_from_instances"): IoU from a confusion matrix.

    Args:
        confusion: (K + 1, K + 1) summed confusion matrix, rows ground truth.
        per_image_miou: (images,) each image's own mIoU (NaN where undefined).
        names: K thing class names.

    Returns:
        The group (percent) and the scores it came from.
    """
    sem = semantic_scores(confusion)
    group: OrderedDict[str, float] = OrderedDict()
    group["mIoU"] = _pct(sem.miou)
    group["mIoU_per_image"] = _pct(_mean(per_image_miou))
    group["fwIoU"] = _pct(sem.fwiou)
    group["pixel_acc"] = _pct(sem.pixel_accuracy)
    group["mean_acc"] = _pct(sem.mean_accuracy)
    group["mDice"] = _pct(sem.mdice)
    group["mIoU_with_background"] = _pct(sem.miou_with_background)
    group["IoU-background"] = _pct(sem.iou[0])
    for k, name in enumerate(names):
        group[f"IoU-{name}"] = _pct(sem.iou[k + 1])
    return group, sem


@dataclass
class _InstanceArrays:
    """Per-instance and per-prediction arrays of all images, concatenated."""

    gt_classes: np.ndarray
    gt_iou: np.ndarray
    gt_boundary_iou: np.ndarray
    pred_classes: np.ndarray
    pred_ignored: np.ndarray

    @classmethod
    def gather(cls, images: Sequence[ImageRecord]) -> _InstanceArrays:
        return cls(
            gt_classes=_cat([r.gt_classes for r in images], np.int64),
            gt_iou=_cat([r.gt_iou for r in images], np.float64),
            gt_boundary_iou=_cat([r.gt_boundary_iou for r in images], np.float64),
            pred_classes=_cat([r.pred_classes for r in images], np.int64),
            pred_ignored=_cat([r.pred_ignored for r in images], bool),
        )


def _f1(precision: float, recall: float) -> float:
    if math.isnan(precision) or math.isnan(recall):
        return math.nan
    return 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0


def instance_group(arrays: _InstanceArrays, counts: dict[str, int], names: Sequence[str], *,
                   boundary_iou: bool) -> tuple[OrderedDict, list[int], list[int]]:
    """The "instance" results: per-instance IoU (a miss counts 0), precision, recall, F1.

    Returns:
        The group (percent), the classes with neither GT nor predictions, and the classes with
        predictions only.
    """
    class_iou = np.full(len(names), math.nan)
    absent, only_predicted = [], []
    for k in range(len(names)):
        of_class = arrays.gt_classes == k
        if of_class.any():
            class_iou[k] = float(np.mean(arrays.gt_iou[of_class]))
        elif np.any((arrays.pred_classes == k) & ~arrays.pred_ignored):
            class_iou[k] = 0.0
            only_predicted.append(k)
        else:
            absent.append(k)
    tp, fp, n_gt = counts.get("matched", 0), counts.get("false_positives", 0), counts.get("n_gt", 0)
    precision = tp / (tp + fp) if tp + fp > 0 else math.nan
    recall = tp / n_gt if n_gt > 0 else math.nan
    matched = arrays.gt_iou > 0
    group: OrderedDict[str, float] = OrderedDict()
    group["mIoU"] = _pct(_mean(arrays.gt_iou))
    group["matched_mIoU"] = _pct(_mean(arrays.gt_iou[matched]))
    group["class_mIoU"] = _pct(_mean(class_iou))
    group["precision"] = _pct(precision)
    group["recall"] = _pct(recall)
    group["F1"] = _pct(_f1(precision, recall))
    if boundary_iou:
        group["boundary_IoU"] = _pct(_mean(arrays.gt_boundary_iou[matched]))
    for k, name in enumerate(names):
        group[f"IoU-{name}"] = _pct(class_iou[k])
    return group, absent, only_predicted


def segm_group(images: Sequence[ImageRecord], names: Sequence[str],
               matched: MatchedDetections | None = None,
               ap_data: dict[str, np.ndarray] | None = None) -> OrderedDict:
    """The "segm" results: COCO mask AP, as pycocotools' COCOeval computes it.

    Args:
        images: the records, in image-id order.
        names: K class names.
        matched: their detections already matched (:func:`.coco_ap.match_detections`).
        ap_data: their AP records concatenated (:func:`.coco_ap.concat_ap_images`).
    """
    records = [r.ap for r in images]
    if ap_data is None:
        ap_data = concat_ap_images(records)
    if matched is None:
        matched = match_detections(records, len(names), data=ap_data)
    ap = accumulate(matched, ground_truth_counts(records, len(names), data=ap_data), len(names))
    group: OrderedDict[str, float] = OrderedDict(ap.stats())
    for k, ap_k in enumerate(ap.per_class()):
        group[f"AP-{names[k]}"] = float(ap_k)
    return group


def panoptic_group(stats: np.ndarray, names: Sequence[str]) -> tuple[OrderedDict, list[dict]]:
    """The "panoptic" results: PQ, SQ, RQ over the thing classes, with background, per class.

    Args:
        stats: (K + 1, 4) summed TP, FP, FN and matched-IoU sums, background first.
        names: K thing class names.

    Returns:
        The group (percent; counts as numbers) and one row per category for the details.
    """
    scores = panoptic_scores(stats)
    group: OrderedDict[str, float] = OrderedDict()
    for key, value in zip(("PQ", "SQ", "RQ"), scores.things, strict=True):
        group[key] = _pct(value)
    for key, value in zip(("PQ_all", "SQ_all", "RQ_all"), scores.all, strict=True):
        group[key] = _pct(value)
    for key, column in (("TP", TP), ("FP", FP), ("FN", FN)):
        group[key] = float(stats[1:, column].sum())
    rows = []
    for c, name in enumerate(["background", *names]):
        group[f"PQ-{name}"] = _pct(scores.pq[c])
        rows.append({"category": name, "PQ": _pct(scores.pq[c]), "SQ": _pct(scores.sq[c]),
                     "RQ": _pct(scores.rq[c]), "TP": int(stats[c, TP]), "FP": int(stats[c, FP]),
                     "FN": int(stats[c, FN])})
    return group, rows


def contrast_group(counts: dict[str, int], num_images: int, sem: SemanticScores,
                   instance_absent: list[int], instance_only_predicted: list[int]) -> OrderedDict:
    """The "contrast" results: every count, from the images' error assignments.

    Matched pairs and false positives, each error type's count (the accounting's rows, the
    same numbers as its ``count-<type>``), then the sizes and the absent-class counts.
    """
    group: OrderedDict[str, float] = OrderedDict()
    for key in CONTRAST_COUNTS:
        group[key] = float(counts.get(key, 0))
    group["gt_instances"] = float(counts.get("n_gt", 0))
    group["predictions"] = float(counts.get("n_pred", 0))
    group["images"] = float(num_images)
    group["semantic_absent_classes"] = float(len(sem.absent))
    group["semantic_only_predicted_classes"] = float(len(sem.only_predicted))
    group["instance_absent_classes"] = float(len(instance_absent))
    group["instance_only_predicted_classes"] = float(len(instance_only_predicted))
    return group


def _absent_class_rules(names: Sequence[str], sem: SemanticScores, instance_absent: list[int],
                        instance_only_predicted: list[int]) -> dict[str, Any]:
    def entry(rule: str, classes: list[int]) -> dict[str, Any]:
        return {"rule": rule, "classes": [names[k] for k in classes]}

    return {
        "semantic_absent": entry(
            "no ground-truth and no predicted pixels: IoU NaN, left out of means", sem.absent),
        "semantic_only_predicted": entry(
            "predicted pixels but no ground-truth pixels: IoU 0, counted in means",
            sem.only_predicted),
        "instance_absent": entry(
            "no ground-truth instance and no prediction: IoU NaN, left out", instance_absent),
        "instance_only_predicted": entry(
            "predictions but no ground-truth instance: IoU 0, counted in class_mIoU",
            instance_only_predicted),
    }


def _summed_counts(images: Sequence[ImageRecord]) -> dict[str, int]:
    """Every count of the images' records, summed (the first record's keys, in its order)."""
    if not images:
        return {}
    keys = list(images[0].counts)
    rows = np.array([[r.counts[k] for k in keys] for r in images], np.int64)
    return {k: int(v) for k, v in zip(keys, rows.sum(axis=0).tolist(), strict=True)}


def summarize(
    state: EvalState, class_names: Sequence[str], *, boundary_iou: bool = True
) -> Summary:
    """Compute every metric of a merged state.

    Args:
        state: merged statistics (images in id order).
        class_names: K thing class names, contiguous order.
        boundary_iou: whether boundary IoU was computed.

    Returns:
        The summary; its ``details["explanation"]`` is written by :func:`.explanation.explain`.
    """
    names = list(class_names)
    images = state.images
    counts = _summed_counts(images)
    semantic, sem = semantic_group(
        state.confusion, np.array([r.semantic_miou for r in images]), names
    )
    results = OrderedDict([("semantic", semantic)])
    if state.confusion_from_instances is not None:
        results["semantic_from_instances"], _ = semantic_group(
            state.confusion_from_instances,
            np.array([r.semantic_miou_from_instances for r in images]), names,
        )
    arrays = _InstanceArrays.gather(images)
    matched = ap_data = None
    inst_absent: list[int] = []
    inst_only_pred: list[int] = []
    if state.has_instances:
        instance, inst_absent, inst_only_pred = instance_group(
            arrays, counts, names, boundary_iou=boundary_iou
        )
        results["instance"] = instance
        ap_data = concat_ap_images([r.ap for r in images])
        matched = match_detections([r.ap for r in images], len(names), data=ap_data)
        results["segm"] = segm_group(images, names, matched, ap_data)
        results["contrast"] = contrast_group(
            counts, len(images), sem, inst_absent, inst_only_pred
        )
    extra: dict[str, Any] = {}
    with_pq = any(r.panoptic is not None for r in images)
    if with_pq:
        pq_stats = panoptic_matrix(images, len(names) + 1).sum(axis=0)
        results["panoptic"], extra["panoptic_per_class"] = panoptic_group(pq_stats, names)
    if any(r.accounting is not None for r in images):
        results["accounting"], extra["accounting"] = accounting_results(
            state, names, with_pq=with_pq, matched=matched, ap_data=ap_data
        )
    matched = arrays.gt_iou > 0
    per_class = []
    for k, name in enumerate(names):
        row: dict[str, Any] = {"class": name, "semantic_IoU": semantic[f"IoU-{name}"]}
        if "semantic_from_instances" in results:
            row["semantic_from_instances_IoU"] = results["semantic_from_instances"][f"IoU-{name}"]
        if state.has_instances:
            row["instance_IoU"] = results["instance"][f"IoU-{name}"]
            row["AP"] = results["segm"][f"AP-{name}"]
        row["gt_instances"] = int(np.count_nonzero(arrays.gt_classes == k))
        if state.has_instances:
            row["matched"] = int(np.count_nonzero(matched & (arrays.gt_classes == k)))
            row["predictions"] = int(np.count_nonzero(arrays.pred_classes == k))
        per_class.append(row)
    rules = _absent_class_rules(names, sem, inst_absent, inst_only_pred)
    if not state.has_instances:
        rules = {k: v for k, v in rules.items() if k.startswith("semantic")}
    details = {
        "absent_class_rules": rules,
        "per_class": per_class,
        "confusion_matrix": {
            "labels": ["background", *names],
            "rows": "ground truth",
            "columns": "prediction",
            "counts": state.confusion.tolist(),
        },
        "counts": counts,
        "num_images": len(images),
        "explanation": explain(results),
        **extra,
    }
    return Summary(results=results, details=details, class_names=names)

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

from .coco_ap import coco_segm_ap
from .records import EvalState
from .semantic import semantic_scores

__all__ = ["CONTRAST_COUNTS", "Summary", "summarize"]

CONTRAST_COUNTS = (
    "merged",
    "split",
    "duplicates",
    "class_confusions",
    "missed",
    "false_positives",
    "matched",
    "ignored",
)


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


def summarize(
    state: EvalState, class_names: Sequence[str], *, boundary_iou: bool = True
) -> Summary:
    """Compute every metric of a merged state.

    Args:
        state: merged statistics (images in id order).
        class_names: K thing class names, contiguous order.
        boundary_iou: whether boundary IoU was computed.

    Returns:
        The summary.
    """
    names = list(class_names)
    k_count = len(names)
    images = state.images

    sem = semantic_scores(state.confusion)
    semantic: OrderedDict[str, float] = OrderedDict()
    semantic["mIoU"] = _pct(sem.miou)
    semantic["mIoU_per_image"] = _pct(_mean(np.array([r.semantic_miou for r in images])))
    semantic["fwIoU"] = _pct(sem.fwiou)
    semantic["pixel_acc"] = _pct(sem.pixel_accuracy)
    semantic["mean_acc"] = _pct(sem.mean_accuracy)
    semantic["mDice"] = _pct(sem.mdice)
    semantic["mIoU_with_background"] = _pct(sem.miou_with_background)
    semantic["IoU-background"] = _pct(sem.iou[0])
    for k, name in enumerate(names):
        semantic[f"IoU-{name}"] = _pct(sem.iou[k + 1])

    gt_cls = _cat([r.gt_classes for r in images], np.int64)
    gt_iou = _cat([r.gt_iou for r in images], np.float64)
    gt_biou = _cat([r.gt_boundary_iou for r in images], np.float64)
    pred_cls = _cat([r.pred_classes for r in images], np.int64)
    pred_ignored = _cat([r.pred_ignored for r in images], bool)
    matched = gt_iou > 0
    counts = (
        {key: int(sum(r.counts[key] for r in images)) for key in images[0].counts} if images else {}
    )
    inst_class_iou = np.full(k_count, math.nan)
    inst_absent, inst_only_pred = [], []
    for k in range(k_count):
        of_class = gt_cls == k
        if of_class.any():
            inst_class_iou[k] = float(np.mean(gt_iou[of_class]))
        elif np.any((pred_cls == k) & ~pred_ignored):
            inst_class_iou[k] = 0.0
            inst_only_pred.append(k)
        else:
            inst_absent.append(k)
    tp = counts.get("matched", 0)
    fp = counts.get("false_positives", 0)
    n_gt = counts.get("n_gt", 0)
    precision = tp / (tp + fp) if tp + fp > 0 else math.nan
    recall = tp / n_gt if n_gt > 0 else math.nan
    if math.isnan(precision) or math.isnan(recall):
        f1 = math.nan
    else:
        f1 = 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0
    instance: OrderedDict[str, float] = OrderedDict()
    instance["mIoU"] = _pct(_mean(gt_iou))
    instance["matched_mIoU"] = _pct(_mean(gt_iou[matched]))
    instance["class_mIoU"] = _pct(_mean(inst_class_iou))
    instance["precision"] = _pct(precision)
    instance["recall"] = _pct(recall)
    instance["F1"] = _pct(f1)
    if boundary_iou:
        instance["boundary_IoU"] = _pct(_mean(gt_biou[matched]))
    for k, name in enumerate(names):
        instance[f"IoU-{name}"] = _pct(inst_class_iou[k])

    ap = coco_segm_ap([r.ap for r in images], k_count)
    segm: OrderedDict[str, float] = OrderedDict(ap.stats())
    ap_per_class = ap.per_class()
    for k, name in enumerate(names):
        segm[f"AP-{name}"] = float(ap_per_class[k])

    contrast: OrderedDict[str, float] = OrderedDict()
    for key in CONTRAST_COUNTS:
        contrast[key] = float(counts.get(key, 0))
    contrast["gt_instances"] = float(n_gt)
    contrast["predictions"] = float(counts.get("n_pred", 0))
    contrast["images"] = float(len(images))
    contrast["semantic_absent_classes"] = float(len(sem.absent))
    contrast["semantic_only_predicted_classes"] = float(len(sem.only_predicted))
    contrast["instance_absent_classes"] = float(len(inst_absent))
    contrast["instance_only_predicted_classes"] = float(len(inst_only_pred))

    results = OrderedDict(
        [("semantic", semantic), ("instance", instance), ("segm", segm), ("contrast", contrast)]
    )
    per_class = [
        {
            "class": name,
            "semantic_IoU": semantic[f"IoU-{name}"],
            "instance_IoU": instance[f"IoU-{name}"],
            "AP": segm[f"AP-{name}"],
            "gt_instances": int(np.count_nonzero(gt_cls == k)),
            "matched": int(np.count_nonzero(matched & (gt_cls == k))),
            "predictions": int(np.count_nonzero(pred_cls == k)),
        }
        for k, name in enumerate(names)
    ]
    details = {
        "absent_class_rules": {
            "semantic_absent": {
                "rule": "no ground-truth and no predicted pixels: IoU NaN, left out of means",
                "classes": [names[k] for k in sem.absent],
            },
            "semantic_only_predicted": {
                "rule": "predicted pixels but no ground-truth pixels: IoU 0, counted in means",
                "classes": [names[k] for k in sem.only_predicted],
            },
            "instance_absent": {
                "rule": "no ground-truth instance and no prediction: IoU NaN, left out",
                "classes": [names[k] for k in inst_absent],
            },
            "instance_only_predicted": {
                "rule": "predictions but no ground-truth instance: IoU 0, counted in class_mIoU",
                "classes": [names[k] for k in inst_only_pred],
            },
        },
        "per_class": per_class,
        "confusion_matrix": {
            "labels": ["background", *names],
            "rows": "ground truth",
            "columns": "prediction",
            "counts": state.confusion.tolist(),
        },
        "counts": counts,
        "explanation": explain(results),
    }
    return Summary(results=results, details=details, class_names=names)


def explain(results: dict) -> str:
    """One or two sentences on where the semantic and the instance scores disagree."""
    sem = results["semantic"]["mIoU"]
    inst = results["instance"]["mIoU"]
    c = results["contrast"]
    if math.isnan(sem) or math.isnan(inst):
        return "Semantic and instance mIoU cannot be compared: one of them is undefined."
    parts = []
    labels = (
        ("merged", "predictions merged two or more objects"),
        ("split", "objects were split into several predictions"),
        ("duplicates", "predictions were duplicates of found objects"),
        ("class_confusions", "predictions found an object but gave the wrong class"),
        ("missed", "objects were missed"),
        ("false_positives", "predictions matched no object"),
    )
    for key, text in labels:
        if c.get(key, 0) > 0:
            parts.append(f"{int(c[key])} {text}")
    gap = sem - inst
    head = (
        f"Semantic mIoU {sem:.1f} vs instance mIoU {inst:.1f} ({gap:+.1f} points): "
        "semantic IoU pools the pixels of each class, instance IoU scores every object "
        "on its own."
    )
    if not parts:
        return head + " No merges, splits, duplicates, confusions, misses or false positives."
    return head + " Only the instance side sees that " + "; ".join(parts) + "."

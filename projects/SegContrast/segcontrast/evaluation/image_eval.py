"""Everything computed for one image.

From its annotations and the model's output to an :class:`ImageResult`: the
:class:`~.records.ImageRecord` and the image's confusion matrices.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from ..data.masks import GroundTruth, MaskCrops, pairwise_intersections
from ..data.semantic_gt import paint_semantic_gt
from .accounting.assignment import ERROR_TYPES, ErrorAssignment, assign_errors
from .accounting.fixes import PredList, fix_all, fix_one
from .accounting.image_variants import ImageContext, account_image
from .metrics.boundary import boundary_iou_pairs
from .metrics.coco_ap import ApImage
from .metrics.instance import InstanceMatch, iou_matrix, match_image
from .metrics.panoptic import GtPanoptic, PredPanoptic, gt_segments, panoptic_stats, pred_segments
from .metrics.semantic import (
    confusion_matrix,
    label_counts,
    paint_semantic_from_crops,
    thing_miou_of_counts,
)
from .predictions import Predictions
from .records import ImageRecord

__all__ = ["ImageResult", "Predictions", "evaluate_image", "oracle_predictions"]


def _mean(values: np.ndarray) -> float:
    return float(np.mean(values)) if values.size else math.nan


@dataclass
class ImageResult:
    """What one image adds to the evaluator's statistics.

    Attributes:
        record: the per-image record.
        confusion: (K + 1, K + 1) confusion matrix of the semantic view: the semantic model's
            labels when there are any, else the painted instances.
        confusion_from_instances: the painted instances' confusion matrix when the model gave
            both a semantic output and instances (the second semantic column), else None.
        keep: indices of the predictions kept by the score threshold.
        accounting_confusion: per accounting variant the change of the painted instances'
            confusion matrix (variants that change it).
        panoptic_gt: the ground-truth segments (for the panoptic export), None without PQ.
        panoptic_pred: the kept predictions' segments, None without PQ.
    """

    record: ImageRecord
    confusion: np.ndarray
    confusion_from_instances: np.ndarray | None
    keep: np.ndarray
    accounting_confusion: dict[int, np.ndarray] = field(default_factory=dict)
    panoptic_gt: GtPanoptic | None = None
    panoptic_pred: PredPanoptic | None = None


@dataclass
class _InstanceSide:
    """The instance side's ingredients of one image: IoUs and the matching."""

    keep: np.ndarray
    inter: np.ndarray
    iou: np.ndarray
    regular: np.ndarray
    crowd: np.ndarray
    gt_regular: MaskCrops
    gt_classes: np.ndarray
    match: InstanceMatch

    @classmethod
    def compute(cls, gt: GroundTruth, pred: Predictions, keep: np.ndarray,
                iou_threshold: float) -> _InstanceSide:
        inter = pairwise_intersections(pred.masks, gt.masks)
        iou = iou_matrix(inter, pred.masks.areas, gt.masks.areas, gt.crowd)
        regular = np.flatnonzero(~gt.crowd)
        crowd = np.flatnonzero(gt.crowd)
        gt_regular = gt.masks.subset(regular)
        match = match_image(
            pred.masks.subset(keep),
            pred.classes[keep],
            gt_regular,
            gt.classes[regular],
            inter[np.ix_(keep, regular)],
            iou[np.ix_(keep, regular)],
            iou[np.ix_(keep, crowd)],
            gt.classes[crowd],
            iou_threshold,
        )
        return cls(keep, inter, iou, regular, crowd, gt_regular, gt.classes[regular], match)

    def errors(self, pred: Predictions, iou_threshold: float) -> ErrorAssignment:
        keep, regular = self.keep, self.regular
        return assign_errors(
            pred.classes[keep], pred.masks.areas[keep], pred.scores[keep], self.gt_classes,
            self.gt_regular.areas, self.inter[np.ix_(keep, regular)],
            self.iou[np.ix_(keep, regular)], self.match, iou_threshold,
            len(pred.scores) - len(keep),
        )


def oracle_predictions(
    gt: GroundTruth,
    pred: Predictions,
    row: str,
    *,
    iou_threshold: float,
    score_threshold: float,
) -> Predictions:
    """The gap accounting's fixed predictions of one image: what its oracle scores.

    Args:
        gt: the image's ground truth.
        pred: its predictions.
        row: an error type (``accounting.ERROR_TYPES``) or ``"all"``.
        iou_threshold: smallest IoU of a match.
        score_threshold: the instance side's score threshold.

    Returns:
        The predictions with only that row's errors fixed (every row's for ``"all"``);
        fixed masks' COCO areas are their pixel counts.
    """
    keep = np.flatnonzero(pred.scores >= score_threshold)
    inst = _InstanceSide.compute(gt, pred, keep, iou_threshold)
    errors = inst.errors(pred, iou_threshold)
    original = PredList.original(pred.masks, pred.classes, pred.scores, pred.ap_areas)
    if row == "all":
        fixed = fix_all(errors, original, keep, inst.gt_regular, inst.gt_classes)
    else:
        fixed = fix_one(ERROR_TYPES.index(row), errors, original, keep, inst.gt_regular,
                        inst.gt_classes)
    return Predictions(fixed.masks, fixed.classes, fixed.scores, fixed.ap_areas)


def evaluate_image(
    image: dict,
    gt: GroundTruth,
    pred: Predictions,
    *,
    num_classes: int,
    iou_threshold: float,
    score_threshold: float,
    boundary_dilation: int | None,
    panoptic: bool = False,
    accounting: bool = False,
    overlap_threshold: float = 0.5,
) -> ImageResult:
    """Score one image.

    Args:
        image: ``{"image_id", "file_name", "height", "width"}``.
        gt: its ground truth.
        pred: its predictions.
        num_classes: K.
        iou_threshold: smallest IoU of a match.
        score_threshold: predictions below it are left out of the semantic painting and the
            instance metrics (COCO AP always uses every prediction).
        boundary_dilation: boundary band width in pixels, or None to skip boundary IoU.
        panoptic: compute the PQ statistics (instance models only).
        accounting: compute the gap accounting's fixed variants (instance models only).
        overlap_threshold: the panoptic rule's drop threshold.

    Returns:
        The image's record and confusion matrices.
    """
    keep = np.flatnonzero(pred.scores >= score_threshold)
    kept = pred.masks.subset(keep)
    kept_classes, kept_scores = pred.classes[keep], pred.scores[keep]
    gt_labels = paint_semantic_gt(gt.masks, gt.classes, gt.crowd)
    painted = painted_labels = None
    if pred.has_instances:
        painted_labels = paint_semantic_from_crops(kept, kept_classes, kept_scores)
        painted = confusion_matrix(gt_labels, painted_labels, num_classes + 1)
    if pred.semantic is not None:
        conf = confusion_matrix(gt_labels, pred.semantic, num_classes + 1)
        from_instances = painted
    else:
        assert painted is not None, "predictions with neither instances nor semantic labels"
        conf, from_instances = painted, None

    inst = _InstanceSide.compute(gt, pred, keep, iou_threshold)
    iou, regular, crowd = inst.iou, inst.regular, inst.crowd
    gt_regular, match = inst.gt_regular, inst.match
    ap = ApImage.build(
        pred.classes, pred.scores, pred.ap_areas, gt.classes, gt.crowd, gt.areas, gt.ids, iou
    )
    boundary = np.full(len(regular), math.nan)
    if boundary_dilation is not None and len(match.pred_index):
        pairs = np.column_stack((match.pred_index, match.gt_index))
        boundary[match.gt_index] = boundary_iou_pairs(kept, gt_regular, pairs, boundary_dilation)
    # Every count of the image comes from the one error assignment (cheap: the matching's
    # intersections); the fixed variants' deltas below only when the accounting is on.
    errors = inst.errors(pred, iou_threshold)
    counts = errors.outcome_counts(len(crowd))
    pan_gt = pan_pred = pq = None
    if pred.has_instances and (panoptic or accounting):
        pan_gt = gt_segments(gt) if panoptic else None
        if pan_gt is not None:
            pan_pred = pred_segments(kept, kept_scores, pan_gt, overlap_threshold)
            pq = panoptic_stats(kept_classes + 1, pan_pred, pan_gt, num_classes + 1)
    accounting_record, accounting_confusion = None, {}
    if pred.has_instances and accounting:
        context = ImageContext(
            gt=gt, regular=regular, gt_labels=gt_labels, painted=painted_labels, iou=iou,
            gt_iou=match.gt_iou, pan_gt=pan_gt, pan_pred=pan_pred, pq=pq, num_classes=num_classes,
            score_threshold=score_threshold, iou_threshold=iou_threshold,
            overlap_threshold=overlap_threshold, confusion=painted,
        )
        original = PredList.original(pred.masks, pred.classes, pred.scores, pred.ap_areas)
        accounting_record, accounting_confusion = account_image(context, errors, original,
                                                                keep)
    conf_counts = label_counts(conf)
    from_instances_counts = label_counts(from_instances) if from_instances is not None else None
    record = ImageRecord(
        image_id=image["image_id"],
        file_name=str(image.get("file_name", "")),
        height=gt.masks.height,
        width=gt.masks.width,
        semantic_miou=thing_miou_of_counts(conf_counts),
        semantic_miou_from_instances=(
            thing_miou_of_counts(from_instances_counts) if from_instances_counts is not None
            else math.nan
        ),
        instance_miou=_mean(match.gt_iou) if pred.has_instances else math.nan,
        has_instances=pred.has_instances,
        counts=counts,
        gt_classes=gt.classes[regular].astype(np.int16),
        gt_iou=match.gt_iou,
        gt_boundary_iou=boundary,
        pred_classes=kept_classes.astype(np.int16),
        pred_matched=match.pred_matched,
        pred_ignored=match.pred_ignored,
        ap=ap,
        semantic_counts=conf_counts,
        semantic_counts_from_instances=from_instances_counts,
        panoptic=pq,
        accounting=accounting_record,
    )
    return ImageResult(record, conf, from_instances, keep, accounting_confusion, pan_gt, pan_pred)

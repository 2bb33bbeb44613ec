"""Panoptic quality (PQ, SQ, RQ) of instance predictions, with panopticapi's definitions.

Both sides are first made non-overlapping (rules in docs/EVALUATION.md):

* ground truth: a non-crowd instance keeps the pixels no other non-crowd instance covers;
  pixels of two or more non-crowd instances are VOID; the crowd regions of one class form one
  crowd segment on the pixels no non-crowd instance covers (pixels of crowd regions of two or
  more classes are VOID); every other pixel is one **background** segment (a stuff category,
  not VOID);
* predictions: Detectron2's ``combine_semantic_and_instance_outputs`` rule for things: in
  descending score order (equal scores in the model's order) each prediction takes the pixels
  not yet taken, unless it would lose more than ``overlap_threshold`` of its mask, in which case
  it is dropped; the pixels left are the predicted background segment.

Category indices: 0 background, thing class k is k + 1. Statistics per category are
``(TP, FP, FN, sum of matched IoU)``; they add over images.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ...data.masks import GroundTruth, MaskCrops
from ...utils.native import kernels

__all__ = [
    "MATCH_IOU",
    "GtPanoptic",
    "PanopticScores",
    "PredPanoptic",
    "gt_segments",
    "panoptic_scores",
    "panoptic_stats",
    "pred_segments",
]

# panopticapi: a predicted and a ground-truth segment match when their IoU is above this.
MATCH_IOU = 0.5
TP, FP, FN, IOU = range(4)


@dataclass
class GtPanoptic:
    """One image's non-overlapping ground-truth segments.

    Attributes:
        labels: (H, W) uint16 (int32 beyond 65535 labels) label of every pixel: 0
            background, ``r + 1`` the segment of the r-th non-crowd instance, then one crowd
            segment per class, and last VOID.
        categories: (L,) category of each label (0 background, k + 1 class k; -1 for VOID).
        crowd: (L,) bool, a crowd segment.
        areas: (L,) int64 pixels of each label.
        crowd_classes: (C,) the classes of the crowd segments, in label order.
    """

    labels: np.ndarray
    categories: np.ndarray
    crowd: np.ndarray
    areas: np.ndarray
    crowd_classes: np.ndarray

    @property
    def void(self) -> int:
        """The VOID label."""
        return len(self.areas) - 1


def gt_segments(gt: GroundTruth) -> GtPanoptic:
    """The ground truth as non-overlapping segments (module docstring).

    Args:
        gt: the image's annotations (crowd regions included).

    Returns:
        Its segments; an instance left without pixels has a segment of area 0 (it is no
        segment: neither a false negative nor matchable).
    """
    masks = gt.masks
    regular = np.flatnonzero(~gt.crowd)
    crowd = np.flatnonzero(gt.crowd & (masks.areas > 0))
    crowd_classes = np.array(sorted(set(gt.classes[crowd].tolist())), np.int64)
    n = len(regular)
    num_labels = n + len(crowd_classes) + 2
    void = num_labels - 1
    # each annotation's label: the r-th non-crowd instance r + 1, a crowd region its class's
    values = np.full(len(masks), -1, np.int64)
    values[regular] = np.arange(1, n + 1)
    values[crowd] = n + 1 + np.searchsorted(crowd_classes, gt.classes[crowd])
    labels, areas = kernels.gt_labels(masks.boxes, masks.crops, masks.areas, values,
                                      np.asarray(gt.crowd, bool), masks.height, masks.width,
                                      n + 1, num_labels)
    categories = np.concatenate(
        ([0], gt.classes[regular] + 1, crowd_classes + 1, [-1])
    ).astype(np.int64)
    is_crowd = np.zeros(num_labels, bool)
    is_crowd[n + 1 : void] = True
    return GtPanoptic(labels, categories, is_crowd, areas, crowd_classes)


@dataclass
class PredPanoptic:
    """Predicted segments of one image, one entry per prediction given.

    Attributes:
        kept: (N,) bool, the prediction has a segment (not dropped, not empty).
        areas: (N,) int64 segment areas (0 when not kept).
        hist: (N, L) int64 pixels of each segment on each ground-truth label.
        crops: N segment masks within the prediction's box (None when not kept, or when
            they were not asked for).
    """

    kept: np.ndarray
    areas: np.ndarray
    hist: np.ndarray
    crops: list[np.ndarray | None]


def rank_order(scores: np.ndarray) -> np.ndarray:
    """Descending score; equal scores in the given order."""
    return np.argsort(-np.asarray(scores, np.float64), kind="stable")


def pred_segments(masks: MaskCrops, scores: np.ndarray, gt: GtPanoptic,
                  overlap_threshold: float, with_crops: bool = True,
                  gt_copy: np.ndarray | None = None) -> PredPanoptic:
    """Make predictions non-overlapping (module docstring) and count their pixels per GT label.

    Args:
        masks: N predictions (already cut at the score threshold).
        scores: (N,) their scores.
        gt: the image's ground-truth segments.
        overlap_threshold: a prediction that would lose more than this fraction of its mask to
            higher-ranked ones is dropped.
        with_crops: keep each segment's mask (for the panoptic export).
        gt_copy: (N,) the non-crowd instance (index into the ground truth's instances) whose
            exact mask a prediction is, -1 otherwise; such a mask's pixels are its own
            segment's and VOID, which saves counting them.

    Returns:
        The segments.
    """
    kept, areas, hist, crops = kernels.pred_segments(
        masks.boxes, masks.crops, masks.areas, rank_order(scores), gt.labels, len(gt.areas),
        float(overlap_threshold), with_crops, gt_copy, gt.areas)
    return PredPanoptic(kept, areas, hist, crops)


def panoptic_stats(pred_categories: np.ndarray, pred: PredPanoptic, gt: GtPanoptic,
                   num_categories: int) -> np.ndarray:
    """Per-category TP, FP, FN and matched-IoU sum of one image, as panopticapi counts them.

    A predicted segment and a non-crowd ground-truth segment of its category match when their
    IoU, VOID pixels left out of the union, is above :data:`MATCH_IOU`; an unmatched
    predicted segment is a false positive unless more than half of it lies on VOID or on its
    category's crowd segment; an unmatched ground-truth segment with pixels is a false
    negative. The background is one more segment on each side (the pixels no prediction took).

    Args:
        pred_categories: (N,) category of each prediction (class + 1).
        pred: its segments.
        gt: the ground-truth segments.
        num_categories: K + 1.

    Returns:
        (K + 1, 4) float64: TP, FP, FN (integers) and the sum of the matched IoUs.
    """
    return kernels.panoptic_stats(
        np.asarray(pred_categories, np.int64), pred.kept, pred.areas, pred.hist, gt.areas,
        gt.categories, gt.crowd, gt.crowd_classes, num_categories, int(gt.labels.size))


@dataclass
class PanopticScores:
    """PQ, SQ, RQ from summed statistics (fractions, not percent).

    Attributes:
        pq, sq, rq: (K + 1,) per category (index 0 background); NaN for a category with no
            TP, FP or FN.
        things: ``(PQ, SQ, RQ)`` averaged over the thing categories that have segments.
        all: the same with the background category.
    """

    pq: np.ndarray
    sq: np.ndarray
    rq: np.ndarray
    things: tuple[float, float, float]
    all: tuple[float, float, float]


def _average(values: np.ndarray, present: np.ndarray) -> float:
    return float(values[present].sum() / np.count_nonzero(present)) if present.any() else math.nan


def panoptic_scores(stats: np.ndarray) -> PanopticScores:
    """Panopticapi's ``pq_average``: per category, then the mean over categories with segments.

    ``PQ_c = sum IoU / (TP + FP/2 + FN/2)``, ``SQ_c = sum IoU / TP`` (0 without TP),
    ``RQ_c = TP / (TP + FP/2 + FN/2)``.

    Args:
        stats: (K + 1, 4) summed statistics.

    Returns:
        The scores.
    """
    tp, fp, fn, iou = stats[:, TP], stats[:, FP], stats[:, FN], stats[:, IOU]
    present = tp + fp + fn > 0
    denominator = np.where(present, tp + 0.5 * fp + 0.5 * fn, 1.0)
    pq = np.where(present, iou / denominator, math.nan)
    sq = np.where(present, np.where(tp > 0, iou / np.where(tp > 0, tp, 1.0), 0.0), math.nan)
    rq = np.where(present, tp / denominator, math.nan)
    things = present.copy()
    things[0] = False

    def means(mask: np.ndarray) -> tuple[float, float, float]:
        return (_average(pq, mask), _average(sq, mask), _average(rq, mask))

    return PanopticScores(pq, sq, rq, means(things), means(present))

"""The gap accounting, part 3: what each fixed variant of one image adds to the statistics.

A variant is only computed for an image where its error occurs (elsewhere it is the image's
own predictions, so its statistics are the image's own). What is kept is just what the four
headline metrics need, never masks:

* semantic mIoU: the change of the painted instances' confusion matrix, summed over images
  (only pixels inside the boxes the fix touched can change, so only those are repainted);
* instance mIoU: the fixed per-object IoUs (when they differ);
* PQ: the image's fixed per-category statistics (the categories that differ);
* mask AP: the fixed detections of the classes the fix touched (ground truth is unchanged).

The variants are made and scored in one call to the compiled kernel (src/kernels/fixes.cpp
makes fixes.py's lists from the error assignment, src/kernels/accounting.cpp scores them).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ...data.masks import GroundTruth
from ...utils.native import kernels
from ..metrics.panoptic import GtPanoptic, PredPanoptic
from .assignment import ErrorAssignment
from .fixes import PredList

__all__ = ["ImageAccounting", "ImageContext", "account_image"]


@dataclass
class ImageContext:
    """What the accounting needs from the rest of one image's evaluation.

    Attributes:
        gt: the annotations (crowd regions included).
        regular: (G,) indices of the non-crowd annotations.
        gt_labels: (H, W) uint8 semantic ground truth.
        painted: (H, W) uint8 the kept predictions painted (the semantic view scored here).
        iou: (N, A) IoUs of all predictions with all annotations (pycocotools' rule).
        gt_iou: (G,) the image's per-object IoUs.
        pan_gt: ground-truth segments, None without PQ.
        pan_pred: the kept predictions' segments, None without PQ.
        pq: (K + 1, 4) the image's PQ statistics, None without PQ.
        num_classes: K.
        score_threshold: predictions below it are only scored by AP.
        iou_threshold: smallest IoU of a match.
        overlap_threshold: panoptic drop rule.
        confusion: (K + 1, K + 1) the painted predictions' confusion matrix of this image.
    """

    gt: GroundTruth
    regular: np.ndarray
    gt_labels: np.ndarray
    painted: np.ndarray
    iou: np.ndarray
    gt_iou: np.ndarray
    pan_gt: GtPanoptic | None
    pan_pred: PredPanoptic | None
    pq: np.ndarray | None
    num_classes: int
    score_threshold: float
    iou_threshold: float
    overlap_threshold: float
    confusion: np.ndarray | None = None


@dataclass
class ImageAccounting:
    """One image's accounting statistics, packed in a few arrays.

    Attributes:
        counts: (len(ERROR_TYPES),) int64 errors per row.
        variants: (V,) int8 the variants computed for this image (its errors; ``ALL``).
        iou_variants: (U,) int8 those whose per-object IoUs differ from the image's.
        gt_iou: (U, G) their fixed per-object IoUs.
        pq_rows: (R, 5) int32 ``variant, category, TP, FP, FN`` of the categories whose
            statistics a variant changes; ``pq_iou`` (R,) float64 their IoU sums.
        ap_groups: (Q, 4) int32 ``variant, class, detections, ground truth`` of every class a
            variant touched.
        ap_dets: (D, 2) float64 score and area of those detections.
        ap_ious: their IoUs with the image's ground truth of their class, flattened.
    """

    counts: np.ndarray
    variants: np.ndarray
    iou_variants: np.ndarray
    gt_iou: np.ndarray
    pq_rows: np.ndarray
    pq_iou: np.ndarray
    ap_groups: np.ndarray
    ap_dets: np.ndarray
    ap_ious: np.ndarray


def account_image(ctx: ImageContext, errors: ErrorAssignment, original: PredList,
                  keep: np.ndarray) -> tuple[ImageAccounting, dict[int, np.ndarray]]:
    """Every variant of the image whose error occurs in it.

    One call to the compiled kernel makes every fix from the error assignment (the lists
    :func:`.fixes.fix_one` and :func:`.fixes.fix_all` make, and the low-score variant: the kept
    predictions alone) and rescores each: the fixed list's IoUs (rows of unchanged masks and of
    objects' copies reused), its AP records of the touched classes, and, when its kept
    predictions are not the image's own, its per-object IoUs (matching only the touched
    classes), the painted confusion's change (only windows around the touched boxes repainted;
    for "all fixes together" the diagonal of the ground truth's label counts) and its PQ
    statistics.

    Args:
        ctx: the image's evaluation.
        errors: its error assignment.
        original: all its predictions.
        keep: list indices of the kept predictions.

    Returns:
        The packed statistics and, per variant, the confusion-matrix change (only the variants
        that change it).
    """
    gt = ctx.gt
    with_pq = ctx.pan_gt is not None and ctx.pan_pred is not None and ctx.pq is not None
    # the kept predictions' own segments go too: a variant reuses those of its unchanged
    # predictions that no change ranked above them touches
    pan = ((ctx.pan_gt.labels, ctx.pan_gt.categories, ctx.pan_gt.crowd, ctx.pan_gt.areas,
            ctx.pan_gt.crowd_classes, ctx.pan_pred.kept, ctx.pan_pred.areas, ctx.pan_pred.hist,
            original.masks.boxes[keep]) if with_pq else None)
    m = original.masks
    (variants, iou_variants, gt_iou, pq_rows, pq_iou, ap_groups, ap_dets, ap_ious,
     confusions) = kernels.account_fixes(
        gt.masks.boxes, gt.masks.crops, gt.masks.areas, gt.classes, gt.crowd,
        np.asarray(ctx.regular, np.int64), ctx.iou, ctx.gt_iou, ctx.gt_labels, ctx.painted,
        ctx.confusion, pan, ctx.pq if with_pq else None, keep, ctx.num_classes,
        float(ctx.score_threshold), float(ctx.iou_threshold), float(ctx.overlap_threshold),
        (m.boxes, m.crops, m.areas, original.classes, original.scores, original.ap_areas),
        (errors.counts, errors.pred_type, errors.pred_target, errors.pred_fix_removes,
         errors.merged_objects, errors.split_objects, errors.split_pieces, errors.gt_missed,
         errors.pred_match))
    record = ImageAccounting(
        counts=errors.counts.astype(np.int64),
        variants=variants,
        iou_variants=iou_variants,
        gt_iou=gt_iou,
        pq_rows=pq_rows,
        pq_iou=pq_iou,
        ap_groups=ap_groups,
        ap_dets=ap_dets,
        ap_ious=ap_ious,
    )
    return record, confusions

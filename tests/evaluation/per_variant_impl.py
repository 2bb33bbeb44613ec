"""The gap accounting's per-variant implementation, as it was before the one-call kernel.

One kernel call per step of each variant (:func:`variant_stats`), the fixed lists' IoUs by
:class:`ListIou`, then :func:`account_image` packs the variants. ``kernels.account_variants``
must give exactly its records (tests/evaluation/test_accounting_kernel.py). Kept as it was
written, with only the imports it needs.
"""



from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from segcontrast.data.masks import MaskCrops, pairwise_intersections
from segcontrast.evaluation.accounting.assignment import ALL, LOW_SCORE, ErrorAssignment
from segcontrast.evaluation.accounting.fixes import PredList, fix_all, fix_one
from segcontrast.evaluation.accounting.image_variants import ImageAccounting, ImageContext
from segcontrast.evaluation.metrics.instance import class_match, iou_matrix
from segcontrast.evaluation.metrics.panoptic import panoptic_stats, pred_segments
from segcontrast.utils.native import kernels


class ListIou:
    """IoUs of prediction lists with an image's annotations (pycocotools' rule).

    Rows of entries with an original prediction's mask or an object's mask are reused, not
    recomputed.

    Args:
        iou: (N, A) the original predictions' IoUs with all annotations.
        gt: all annotation masks.
        crowd: (A,) crowd flags.
        regular: (G,) the non-crowd annotations.
    """

    def __init__(self, iou: np.ndarray, gt: MaskCrops, crowd: np.ndarray,
                 regular: np.ndarray) -> None:
        self.iou, self.gt, self.crowd, self.regular = iou, gt, crowd, regular
        self._gt_rows: np.ndarray | None = None

    def _rows(self, masks: MaskCrops) -> np.ndarray:
        inter = pairwise_intersections(masks, self.gt)
        return iou_matrix(inter, masks.areas, self.gt.areas, self.crowd)

    def __call__(self, pred: PredList) -> np.ndarray:
        """(M, A) IoUs of the list's entries."""
        out = np.zeros((len(pred.masks), len(self.crowd)), np.float64)
        own = pred.mask_source >= 0
        out[own] = self.iou[pred.mask_source[own]]
        copy = pred.gt_copy >= 0
        if copy.any():
            if self._gt_rows is None:
                self._gt_rows = self._rows(self.gt.subset(self.regular))
            out[copy] = self._gt_rows[pred.gt_copy[copy]]
        other = np.flatnonzero(~own & ~copy)
        if other.size:
            out[other] = self._rows(pred.masks.subset(other))
        return out


@dataclass
class VariantStats:
    """One fixed variant of one image.

    Attributes:
        confusion_delta: (K + 1, K + 1) int64 change of the painted confusion matrix.
        gt_iou: (G,) fixed per-object IoUs.
        pq: (K + 1, 4) fixed PQ statistics, or None.
        ap_groups: (Q, 3) ``class, detections, ground truth`` of each class the fix touched.
        ap_dets: (D, 2) those detections' scores and areas, per class in COCO's order
            (decreasing score, stable, at most 100), as :meth:`ApImage.build` keeps them.
        ap_ious: their (D_q, G_q) IoUs with the class's ground truth, flattened per class.
    """

    confusion_delta: np.ndarray
    gt_iou: np.ndarray
    pq: np.ndarray | None
    ap_groups: np.ndarray
    ap_dets: np.ndarray
    ap_ious: np.ndarray


def _ap_patch(classes: np.ndarray, scores: np.ndarray, ap_areas: np.ndarray, iou: np.ndarray,
              gt_classes: np.ndarray,
              touched: list[int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The AP records of the touched classes, exactly as :meth:`ApImage.build` groups them.

    ``classes``, ``scores``, ``ap_areas`` and ``iou`` (rows) are the fixed list's;
    ``gt_classes`` the classes of all the image's annotations (crowd regions included).
    """
    if not touched:
        return np.zeros((0, 3), np.int64), np.zeros((0, 2)), np.zeros(0)
    return kernels.ap_patch(classes, scores, ap_areas, iou, gt_classes,
                            np.asarray(touched, np.int64))


def _confusion_delta(ctx: ImageContext, kept: MaskCrops, classes: np.ndarray,
                     scores: np.ndarray, touched: np.ndarray) -> np.ndarray:
    """Change of the painted confusion matrix: repaint only windows around touched masks.

    The painting is :func:`.semantic.paint_semantic_from_crops`' (ascending score, later wins
    on ties), restricted to disjoint windows covering the touched boxes (the kernel merges
    overlapping boxes until none overlap).
    """
    num_labels = ctx.num_classes + 1
    return kernels.window_confusion_delta(
        ctx.gt_labels, ctx.painted, kept.boxes, kept.crops, kept.areas,
        (classes + 1).astype(np.uint8), np.argsort(scores, kind="stable"),
        np.ascontiguousarray(touched, np.int64).reshape(-1, 4), num_labels)


def variant_stats(ctx: ImageContext, fixed: PredList, keep: np.ndarray,
                  iou: np.ndarray,
                  exact_copies: bool = False) -> VariantStats:
    """Recompute what the headline metrics need for one fixed variant of the image.

    Args:
        ctx: the image's evaluation.
        fixed: the fixed predictions (all of them).
        keep: list indices of the image's own kept predictions.
        iou: (M, A) the fixed predictions' IoUs with all annotations.
        exact_copies: the kept predictions are one exact copy of every non-crowd object with
            pixels and nothing else ("all fixes together"). Then every pixel that is not ignored
            is painted with its ground-truth label (an object pixel of one class by a copy of
            that class, every other pixel by none), so the painted confusion matrix is the
            diagonal of the image's ground-truth label counts, and every object with pixels is
            matched with IoU 1: both follow without repainting or matching.

    Returns:
        The variant's statistics.
    """
    gt = ctx.gt
    num_labels = ctx.num_classes + 1
    touched = sorted(fixed.touched_classes)
    ap = _ap_patch(fixed.classes, fixed.scores, fixed.ap_areas, iou, gt.classes, touched)

    kept = np.flatnonzero(fixed.scores >= ctx.score_threshold)
    if len(kept) == len(keep) and np.array_equal(fixed.source[kept], keep):
        # the kept predictions are the image's own: only AP can change
        return VariantStats(np.zeros((num_labels, num_labels), np.int64), ctx.gt_iou,
                            ctx.pq, *ap)
    masks = fixed.masks.subset(kept)
    classes, scores = fixed.classes[kept], fixed.scores[kept]
    if exact_copies and ctx.confusion is not None and len(kept) == len(fixed.masks):
        gt_iou = (gt.masks.areas[ctx.regular] > 0).astype(np.float64)
        confusion = np.diag(ctx.confusion.sum(axis=1)) - ctx.confusion
        return VariantStats(confusion, gt_iou, _panoptic(ctx, fixed, keep, kept, masks, scores,
                                                         classes), *ap)
    # matching is per class: only the touched classes can change
    gt_classes = gt.classes[ctx.regular]
    is_touched = np.zeros(ctx.num_classes, bool)
    is_touched[touched] = True
    gi = np.flatnonzero(is_touched[gt_classes])
    pi = np.flatnonzero(is_touched[classes])
    pair = iou[kept[pi][:, None], ctx.regular[gi]]
    r, col = class_match(pair, classes[pi], gt_classes[gi], ctx.iou_threshold)
    gt_iou = ctx.gt_iou.copy()
    gt_iou[gi] = 0.0
    gt_iou[gi[col]] = pair[r, col]
    confusion = _confusion_delta(ctx, masks, classes, scores, fixed.touched_boxes)
    return VariantStats(confusion, gt_iou,
                        _panoptic(ctx, fixed, keep, kept, masks, scores, classes), *ap)


def _panoptic(ctx: ImageContext, fixed: PredList, keep: np.ndarray, kept: np.ndarray,
              masks: MaskCrops, scores: np.ndarray, classes: np.ndarray) -> np.ndarray | None:
    """The variant's PQ statistics (its kept predictions' segments made afresh)."""
    if ctx.pan_gt is None or ctx.pan_pred is None:
        return None
    segments = pred_segments(masks, scores, ctx.pan_gt, ctx.overlap_threshold, with_crops=False,
                             gt_copy=fixed.gt_copy[kept])
    return panoptic_stats(classes + 1, segments, ctx.pan_gt, ctx.num_classes + 1)


def _fixed_stats(ctx: ImageContext, row: int, errors: ErrorAssignment, original: PredList,
                 keep: np.ndarray, gt_reg: MaskCrops, gt_classes: np.ndarray,
                 list_iou: ListIou) -> VariantStats:
    """One variant's statistics: its fix applied to the predictions, then rescored."""
    if row == ALL:
        fixed = fix_all(errors, original, keep, gt_reg, gt_classes)
    else:
        fixed = fix_one(row, errors, original, keep, gt_reg, gt_classes)
    return variant_stats(ctx, fixed, keep, list_iou(fixed), exact_copies=row == ALL)


def _low_score_stats(ctx: ImageContext, original: PredList, keep: np.ndarray) -> VariantStats:
    """The low-score variant: the kept predictions alone, so only AP can change.

    What :func:`variant_stats` gives for ``fix_one(LOW_SCORE, ...)`` (the list without the
    predictions below the score threshold, in their order), without building that list.
    """
    below = np.ones(len(original.scores), bool)
    below[keep] = False
    touched = np.unique(original.classes[below]).tolist()
    ap = _ap_patch(original.classes[keep], original.scores[keep], original.ap_areas[keep],
                   ctx.iou[keep], ctx.gt.classes, touched)
    num_labels = ctx.num_classes + 1
    return VariantStats(np.zeros((num_labels, num_labels), np.int64), ctx.gt_iou, ctx.pq, *ap)


def account_image(ctx: ImageContext, errors: ErrorAssignment, original: PredList,
                  keep: np.ndarray) -> tuple[ImageAccounting, dict[int, np.ndarray]]:
    """Every variant of the image whose error occurs in it.

    Args:
        ctx: the image's evaluation.
        errors: its error assignment.
        original: all its predictions.
        keep: list indices of the kept predictions.

    Returns:
        The packed statistics and, per variant, the confusion-matrix change.
    """
    gt_reg = ctx.gt.masks.subset(ctx.regular)
    gt_classes = ctx.gt.classes[ctx.regular]
    list_iou = ListIou(ctx.iou, ctx.gt.masks, ctx.gt.crowd, ctx.regular)
    rows = [int(r) for r in np.flatnonzero(errors.counts > 0)]
    if rows:
        rows.append(ALL)
    iou_variants, gt_ious, pq_parts, groups, dets, ious = [], [], [], [], [], []
    confusions: dict[int, np.ndarray] = {}
    for row in rows:
        if row == LOW_SCORE:
            stats = _low_score_stats(ctx, original, keep)
        else:
            stats = _fixed_stats(ctx, row, errors, original, keep, gt_reg, gt_classes, list_iou)
        if stats.confusion_delta.any():
            confusions[row] = stats.confusion_delta
        if stats.gt_iou is not ctx.gt_iou and not np.array_equal(stats.gt_iou, ctx.gt_iou):
            iou_variants.append(row)
            gt_ious.append(stats.gt_iou)
        if stats.pq is not None and ctx.pq is not None and stats.pq is not ctx.pq:
            differs = np.flatnonzero((stats.pq != ctx.pq).any(axis=1))
            if differs.size:
                pq_parts.append((row, differs, stats.pq[differs]))
        groups.append(stats.ap_groups)
        dets.append(stats.ap_dets)
        ious.append(stats.ap_ious)
    g = len(ctx.regular)
    if pq_parts:
        pq_index = np.concatenate([np.stack([np.full(len(c), row), c], axis=1)
                                   for row, c, _ in pq_parts])
        pq_values = np.concatenate([values for _, _, values in pq_parts])
    else:
        pq_index, pq_values = np.zeros((0, 2), np.int64), np.zeros((0, 4))
    if groups:
        group_rows = np.repeat(np.array(rows, np.int64), [len(q) for q in groups])
        ap_groups = np.concatenate([group_rows[:, None], np.concatenate(groups)], axis=1)
    else:
        ap_groups = np.zeros((0, 4))
    record = ImageAccounting(
        counts=errors.counts.astype(np.int64),
        variants=np.array(rows, np.int8),
        iou_variants=np.array(iou_variants, np.int8),
        gt_iou=(np.stack(gt_ious) if gt_ious else np.zeros((0, g))).astype(np.float64),
        pq_rows=np.concatenate([pq_index, pq_values[:, :3]], axis=1).astype(np.int32),
        pq_iou=pq_values[:, 3].astype(np.float64),
        ap_groups=ap_groups.astype(np.int32),
        ap_dets=(np.concatenate(dets) if dets else np.zeros((0, 2))).astype(np.float64),
        ap_ious=(np.concatenate(ious) if ious else np.zeros(0)).astype(np.float64),
    )
    return record, confusions

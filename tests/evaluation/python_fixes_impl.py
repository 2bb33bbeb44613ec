"""The gap accounting of one image as it was before its fixes were made in the kernel.

Each fixed list is made in Python (:func:`.fixes.fix_one`, :func:`.fixes.fix_all`, the
low-score variant: the kept predictions alone), then ``kernels.account_variants`` scores all of
them in one call. ``image_variants.account_image``, whose kernel makes the lists itself, must
give exactly its records (tests/evaluation/test_kernel_fixes.py). Kept as it was written.
"""

from __future__ import annotations

import numpy as np
from segcontrast.evaluation.accounting.assignment import ALL, LOW_SCORE, ErrorAssignment
from segcontrast.evaluation.accounting.fixes import PredList, fix_all, fix_one
from segcontrast.evaluation.accounting.image_variants import ImageAccounting, ImageContext
from segcontrast.utils.native import kernels


def _variant(row: int, fixed: PredList) -> tuple:
    """A fixed list as the kernel reads it."""
    m = fixed.masks
    return (row, row == ALL, m.boxes, m.crops, m.areas, fixed.classes, fixed.scores,
            fixed.ap_areas, fixed.source, fixed.mask_source, fixed.gt_copy,
            np.array(sorted(fixed.touched_classes), np.int64), fixed.touched_boxes)


def _low_score_variant(original: PredList, keep: np.ndarray) -> tuple:
    """The low-score fix: the kept predictions alone, in their order (only AP can change)."""
    below = np.ones(len(original.scores), bool)
    below[keep] = False
    touched = np.unique(original.classes[below]).astype(np.int64)
    m = original.masks.subset(keep)
    return (LOW_SCORE, False, m.boxes, m.crops, m.areas, original.classes[keep],
            original.scores[keep], original.ap_areas[keep], original.source[keep],
            original.mask_source[keep], original.gt_copy[keep], touched, np.zeros((0, 4), np.int64))


def variants(ctx: ImageContext, errors: ErrorAssignment, original: PredList,
             keep: np.ndarray) -> list[tuple]:
    """The image's fixed lists in the order they are scored, as the kernel reads them."""
    gt = ctx.gt
    regular = np.asarray(ctx.regular, np.int64)
    gt_reg = gt.masks.subset(regular)
    gt_classes = gt.classes[regular]
    rows = [int(r) for r in np.flatnonzero(errors.counts > 0)]
    if rows:
        rows.append(ALL)
    made = []
    for row in rows:
        if row == LOW_SCORE:
            made.append(_low_score_variant(original, keep))
        elif row == ALL:
            made.append(_variant(row, fix_all(errors, original, keep, gt_reg, gt_classes)))
        else:
            made.append(_variant(row, fix_one(row, errors, original, keep, gt_reg, gt_classes)))
    return made


def account_image(ctx: ImageContext, errors: ErrorAssignment, original: PredList,
                  keep: np.ndarray) -> tuple[ImageAccounting, dict[int, np.ndarray]]:
    """Every variant of the image whose error occurs in it, made in Python, scored in C++."""
    gt = ctx.gt
    regular = np.asarray(ctx.regular, np.int64)
    made = variants(ctx, errors, original, keep)
    with_pq = ctx.pan_gt is not None and ctx.pan_pred is not None and ctx.pq is not None
    pan = ((ctx.pan_gt.labels, ctx.pan_gt.categories, ctx.pan_gt.crowd, ctx.pan_gt.areas,
            ctx.pan_gt.crowd_classes, ctx.pan_pred.kept, ctx.pan_pred.areas, ctx.pan_pred.hist,
            original.masks.boxes[keep]) if with_pq else None)
    (iou_variants, gt_iou, pq_rows, pq_iou, ap_groups, ap_dets, ap_ious,
     confusions) = kernels.account_variants(
        gt.masks.boxes, gt.masks.crops, gt.masks.areas, gt.classes, gt.crowd, regular,
        ctx.iou, ctx.gt_iou, ctx.gt_labels, ctx.painted, ctx.confusion, pan,
        ctx.pq if with_pq else None, keep, ctx.num_classes, float(ctx.score_threshold),
        float(ctx.iou_threshold), float(ctx.overlap_threshold), made)
    record = ImageAccounting(
        counts=errors.counts.astype(np.int64),
        variants=np.array([v[0] for v in made], np.int8),
        iou_variants=iou_variants,
        gt_iou=gt_iou,
        pq_rows=pq_rows,
        pq_iou=pq_iou,
        ap_groups=ap_groups,
        ap_dets=ap_dets,
        ap_ious=ap_ious,
    )
    return record, dict(confusions)

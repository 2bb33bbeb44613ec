"""The error assignment as it was written in numpy, before the compiled kernel made it.

``accounting.assignment.assign_errors`` (``kernels.assign_errors``) must give exactly its
assignment (tests/evaluation/test_kernel_assignment.py). Kept as it was written.
"""

from __future__ import annotations

import numpy as np
from segcontrast.evaluation.accounting.assignment import (
    BACKGROUND,
    CONFUSION,
    DUPLICATE,
    ERROR_TYPES,
    IN_CROWD,
    LOCALISATION,
    LOCALISATION_IOU,
    LOW_SCORE,
    MASK_QUALITY,
    MERGED,
    MISSED,
    SPLIT,
    ErrorAssignment,
)
from segcontrast.evaluation.metrics.instance import InstanceMatch
from segcontrast.evaluation.metrics.panoptic import rank_order


def _first_per_target(index: np.ndarray, targets: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """Of the predictions ``index`` aiming at ``targets``, the highest-ranked one per target."""
    order = index[rank_order(scores[index])]
    _, first = np.unique(targets[order], return_index=True)
    keep = np.zeros(len(scores), bool)
    keep[order[first]] = True
    return keep


def assign_errors(
    pred_classes: np.ndarray,
    pred_areas: np.ndarray,
    pred_scores: np.ndarray,
    gt_classes: np.ndarray,
    gt_areas: np.ndarray,
    inter: np.ndarray,
    iou: np.ndarray,
    match: InstanceMatch,
    iou_threshold: float,
    num_low_score: int,
) -> ErrorAssignment:
    """Give every error of one image its row (module docstring).

    Args:
        pred_classes: (N,) classes of the kept predictions.
        pred_areas: (N,) their areas.
        pred_scores: (N,) their scores.
        gt_classes: (G,) classes of the non-crowd objects.
        gt_areas: (G,) their areas.
        inter: (N, G) intersections.
        iou: (N, G) IoUs.
        match: the instance side's matching of these.
        iou_threshold: smallest IoU of a match.
        num_low_score: predictions below the score threshold.

    Returns:
        The assignment.
    """
    n, g = inter.shape
    same = pred_classes[:, None] == gt_classes[None, :]
    matched_gt = np.zeros(g, bool)
    matched_gt[match.gt_index] = True
    gt_of_pred = np.full(n, -1, np.int64)
    gt_of_pred[match.pred_index] = match.gt_index
    duplicate_flag = (match.pred_duplicate if match.pred_duplicate is not None
                      else np.zeros(n, bool))
    kind = np.full(n, -1, np.int64)
    target = np.full(n, -1, np.int64)

    ignored = match.pred_ignored
    covers = (2 * inter > gt_areas[None, :]) & same & (inter > 0)
    merged = (covers.sum(axis=1) >= 2) & ~ignored
    kind[merged] = MERGED
    merged_objects = [np.flatnonzero(covers[i]) if merged[i] else np.zeros(0, np.int64)
                      for i in range(n)]

    inside = (2 * inter > pred_areas[:, None]) & same & (inter > 0)
    inside &= ~(duplicate_flag | merged | ignored)[:, None]
    has_owner = inside.any(axis=1)
    owner = np.full(n, -1, np.int64)
    if g:
        owner[has_owner] = np.argmax(np.where(inside, inter, -1), axis=1)[has_owner]
    pieces_of = np.bincount(owner[has_owner], minlength=g)
    split_objects = np.flatnonzero(pieces_of >= 2)
    split_pieces = [np.flatnonzero(owner == s) for s in split_objects]
    for pieces in split_pieces:
        kind[pieces] = SPLIT

    false_pos = ~match.pred_matched & ~ignored & (kind < 0)
    on_matched = ((iou >= iou_threshold) & same & matched_gt[None, :]).any(axis=1)
    duplicate = false_pos & (duplicate_flag | on_matched)
    kind[duplicate] = DUPLICATE

    other = np.where(same, 0.0, iou)
    own = np.where(same, iou, 0.0)
    if g:
        confused = false_pos & ~duplicate & (other.max(axis=1) >= iou_threshold)
        target[confused] = np.argmax(other, axis=1)[confused]
        kind[confused] = CONFUSION
        localised = false_pos & (kind < 0) & (own.max(axis=1) >= LOCALISATION_IOU)
        target[localised] = np.argmax(own, axis=1)[localised]
        kind[localised] = LOCALISATION
    fix_removes = np.zeros(n, bool)
    explained = np.zeros(g, bool)
    for row in (CONFUSION, LOCALISATION):
        index = np.flatnonzero(kind == row)
        if index.size:
            aims = target[index]
            takes = _first_per_target(index, target, pred_scores) & ~matched_gt[
                np.maximum(target, 0)
            ]
            fix_removes[index] = ~takes[index]
            explained[aims[takes[index]]] = True

    quality = match.pred_matched & (kind < 0)
    quality[quality] = iou[np.flatnonzero(quality), gt_of_pred[quality]] < 1.0
    kind[quality] = MASK_QUALITY
    target[quality] = gt_of_pred[quality]
    kind[false_pos & (kind < 0)] = BACKGROUND
    kind[ignored] = IN_CROWD

    if merged.any():
        explained |= covers[merged].any(axis=0)
    explained[split_objects] = True
    gt_missed = ~matched_gt & ~explained
    counts = np.bincount(kind[kind >= 0], minlength=len(ERROR_TYPES)).astype(np.int64)
    counts[SPLIT] = len(split_objects)
    counts[MISSED] = int(np.count_nonzero(gt_missed))
    counts[LOW_SCORE] = num_low_score
    return ErrorAssignment(kind, target, fix_removes, merged_objects, split_objects,
                           split_pieces, gt_missed, counts, gt_of_pred)



"""The gap accounting, part 1: which error each prediction and object is.

Within one image, with the instance side's matching (per class, Hungarian, IoU >=
``iou_threshold``) of the predictions kept by the score threshold. Each error gets exactly one
type, the first row that applies (docs/EVALUATION.md has the table and worked examples):

1. merged: a prediction covering more than half of each of >= 2 objects of its class.
   Fix: replace it by its intersection with each of them.
2. split: an object holding more than half of each of >= 2 predictions of its class that are
   not duplicates (a prediction is the piece of the object holding most of it). Fix: replace
   the pieces by their union, with the highest score, where the highest-ranked piece was.
3. duplicate: a false positive with IoU >= threshold with a matched prediction of its class
   (the matching's duplicate flag) or with a matched object of its class. Fix: remove it.
4. class confusion: a false positive with IoU >= threshold with an object of another class.
   Fix: give it that object's class (the object of highest IoU); removed instead when that
   object is matched already or a higher-ranked confusion takes it (it would be a duplicate).
5. localisation: a false positive whose best IoU with an object of its class is >= 0.1 (and
   so below the threshold). Fix: replace its mask by that object's; removed instead on the
   same conditions as 4.
6. mask quality: a matched prediction with IoU < 1. Fix: replace its mask by its object's.
7. missed: an object without a match that no row above explains (covered by a merged
   prediction, split, or the target of a fixed confusion or localisation). Fix: add it as a
   prediction of score 1.
8. background: any other false positive (IoU < 0.1 with every object of its class, < threshold
   with every other). Fix: remove it.
9. in crowd: a prediction ignored in a crowd region of its class. Fix: remove it. The matching
   leaves such a prediction out, so it is never merged or a split piece: every prediction the
   matching ignores is ``in_crowd``.
10. low score: a prediction below the score threshold (only AP sees it). Fix: remove it.

Every kept prediction gets one row, or none when it is matched with IoU 1; every object is
matched, split, explained by a prediction's row (covered by a merged prediction, the target of
a fixed confusion or localisation) or missed. Every count the report prints comes from this
one assignment (:meth:`ErrorAssignment.outcome_counts`).

"All fixes together" fixes every error at once: one exact copy of each object, in the place of
the prediction whose fix produces it, nothing else. The fixes themselves are in :mod:`.fixes`
(and, for the accounting, made alike in the compiled kernel); the types' names, nouns and
meanings in :mod:`..catalog`. The kernel numbers the rows in this order too.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..catalog import ERROR_TYPES
from ..metrics.instance import InstanceMatch
from ..metrics.panoptic import rank_order

__all__ = ["ALL", "ERROR_TYPES", "LOCALISATION_IOU", "ErrorAssignment", "assign_errors"]

(MERGED, SPLIT, DUPLICATE, CONFUSION, LOCALISATION, MASK_QUALITY, MISSED, BACKGROUND,
 IN_CROWD, LOW_SCORE) = range(len(ERROR_TYPES))
ALL = len(ERROR_TYPES)  # the variant index of "all fixes together"
# TIDE's background threshold: below this IoU with every object of its class, a false
# positive is not a badly placed detection of one.
LOCALISATION_IOU = 0.1


@dataclass
class ErrorAssignment:
    """Error types of one image (kept predictions and non-crowd objects).

    Attributes:
        pred_type: (N,) the row of each kept prediction (index into ``ERROR_TYPES``), -1 for
            a correct one (matched with IoU 1).
        pred_target: (N,) the object a confusion, localisation or mask-quality fix uses, -1
            otherwise.
        pred_fix_removes: (N,) bool, a confusion or localisation whose fix removes it.
        merged_objects: per kept prediction the objects a merged one covers (else empty).
        split_objects: (S,) the split objects; ``split_pieces[s]`` their pieces.
        split_pieces: per split object its predictions.
        gt_missed: (G,) bool.
        counts: (len(ERROR_TYPES),) errors per row (predictions; objects for split and
            missed; ``low_score`` counts the predictions below the score threshold).
        pred_match: (N,) the object each kept prediction is matched to, -1.
    """

    pred_type: np.ndarray
    pred_target: np.ndarray
    pred_fix_removes: np.ndarray
    merged_objects: list[np.ndarray]
    split_objects: np.ndarray
    split_pieces: list[np.ndarray]
    gt_missed: np.ndarray
    counts: np.ndarray
    pred_match: np.ndarray

    def outcome_counts(self, num_crowd: int = 0) -> dict[str, int]:
        """The image's counts: sizes, matched pairs, false positives, and each row's count.

        Args:
            num_crowd: the image's crowd regions (only reported).

        Returns:
            ``n_gt, n_crowd, n_pred, matched, false_positives`` and one entry per error type
            (``ERROR_TYPES``), all from this assignment.
        """
        unmatched = int(np.count_nonzero(self.pred_match < 0))
        counts = {
            "n_gt": int(len(self.gt_missed)),
            "n_crowd": int(num_crowd),
            "n_pred": int(len(self.pred_type)),
            "matched": int(len(self.pred_type)) - unmatched,
            # every ignored prediction is in_crowd (module docstring)
            "false_positives": unmatched - int(self.counts[IN_CROWD]),
        }
        counts.update(zip(ERROR_TYPES, np.asarray(self.counts, np.int64).tolist(), strict=True))
        return counts


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



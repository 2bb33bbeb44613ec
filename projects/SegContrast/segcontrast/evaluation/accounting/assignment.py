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
meanings in :mod:`..catalog`.

The assignment is made by the compiled kernel (src/kernels/assignment.cpp), which numbers the
rows in this order too (as do its fixes, src/kernels/fixes.hpp).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ...utils.native import kernels
from ..catalog import ERROR_TYPES
from ..metrics.instance import InstanceMatch

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
    """Give every error of one image its row (module docstring), in the compiled kernel.

    Args:
        pred_classes: (N,) classes of the kept predictions.
        pred_areas: (N,) their areas.
        pred_scores: (N,) their scores.
        gt_classes: (G,) classes of the non-crowd objects.
        gt_areas: (G,) their areas.
        inter: (N, G) int64 intersections.
        iou: (N, G) IoUs.
        match: the instance side's matching of these.
        iou_threshold: smallest IoU of a match.
        num_low_score: predictions below the score threshold.

    Returns:
        The assignment.
    """
    return ErrorAssignment(*kernels.assign_errors(
        pred_classes, pred_areas, pred_scores, gt_classes, gt_areas, inter, iou,
        match.pred_index, match.gt_index, match.pred_duplicate, match.pred_ignored,
        match.pred_matched, float(iou_threshold), LOCALISATION_IOU, int(num_low_score)))

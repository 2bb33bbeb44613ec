"""The gap accounting, part 2: the oracle's fixes, as new prediction lists.

One row's fix changes only that row's predictions (:func:`fix_one`); the others keep their
masks, classes, scores and order. "All fixes together" (:func:`fix_all`) leaves one exact copy
of every object. Rules and tie-breaks: :mod:`.assignment` and docs/EVALUATION.md.

The accounting does not call these: its compiled kernel makes the same lists from the error
assignment (src/kernels/fixes.cpp, called by :func:`.image_variants.account_image`). Here they
are the oracle's predictions (``image_eval.oracle_predictions``) and the reference the
kernel's lists are tested against.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from ...data.masks import MaskCrops
from ..metrics.panoptic import rank_order
from .assignment import (
    BACKGROUND,
    CONFUSION,
    DUPLICATE,
    IN_CROWD,
    LOCALISATION,
    LOW_SCORE,
    MASK_QUALITY,
    MERGED,
    MISSED,
    SPLIT,
    ErrorAssignment,
)

__all__ = ["ADDED_SCORE", "PredList", "fix_all", "fix_one"]

# an object the oracle adds is a sure detection
ADDED_SCORE = 1.0


@dataclass
class PredList:
    """Predictions of one image as an ordered list (the order breaks score ties).

    Attributes:
        masks: the masks.
        classes: (M,) classes.
        scores: (M,) scores.
        ap_areas: (M,) areas for COCO's area ranges.
        source: (M,) index of the original prediction an entry is identical to, -1 for a
            new or changed one.
        mask_source: (M,) index of the original prediction whose mask an entry has, -1.
        gt_copy: (M,) index of the non-crowd object whose mask an entry has, -1.
        touched_classes: classes whose predictions a fix changed (before or after).
        touched_boxes: (B, 4) boxes of the masks a fix removed or added.
    """

    masks: MaskCrops
    classes: np.ndarray
    scores: np.ndarray
    ap_areas: np.ndarray
    source: np.ndarray
    mask_source: np.ndarray
    gt_copy: np.ndarray
    touched_classes: set[int] = field(default_factory=set)
    touched_boxes: np.ndarray = field(default_factory=lambda: np.zeros((0, 4), np.int64))
    # the per-entry numbers packed for _apply (made on first use; the arrays are not changed
    # after a list is made)
    _columns: tuple[np.ndarray, np.ndarray] | None = field(default=None, repr=False,
                                                           compare=False)

    @classmethod
    def original(cls, masks: MaskCrops, classes: np.ndarray, scores: np.ndarray,
                 ap_areas: np.ndarray) -> PredList:
        """The model's predictions, unchanged."""
        n = len(masks)
        return cls(masks, np.asarray(classes, np.int64), np.asarray(scores, np.float64),
                   np.asarray(ap_areas, np.float64), np.arange(n), np.arange(n),
                   np.full(n, -1, np.int64))


@dataclass
class _New:
    box: np.ndarray
    crop: np.ndarray
    area: int
    cls: int
    score: float
    mask_source: int = -1
    gt_copy: int = -1


def _tight(crop: np.ndarray, x0: int, y0: int) -> tuple[np.ndarray, np.ndarray]:
    rows = np.flatnonzero(crop.any(axis=1))
    if rows.size == 0:
        return np.zeros(4, np.int64), np.zeros((0, 0), bool)
    cols = np.flatnonzero(crop.any(axis=0))
    r0, r1, c0, c1 = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
    box = np.array([x0 + c0, y0 + r0, x0 + c1, y0 + r1], np.int64)
    return box, np.ascontiguousarray(crop[r0:r1, c0:c1])


def _intersection(a: MaskCrops, i: int, b: MaskCrops, j: int) -> tuple[np.ndarray, np.ndarray]:
    ba, bb = a.boxes[i], b.boxes[j]
    x0, y0 = max(ba[0], bb[0]), max(ba[1], bb[1])
    x1, y1 = min(ba[2], bb[2]), min(ba[3], bb[3])
    if x1 <= x0 or y1 <= y0:
        return np.zeros(4, np.int64), np.zeros((0, 0), bool)
    ca = a.crops[i][y0 - ba[1] : y1 - ba[1], x0 - ba[0] : x1 - ba[0]]
    cb = b.crops[j][y0 - bb[1] : y1 - bb[1], x0 - bb[0] : x1 - bb[0]]
    return _tight(ca & cb, int(x0), int(y0))


def _union(masks: MaskCrops, index: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    boxes = masks.boxes[list(index)]
    boxes = boxes[masks.areas[list(index)] > 0]
    if len(boxes) == 0:
        return np.zeros(4, np.int64), np.zeros((0, 0), bool)
    x0, y0 = boxes[:, 0].min(), boxes[:, 1].min()
    x1, y1 = boxes[:, 2].max(), boxes[:, 3].max()
    canvas = np.zeros((y1 - y0, x1 - x0), bool)
    for i in index:
        if masks.areas[i]:
            bx = masks.boxes[i]
            canvas[bx[1] - y0 : bx[3] - y0, bx[0] - x0 : bx[2] - x0] |= masks.crops[i]
    return _tight(canvas, int(x0), int(y0))


def _new(box: np.ndarray, crop: np.ndarray, cls: int, score: float) -> _New:
    return _New(box, crop, int(np.count_nonzero(crop)), int(cls), float(score))


def _copy_of(gt: MaskCrops, j: int, cls: int, score: float) -> _New:
    return _New(gt.boxes[j], gt.crops[j], int(gt.areas[j]), int(cls), float(score), gt_copy=j)


@dataclass
class _Ops:
    """Changes to a prediction list: removals, replacements (in place) and additions."""

    remove: set[int] = field(default_factory=set)
    replace: dict[int, list[_New]] = field(default_factory=dict)
    add: list[_New] = field(default_factory=list)

    def update(self, other: _Ops) -> None:
        self.remove |= other.remove
        self.replace.update(other.replace)
        self.add += other.add


def _columns(pred: PredList) -> tuple[np.ndarray, np.ndarray]:
    """The list's per-entry numbers as two tables, made once per list.

    The original list is the base of every variant of its image, so its tables are reused.

    Returns:
        (9, M) int64 ``x0, y0, x1, y1, area, class, source, mask_source, gt_copy`` and
        (2, M) float64 ``score, ap_area``.
    """
    if pred._columns is None:
        ints = np.concatenate([pred.masks.boxes.reshape(-1, 4).T.astype(np.int64),
                               np.stack([pred.masks.areas, pred.classes, pred.source,
                                         pred.mask_source, pred.gt_copy]).astype(np.int64)])
        floats = np.stack([pred.scores, pred.ap_areas]).astype(np.float64)
        pred._columns = (ints, floats)
    return pred._columns


def _apply(base: PredList, ops: _Ops) -> PredList:
    """The list with the changes made: replacements in place, additions at the end.

    Each variant takes its entries from the base's tables and the new entries' in one
    gather per table: numpy's per-call cost, not the masks, is what a fix costs.
    """
    n = len(base.masks)
    replace = ops.replace
    replaced = sorted(replace)
    news = [new for i in replaced for new in replace[i]] + ops.add
    k = len(news)
    gone = ops.remove.union(replaced)
    # each entry of the new list as an index into the old entries followed by the new ones
    if gone:
        pick: list[int] = []
        first_new = n
        for i in range(n):
            if i not in gone:
                pick.append(i)
            elif i in replace:
                count = len(replace[i])
                pick.extend(range(first_new, first_new + count))
                first_new += count
        pick.extend(range(first_new, n + k))
    else:
        pick = list(range(n + k))
    ints, floats = _columns(base)
    if k:
        new_ints = np.array([(*new.box.tolist(), new.area, new.cls, -1, new.mask_source,
                              new.gt_copy) for new in news], np.int64).T
        new_floats = np.array([(new.score, float(new.area)) for new in news], np.float64).T
        ints = np.concatenate([ints, new_ints], axis=1)
        floats = np.concatenate([floats, new_floats], axis=1)
        crops = base.masks.crops + [new.crop for new in news]
        new_boxes = np.ascontiguousarray(new_ints[:4].T)
    else:
        crops = base.masks.crops
        new_boxes = np.zeros((0, 4), np.int64)
    at = np.array(pick, np.int64)
    ints, floats = ints[:, at], floats[:, at]
    crops = [crops[i] for i in pick]
    touched_classes = set(base.touched_classes)
    touched_boxes = base.touched_boxes
    if gone:
        gone_index = np.array(sorted(gone), np.int64)
        touched_classes.update(base.classes[gone_index].tolist())
        touched_boxes = np.concatenate([touched_boxes, base.masks.boxes[gone_index]])
    touched_classes.update(new.cls for new in news)
    if k:
        touched_boxes = np.concatenate([touched_boxes, new_boxes])
    touched_boxes = touched_boxes.astype(np.int64)
    masks = MaskCrops(np.ascontiguousarray(ints[:4].T), crops, ints[4], base.masks.height,
                      base.masks.width)
    return PredList(masks, ints[5], floats[0], floats[1], ints[6], ints[7], ints[8],
                    touched_classes, touched_boxes)


def _ops(row: int, errors: ErrorAssignment, pred: PredList, keep: np.ndarray,
         gt: MaskCrops, gt_classes: np.ndarray) -> _Ops:
    """The fix of one row, on the original list (``keep`` maps kept to list indices)."""
    ops = _Ops()
    kind = errors.pred_type
    if row == MERGED:
        for k in np.flatnonzero(kind == MERGED):
            i = int(keep[k])
            pieces = []
            for j in errors.merged_objects[k]:
                box, crop = _intersection(pred.masks, i, gt, int(j))
                pieces.append(_new(box, crop, pred.classes[i], pred.scores[i]))
            ops.replace[i] = pieces
    elif row == SPLIT:
        for pieces in errors.split_pieces:
            members = keep[pieces]
            first = int(members[rank_order(pred.scores[members])[0]])
            box, crop = _union(pred.masks, members)
            ops.replace[first] = [_new(box, crop, pred.classes[first], pred.scores[first])]
            ops.remove |= {int(i) for i in members if i != first}
    elif row in (DUPLICATE, BACKGROUND, IN_CROWD):
        ops.remove |= {int(keep[k]) for k in np.flatnonzero(kind == row)}
    elif row in (CONFUSION, LOCALISATION, MASK_QUALITY):
        for k in np.flatnonzero(kind == row):
            i, j = int(keep[k]), int(errors.pred_target[k])
            if errors.pred_fix_removes[k]:
                ops.remove.add(i)
            elif row == CONFUSION:
                m = pred.masks
                ops.replace[i] = [_New(m.boxes[i], m.crops[i], int(m.areas[i]),
                                       int(gt_classes[j]), float(pred.scores[i]),
                                       int(pred.mask_source[i]), int(pred.gt_copy[i]))]
            else:
                ops.replace[i] = [_copy_of(gt, j, pred.classes[i], pred.scores[i])]
    elif row == MISSED:
        ops.add = [_copy_of(gt, int(j), gt_classes[j], ADDED_SCORE)
                   for j in np.flatnonzero(errors.gt_missed) if gt.areas[j] > 0]
    elif row == LOW_SCORE:
        low = np.ones(len(pred.masks), bool)
        low[keep] = False
        ops.remove |= {int(i) for i in np.flatnonzero(low)}
    return ops


def fix_one(row: int, errors: ErrorAssignment, pred: PredList, keep: np.ndarray,
            gt: MaskCrops, gt_classes: np.ndarray) -> PredList:
    """The predictions with only the errors of ``row`` fixed.

    Args:
        row: index into ``ERROR_TYPES``.
        errors: the image's assignment.
        pred: the original predictions (all of them, below the score threshold too).
        keep: (N,) list indices of the kept predictions (the assignment's order).
        gt: the non-crowd objects' masks.
        gt_classes: their classes.

    Returns:
        The fixed list.
    """
    return _apply(pred, _ops(row, errors, pred, keep, gt, gt_classes))


def fix_all(errors: ErrorAssignment, pred: PredList, keep: np.ndarray, gt: MaskCrops,
            gt_classes: np.ndarray) -> PredList:
    """Every error fixed: one exact copy of each object with pixels, and nothing else.

    The copy of an object takes the place (list position and score) of the prediction whose
    fix produces it: its match; else, for an unmatched object, the highest-ranked of the
    merged predictions covering it, its split's union, and the confusion or localisation
    fixed onto it; else it is added with score 1 (a miss). Every other prediction is removed
    (duplicates, background, in crowd, below the score threshold, and fixed predictions left
    without an object). Each fix is made complete: a merged prediction's parts, for example,
    are exact copies here, as mask quality would make them.

    Args:
        errors: the image's assignment.
        pred: the original predictions (all of them).
        keep: (N,) list indices of the kept predictions.
        gt: the non-crowd objects' masks.
        gt_classes: their classes.

    Returns:
        The fixed list.
    """
    return _apply(pred, _all_ops(errors, pred, keep, gt, gt_classes))


def _all_ops(errors: ErrorAssignment, pred: PredList, keep: np.ndarray, gt: MaskCrops,
             gt_classes: np.ndarray) -> _Ops:
    """The changes of :func:`fix_all`."""
    g = len(gt)
    rank = np.empty(len(keep), np.int64)
    rank[rank_order(pred.scores[keep])] = np.arange(len(keep))
    owner = np.full(g, -1, np.int64)  # kept index whose place each object's copy takes
    matched = errors.pred_match >= 0
    owner[errors.pred_match[matched]] = np.flatnonzero(matched)
    candidates: list[tuple[int, int]] = []  # (object, kept index)
    for k in np.flatnonzero(errors.pred_type == MERGED):
        candidates += [(int(j), int(k)) for j in errors.merged_objects[k]]
    for j, pieces in zip(errors.split_objects.tolist(), errors.split_pieces, strict=True):
        candidates.append((j, int(pieces[np.argmin(rank[pieces])])))
    kind = errors.pred_type
    fixed_onto = ((kind == CONFUSION) | (kind == LOCALISATION)) & ~errors.pred_fix_removes
    candidates += [(int(errors.pred_target[k]), int(k)) for k in np.flatnonzero(fixed_onto)]
    for j, k in sorted(candidates, key=lambda c: rank[c[1]]):
        if owner[j] < 0:
            owner[j] = k
    ops = _Ops()
    ops.remove = set(range(len(pred.masks)))
    for j in range(g):
        if gt.areas[j] == 0:
            continue
        k = int(owner[j])
        if k < 0:
            ops.add.append(_copy_of(gt, j, gt_classes[j], ADDED_SCORE))
            continue
        i = int(keep[k])
        ops.remove.discard(i)
        ops.replace.setdefault(i, []).append(_copy_of(gt, j, gt_classes[j], pred.scores[i]))
    return ops

"""Instance side of one image: mask IoUs and the one-to-one matching.

Definitions (also in docs/EVALUATION.md); crowd regions are never instances:

* match: per class, the one-to-one assignment of predictions to ground-truth instances that
  maximises the total IoU among pairs with IoU >= ``iou_threshold`` (Hungarian algorithm).
* ignored prediction: unmatched, and more than ``iou_threshold`` of it (intersection over its
  own area, COCO's crowd rule) lies in a crowd region of its class. Neither right nor wrong.
* duplicate flag: an unmatched, not ignored prediction whose IoU with a matched prediction of
  its class is >= ``iou_threshold`` (a second detection of an object already found).

What each unmatched prediction and object is (merged, split, duplicate, ...) is the error
assignment's: :mod:`segcontrast.evaluation.accounting.assignment`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ...data.masks import MaskCrops, pairwise_intersections
from ...utils.native import kernels

__all__ = ["InstanceMatch", "class_match", "hungarian_match", "iou_matrix", "match_image"]


def iou_matrix(
    inter: np.ndarray, pred_areas: np.ndarray, gt_areas: np.ndarray, crowd: np.ndarray
) -> np.ndarray:
    """Mask IoUs from intersections, exactly as ``pycocotools.mask.iou`` computes them.

    Args:
        inter: (N, G) intersection pixel counts.
        pred_areas: (N,) prediction areas.
        gt_areas: (G,) ground-truth mask areas (pixels, not the annotation's ``area``).
        crowd: (G,) bool; for a crowd region the "IoU" is intersection / prediction area.

    Returns:
        (N, G) float64; 0 where the intersection is empty.
    """
    union = pred_areas[:, None] + gt_areas[None, :] - inter
    union = np.where(crowd[None, :], pred_areas[:, None], union)
    out = np.zeros(inter.shape, np.float64)
    nz = inter > 0
    out[nz] = inter[nz] / union[nz]
    return out


def hungarian_match(iou: np.ndarray, threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """One-to-one matching maximising the total IoU among pairs with IoU >= threshold.

    Args:
        iou: (N, M) IoUs.
        threshold: smallest IoU of a match.

    Returns:
        (rows, cols) of the matched pairs, int64.
    """
    candidate = iou >= threshold
    if not candidate.any():
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    if (candidate.sum(0) <= 1).all() and (candidate.sum(1) <= 1).all():
        rows, cols = np.nonzero(candidate)
        return rows.astype(np.int64), cols.astype(np.int64)
    rows_in = np.flatnonzero(candidate.any(1))
    cols_in = np.flatnonzero(candidate.any(0))
    sub = np.where(candidate[np.ix_(rows_in, cols_in)], iou[np.ix_(rows_in, cols_in)], 0.0)
    # scipy.optimize.linear_sum_assignment(sub, maximize=True)'s pairs, ties included
    r, c = kernels.max_weight_assignment(sub)
    keep = sub[r, c] >= threshold
    return rows_in[r[keep]].astype(np.int64), cols_in[c[keep]].astype(np.int64)


def class_match(iou: np.ndarray, pred_classes: np.ndarray, gt_classes: np.ndarray,
                threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """Per class, :func:`hungarian_match` of predictions to ground truth of their class.

    Classes whose candidate pairs are already one to one take them as they are (what the
    Hungarian algorithm would return).

    Args:
        iou: (N, G) IoUs.
        pred_classes: (N,) classes.
        gt_classes: (G,) classes.
        threshold: smallest IoU of a match.

    Returns:
        (rows, cols) of the matched pairs, int64, ordered by column.
    """
    return kernels.class_match(np.asarray(iou, np.float64), np.asarray(pred_classes, np.int64),
                               np.asarray(gt_classes, np.int64), float(threshold))


@dataclass
class InstanceMatch:
    """Matching result of one image (non-crowd ground truth only).

    Attributes:
        pred_index: (P,) matched predictions.
        gt_index: (P,) their ground-truth instances (indices into the non-crowd instances).
        pair_iou: (P,) their IoUs.
        gt_iou: (G,) IoU of each ground-truth instance with its match, 0 when missed.
        pred_matched: (N,) bool.
        pred_ignored: (N,) bool, unmatched and mostly inside a crowd region of its class.
        pred_duplicate: (N,) bool, the duplicate flag (module docstring).
    """

    pred_index: np.ndarray
    gt_index: np.ndarray
    pair_iou: np.ndarray
    gt_iou: np.ndarray
    pred_matched: np.ndarray
    pred_ignored: np.ndarray
    pred_duplicate: np.ndarray | None = None

    @property
    def missed(self) -> int:
        """Ground-truth instances without a match."""
        return int(len(self.gt_iou) - len(self.gt_index))

    @property
    def false_positives(self) -> int:
        """Unmatched predictions that are not ignored."""
        return int(np.count_nonzero(~self.pred_matched & ~self.pred_ignored))


def match_image(
    pred: MaskCrops,
    pred_classes: np.ndarray,
    gt: MaskCrops,
    gt_classes: np.ndarray,
    inter: np.ndarray,
    iou: np.ndarray,
    crowd_iou: np.ndarray,
    crowd_classes: np.ndarray,
    iou_threshold: float,
) -> InstanceMatch:
    """Match predictions to non-crowd ground truth; flag duplicates.

    Args:
        pred: N predicted masks.
        pred_classes: (N,) classes.
        gt: G non-crowd ground-truth masks.
        gt_classes: (G,) classes.
        inter: (N, G) intersections of predictions and ``gt``.
        iou: (N, G) their IoUs.
        crowd_iou: (N, C) intersection over prediction area with each crowd region.
        crowd_classes: (C,) classes of the crowd regions.
        iou_threshold: smallest IoU of a match.

    Returns:
        The matching.
    """
    n, g = len(pred), len(gt)
    # per class the Hungarian matching (the candidate pairs as they are where one to one)
    rows, cols = class_match(iou, pred_classes, gt_classes, iou_threshold)
    pair_iou = iou[rows, cols]
    gt_iou = np.zeros(g, np.float64)
    gt_iou[cols] = pair_iou
    matched = np.zeros(n, bool)
    matched[rows] = True

    ignored = np.zeros(n, bool)
    if crowd_iou.size:
        in_crowd = (crowd_iou >= iou_threshold) & (pred_classes[:, None] == crowd_classes[None])
        ignored = ~matched & in_crowd.any(axis=1)
    false_pos = ~matched & ~ignored

    duplicate = np.zeros(n, bool)
    fp_index = np.flatnonzero(false_pos)
    if fp_index.size and rows.size:
        pp = pairwise_intersections(pred.subset(fp_index), pred.subset(rows))
        union = pred.areas[fp_index][:, None] + pred.areas[rows][None, :] - pp
        pp_iou = np.where(pp > 0, pp / np.maximum(union, 1), 0.0)
        same_cls = pred_classes[fp_index][:, None] == pred_classes[rows][None, :]
        duplicate[fp_index] = ((pp_iou >= iou_threshold) & same_cls).any(axis=1)
    return InstanceMatch(
        pred_index=rows,
        gt_index=cols,
        pair_iou=pair_iou,
        gt_iou=gt_iou,
        pred_matched=matched,
        pred_ignored=ignored,
        pred_duplicate=duplicate,
    )

"""Boundary IoU of a semantic label map against the ground-truth map, per label.

The band rule is the instance boundary IoU's (:mod:`.boundary`): the boundary of a label's region
is the region minus its erosion by ``d = round(ratio * image diagonal)`` pixels (at least 1), the
outside of the image counting as another label. For label ``c`` with ground-truth band ``Gb`` and
predicted band ``Pb``, over the pixels whose ground truth is not ignored:

    boundary IoU_c = |Gb & Pb| / |Gb | Pb|

Intersections and unions are sums, so images add up (a dataset's boundary IoU pools its pixels
as the semantic confusion matrix does); the mean is over the thing labels (1..K) with a non-empty
union. The study (``bench/run_study.py``) uses it to compare the label maps of semantic and
instance models; the evaluator's ``semantic`` group does not report it.
"""

from __future__ import annotations

import math

import numpy as np

from ...data.semantic_gt import IGNORE_LABEL
from .boundary import mask_boundary

__all__ = ["boundary_miou", "semantic_boundary_counts"]


def semantic_boundary_counts(
    gt: np.ndarray, pred: np.ndarray, num_labels: int, dilation: int
) -> tuple[np.ndarray, np.ndarray]:
    """Per-label boundary intersections and unions of one image.

    Args:
        gt: (H, W) uint8 ground-truth labels (255 ignored).
        pred: (H, W) uint8 predicted labels.
        num_labels: K + 1 (background 0, thing class k as k + 1).
        dilation: band width in pixels (:func:`~.boundary.boundary_dilation`).

    Returns:
        ``(intersections, unions)``, each (K + 1,) int64 pixel counts.
    """
    if gt.shape != pred.shape:
        raise ValueError(f"label maps of different sizes: {gt.shape} and {pred.shape}")
    valid = gt != IGNORE_LABEL
    inter = np.zeros(num_labels, np.int64)
    union = np.zeros(num_labels, np.int64)
    for label in range(num_labels):
        in_gt, in_pred = gt == label, pred == label
        if not (in_gt.any() or in_pred.any()):
            continue
        gb = mask_boundary(in_gt, dilation) & valid
        pb = mask_boundary(in_pred, dilation) & valid
        inter[label] = np.count_nonzero(gb & pb)
        union[label] = np.count_nonzero(gb | pb)
    return inter, union


def boundary_miou(intersections: np.ndarray, unions: np.ndarray) -> tuple[np.ndarray, float]:
    """Per-label boundary IoU and its mean over the thing labels, in percent.

    Args:
        intersections: (K + 1,) summed intersections (one image or a dataset).
        unions: (K + 1,) summed unions.

    Returns:
        (K + 1,) IoUs (NaN where the union is empty) and their mean over labels 1..K with a
        non-empty union (NaN if none).
    """
    intersections = np.asarray(intersections, np.float64)
    unions = np.asarray(unions, np.float64)
    iou = np.full(unions.shape, math.nan)
    np.divide(100.0 * intersections, unions, out=iou, where=unions > 0)
    things = iou[1:]
    return iou, float(np.nanmean(things)) if np.isfinite(things).any() else math.nan

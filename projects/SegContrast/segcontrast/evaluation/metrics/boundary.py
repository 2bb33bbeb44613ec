"""Boundary IoU (Cheng et al., CVPR 2021) of matched pairs, computed on crops.

The boundary of a mask is the mask minus its erosion by ``d`` pixels, ``d = round(ratio *
image diagonal)`` (at least 1), with everything outside the image counted as background.
Boundary IoU of a pair is ``|Gb & Pb| / |Gb | Pb|``. Eroding ``d`` times with a 3x3 square
(the reference implementation) equals one erosion with a ``(2d + 1)`` square, and a one-pixel
zero frame around a tight crop stands for the zeros outside it, so each mask is eroded on its
own crop only.
"""

from __future__ import annotations

import functools
import math

import cv2
import numpy as np

from ...data.masks import MaskCrops

__all__ = ["boundary_dilation", "boundary_iou_pairs", "mask_boundary"]


def boundary_dilation(height: int, width: int, ratio: float) -> int:
    """Boundary width in pixels: ``round(ratio * sqrt(H^2 + W^2))``, at least 1."""
    return max(1, int(round(ratio * math.sqrt(height * height + width * width))))


def mask_boundary(crop: np.ndarray, dilation: int) -> np.ndarray:
    """Inner boundary band of a mask crop.

    Args:
        crop: (h, w) bool tight crop (outside it the mask is empty).
        dilation: band width in pixels.

    Returns:
        (h, w) bool: pixels of the mask within ``dilation`` (chessboard distance) of a
        background pixel or of the image border.
    """
    size = 2 * dilation + 1
    if min(crop.shape) < size:
        # no pixel has a full (2d + 1) square of mask around it: all of the mask is boundary
        return crop.copy()
    framed = cv2.copyMakeBorder(crop.view(np.uint8), 1, 1, 1, 1, cv2.BORDER_CONSTANT, value=0)
    eroded = cv2.erode(framed, _square(size))[1:-1, 1:-1]
    return crop & ~eroded.view(bool)


@functools.lru_cache(maxsize=16)
def _square(size: int) -> np.ndarray:
    return np.ones((size, size), np.uint8)


def boundary_iou_pairs(
    pred: MaskCrops, gt: MaskCrops, pairs: np.ndarray, dilation: int
) -> np.ndarray:
    """Boundary IoU of (prediction, ground truth) pairs of one image.

    Args:
        pred: predicted masks.
        gt: ground-truth masks.
        pairs: (P, 2) int indices (prediction, ground truth).
        dilation: band width in pixels (:func:`boundary_dilation`).

    Returns:
        (P,) float64 boundary IoUs; 0 where both boundaries are empty.
    """
    out = np.zeros(len(pairs), np.float64)
    if len(pairs) == 0:
        return out
    pred_bands: dict[int, np.ndarray] = {}
    gt_bands: dict[int, np.ndarray] = {}
    for k, (i, j) in enumerate(pairs):
        if i not in pred_bands:
            pred_bands[i] = mask_boundary(pred.crops[i], dilation)
        if j not in gt_bands:
            gt_bands[j] = mask_boundary(gt.crops[j], dilation)
        pb, gb = pred_bands[i], gt_bands[j]
        bp, bg = pred.boxes[i], gt.boxes[j]
        x0, y0 = max(bp[0], bg[0]), max(bp[1], bg[1])
        x1, y1 = min(bp[2], bg[2]), min(bp[3], bg[3])
        inter = 0
        if x1 > x0 and y1 > y0:
            inter = np.count_nonzero(
                pb[y0 - bp[1] : y1 - bp[1], x0 - bp[0] : x1 - bp[0]]
                & gb[y0 - bg[1] : y1 - bg[1], x0 - bg[0] : x1 - bg[0]]
            )
        union = np.count_nonzero(pb) + np.count_nonzero(gb) - inter
        out[k] = inter / union if union > 0 else 0.0
    return out

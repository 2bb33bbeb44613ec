"""Boundary IoU (Cheng et al., CVPR 2021) of matched pairs, computed on crops.

The boundary of a mask is the mask minus its erosion by ``d`` pixels, ``d = round(ratio *
image diagonal)`` (at least 1), with everything outside the image counted as background.
Boundary IoU of a pair is ``|Gb & Pb| / |Gb | Pb|``. Eroding ``d`` times with a 3x3 square
(the reference implementation, OpenCV's erode) equals one erosion with a ``(2d + 1)`` square,
and the zeros outside a tight crop are the mask's, so each mask is eroded on its own crop only,
in the compiled kernels: a pixel stays inside when the square around it lies within the crop
and holds only mask pixels.
"""

from __future__ import annotations

import math

import numpy as np

from ...data.masks import MaskCrops
from ...utils.native import kernels

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
    return kernels.mask_boundary(np.asarray(crop, bool), int(dilation))


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
    pairs = np.asarray(pairs, np.int64).reshape(-1, 2)
    if len(pairs) == 0:
        return np.zeros(0, np.float64)
    return kernels.boundary_iou_pairs(pred.boxes, pred.crops, pred.areas, gt.boxes, gt.crops,
                                      gt.areas, pairs, int(dilation))

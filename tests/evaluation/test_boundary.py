"""Boundary IoU on crops equals a straightforward full-image implementation (Cheng et al.)."""

import math

import cv2
import numpy as np
import pytest
from segcontrast.data.masks import crops_from_dense
from segcontrast.evaluation.metrics.boundary import boundary_dilation, boundary_iou_pairs

from tests.evaluation.helpers import box_mask, evaluate, image_dict, instances, register


def _reference_boundary(mask, dilation_ratio):
    """Cheng et al.'s mask_to_boundary: full image, 1-pixel zero frame, d erosions by 3x3."""
    h, w = mask.shape
    dilation = max(1, int(round(dilation_ratio * math.sqrt(h * h + w * w))))
    framed = cv2.copyMakeBorder(mask.astype(np.uint8), 1, 1, 1, 1, cv2.BORDER_CONSTANT, value=0)
    eroded = cv2.erode(framed, np.ones((3, 3), np.uint8), iterations=dilation)[1 : h + 1, 1 : w + 1]
    return mask.astype(np.uint8) - eroded


def _reference_boundary_iou(gt, pred, ratio):
    g, p = _reference_boundary(gt, ratio), _reference_boundary(pred, ratio)
    inter = ((g * p) > 0).sum()
    union = ((g + p) > 0).sum()
    return inter / union if union else 0.0


def _shapes(rng, h, w):
    m = np.zeros((h, w), np.uint8)
    kind = rng.integers(0, 4)
    if kind == 0:
        center = (int(rng.integers(0, w)), int(rng.integers(0, h)))
        cv2.ellipse(m, center, (int(rng.integers(1, w)), int(rng.integers(1, h))), 0, 0, 360, 1, -1)
    elif kind == 1:
        m[:] = rng.random((h, w)) < 0.7
    elif kind == 2:
        m[:, : int(rng.integers(1, w))] = 1  # touches three image borders
    else:
        m[int(rng.integers(0, h)), :] = 1  # a one-pixel line
    return m.astype(bool)


@pytest.mark.parametrize("ratio", [0.005, 0.02, 0.08])
def test_boundary_iou_equals_reference(ratio):
    rng = np.random.default_rng(int(ratio * 1000))
    h, w = 60, 90
    dilation = boundary_dilation(h, w, ratio)
    for _ in range(80):
        gt = _shapes(rng, h, w)
        pred = (
            np.roll(gt, int(rng.integers(-4, 5)), axis=1)
            if rng.random() < 0.7
            else _shapes(rng, h, w)
        )
        if not gt.any() or not pred.any():
            continue
        ours = boundary_iou_pairs(
            crops_from_dense(pred[None]), crops_from_dense(gt[None]), np.array([[0, 0]]), dilation
        )[0]
        assert ours == pytest.approx(_reference_boundary_iou(gt, pred, ratio), abs=1e-12)


def test_evaluator_boundary_iou_is_the_mean_over_matched_pairs():
    h, w = 60, 80
    a = box_mask(h, w, 5, 5, 30, 30)
    b = box_mask(h, w, 35, 40, 58, 79)
    pa = np.roll(a, 2, axis=1)
    pb = b.copy()
    pb[40:45, 45:50] = False
    name = register([image_dict(1, [a, b], [0, 1])], ["a", "b"])
    res = evaluate(name, {1: instances([pa, pb], [0, 1], [0.9, 0.8])}, boundary_dilation_ratio=0.02)
    expected = (_reference_boundary_iou(a, pa, 0.02) + _reference_boundary_iou(b, pb, 0.02)) / 2
    assert res["instance"]["boundary_IoU"] == pytest.approx(100 * expected, abs=1e-10)
    off = evaluate(name, {1: instances([pa, pb], [0, 1], [0.9, 0.8])}, boundary_iou=False)
    assert "boundary_IoU" not in off["instance"]

"""Semantic boundary IoU against a distance-transform reference and hand-counted answers."""

import math

import numpy as np
import pytest
from scipy import ndimage
from segcontrast.data.semantic_gt import IGNORE_LABEL
from segcontrast.evaluation.metrics.semantic_boundary import boundary_miou, semantic_boundary_counts


def _reference_band(mask: np.ndarray, d: int) -> np.ndarray:
    """Pixels of the mask within chessboard distance d of a non-mask pixel or of the border."""
    padded = np.pad(mask, 1)
    distance = ndimage.distance_transform_cdt(padded, metric="chessboard")[1:-1, 1:-1]
    return mask & (distance <= d)


def _reference_counts(gt, pred, num_labels, d):
    valid = gt != IGNORE_LABEL
    inter, union = np.zeros(num_labels, np.int64), np.zeros(num_labels, np.int64)
    for c in range(num_labels):
        gb, pb = _reference_band(gt == c, d) & valid, _reference_band(pred == c, d) & valid
        inter[c], union[c] = (gb & pb).sum(), (gb | pb).sum()
    return inter, union


@pytest.mark.parametrize("d", [1, 2, 4])
def test_random_maps_match_the_distance_transform_reference(d):
    rng = np.random.default_rng(d)
    for _ in range(5):
        gt = ndimage.zoom(rng.integers(0, 4, (6, 7)), 6, order=0).astype(np.uint8)
        pred = gt.copy()
        noise = rng.random(gt.shape) < 0.05
        pred[noise] = rng.integers(0, 4, noise.sum())
        gt[rng.random(gt.shape) < 0.03] = IGNORE_LABEL
        ours = semantic_boundary_counts(gt, pred, 4, d)
        ref = _reference_counts(gt, pred, 4, d)
        assert np.array_equal(ours[0], ref[0]) and np.array_equal(ours[1], ref[1])


def test_known_answer_square_shifted_by_one():
    gt = np.zeros((20, 20), np.uint8)
    gt[5:15, 5:15] = 1  # a 10x10 square: its 1-pixel band is 36 pixels
    pred = np.roll(gt, 1, axis=1)
    inter, union = semantic_boundary_counts(gt, pred, 2, 1)
    # The two 36-pixel rings share 9 pixels of the top row and 9 of the bottom row; their side
    # columns (5 and 14, 6 and 15) meet only in those rows: 18 shared, 36 + 36 - 18 in the union.
    gb = _reference_band(gt == 1, 1)
    pb = _reference_band(pred == 1, 1)
    assert gb.sum() == 36
    assert (inter[1], union[1]) == ((gb & pb).sum(), (gb | pb).sum()) == (18, 54)
    iou, mean = boundary_miou(inter, union)
    assert mean == pytest.approx(100 * 18 / 54)
    assert iou[1] == mean
    perfect = semantic_boundary_counts(gt, gt, 2, 1)
    assert boundary_miou(*perfect)[1] == 100.0


def test_ignored_pixels_and_absent_labels():
    gt = np.zeros((12, 12), np.uint8)
    gt[2:8, 2:8] = 2
    gt[:, 10:] = IGNORE_LABEL
    pred = gt.copy()
    pred[:, 10:] = 1  # a predicted region only where the ground truth is ignored
    inter, union = semantic_boundary_counts(gt, pred, 3, 1)
    assert union[1] == 0  # everything label 1 has is ignored: no boundary counted
    iou, mean = boundary_miou(inter, union)
    assert math.isnan(iou[1]) and mean == 100.0
    assert math.isnan(boundary_miou(np.zeros(3), np.zeros(3))[1])
    with pytest.raises(ValueError, match="different sizes"):
        semantic_boundary_counts(gt, pred[:5], 3, 1)

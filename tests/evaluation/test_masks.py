"""Crops: RLE and polygon decoding equal pycocotools, dense crops, intersections."""

import cv2
import numpy as np
import pycocotools.mask as mask_util
import pytest
import torch
from segcontrast.data.masks import (
    annotation_to_rle,
    crops_from_dense,
    crops_from_rles,
    pairwise_intersections,
)


def _random_masks(rng, n, h, w):
    masks = np.zeros((n, h, w), np.uint8)
    for i in range(n):
        kind = rng.integers(0, 5)
        if kind == 0:
            masks[i] = rng.random((h, w)) < rng.random()
        elif kind == 1:
            center = (int(rng.integers(-10, w + 10)), int(rng.integers(-10, h + 10)))
            axes = (int(rng.integers(1, 60)), int(rng.integers(1, 60)))
            cv2.ellipse(masks[i], center, axes, 0, 0, 360, 1, -1)
        elif kind == 2:
            masks[i, :, int(rng.integers(0, w)) :] = 1  # runs crossing column edges
        elif kind == 3:
            masks[i, int(rng.integers(0, h)), int(rng.integers(0, w))] = 1
        # kind 4: empty
    return masks


@pytest.mark.parametrize("shape", [(97, 83), (1, 7), (64, 64)])
def test_rle_and_dense_crops_equal_pycocotools_decode(shape):
    rng = np.random.default_rng(sum(shape))
    h, w = shape
    for _ in range(60):
        masks = _random_masks(rng, int(rng.integers(1, 6)), h, w)
        rles = [mask_util.encode(np.asfortranarray(m)) for m in masks]
        from_rle = crops_from_rles(rles, h, w)
        from_dense = crops_from_dense(torch.from_numpy(masks.astype(bool)))
        for i in range(len(masks)):
            ref = mask_util.decode(rles[i]).astype(bool)
            assert np.array_equal(from_rle.to_dense(i), ref)
            assert np.array_equal(from_dense.to_dense(i), ref)
            assert from_rle.areas[i] == from_dense.areas[i] == ref.sum()
            if ref.any():
                ys, xs = np.nonzero(ref)
                assert from_rle.crops[i].shape == (np.ptp(ys) + 1, np.ptp(xs) + 1)
        assert np.array_equal(from_rle.boxes, from_dense.boxes)
        ref = (masks[:, None].astype(bool) & masks[None].astype(bool)).sum((2, 3))
        assert np.array_equal(pairwise_intersections(from_rle, from_dense), ref)


def test_polygons_and_uncompressed_rle_as_coco_ann_to_rle():
    h, w = 50, 60
    polygons = [[10.5, 10.2, 50.3, 12.1, 40.7, 45.9, 5.1, 44.4], [-3.2, -1.0, 8.0, 0.4, 2.5, 9.9]]
    merged = mask_util.merge(mask_util.frPyObjects(polygons, h, w))
    got = crops_from_rles([annotation_to_rle(polygons, h, w)], h, w)
    assert np.array_equal(got.to_dense(0), mask_util.decode(merged).astype(bool))
    mask = np.zeros((h, w), np.uint8)
    mask[5:20, 7:9] = 1
    counts, value, run = [], 0, 0
    for pixel in mask.ravel(order="F"):
        if pixel != value:
            counts.append(run)
            value, run = pixel, 0
        run += 1
    counts.append(run)
    rle = annotation_to_rle({"size": [h, w], "counts": counts}, h, w)
    assert np.array_equal(crops_from_rles([rle], h, w).to_dense(0), mask.astype(bool))
    empty = crops_from_rles([annotation_to_rle([], h, w)], h, w)
    assert empty.areas[0] == 0


def test_float_masks_are_binarised_at_the_threshold():
    probs = torch.tensor([[[0.2, 0.5, 0.7], [0.49, 0.51, 1.0]]])
    crops = crops_from_dense(probs, threshold=0.5)
    assert np.array_equal(crops.to_dense(0), (probs[0] >= 0.5).numpy())
    assert crops.areas[0] == 4


def test_bad_rles_are_refused():
    good = mask_util.encode(np.asfortranarray(np.ones((4, 4), np.uint8)))
    with pytest.raises(ValueError, match="size"):
        crops_from_rles([good], 4, 5)
    with pytest.raises(ValueError, match="middle of a number"):
        crops_from_rles([{"size": [4, 4], "counts": b"0P"}], 4, 4)

"""The accounting's one-call kernel against the per-variant implementation it replaced.

Randomised images whose predictions make every error row occur: copies of objects (correct,
duplicates, class confusions), unions of two objects (merged), halves (split), shifted objects
(mask quality, localisation), random blobs (background), predictions in crowd regions and
below the score threshold; overlapping objects, crowd regions, empty masks, images without
predictions or without objects, more than 100 predictions of a class; equal score ties. Every
packed array must be equal, dtype and shape included, floats to the last bit.
"""

import numpy as np
import pytest
from segcontrast.data.masks import GroundTruth, MaskCrops
from segcontrast.evaluation import image_eval
from segcontrast.evaluation.accounting.assignment import ERROR_TYPES
from segcontrast.evaluation.predictions import Predictions

from tests.evaluation import per_variant_impl
from tests.evaluation.test_kernels import crops_of, random_masks

NUM_CLASSES = 3
SEEDS = range(60)


def _predictions(rng, gt_masks, gt_classes, height, width, n_random):
    masks, classes = [], []
    for j in range(len(gt_masks)):
        mask, cls = gt_masks[j], int(gt_classes[j])
        for _ in range(int(rng.integers(0, 3))):
            kind = rng.random()
            if kind < 0.3:
                masks.append(mask.copy())
                classes.append(cls if rng.random() < 0.7 else int(rng.integers(0, NUM_CLASSES)))
            elif kind < 0.5:  # union with another object (merged when both are covered)
                other = int(rng.integers(0, len(gt_masks)))
                masks.append(mask | gt_masks[other])
                classes.append(cls)
            elif kind < 0.7:  # two halves (split)
                cut = width // 2 if rng.random() < 0.5 else int(rng.integers(0, width + 1))
                left, right = mask.copy(), mask.copy()
                left[:, cut:] = False
                right[:, :cut] = False
                masks += [left, right]
                classes += [cls, cls]
            else:  # shifted (mask quality, localisation)
                dy, dx = rng.integers(-3, 4, 2)
                masks.append(np.roll(mask, (int(dy), int(dx)), axis=(0, 1)))
                classes.append(cls)
    extra = random_masks(rng, n_random, height, width)
    masks += list(extra)
    classes += rng.integers(0, NUM_CLASSES, n_random).tolist()
    stack = np.array(masks, bool).reshape(len(masks), height, width)
    # coarse scores: many ties, some below the score threshold
    scores = rng.integers(0, 5, len(masks)) / 4.0
    return stack, np.array(classes, np.int64), scores


def _scene(seed):
    rng = np.random.default_rng(seed)
    height, width = int(rng.integers(1, 36)), int(rng.integers(1, 36))
    n_gt = 0 if seed % 15 == 1 else int(rng.integers(1, 10))
    gt_masks = random_masks(rng, n_gt, height, width)
    gt_classes = rng.integers(0, NUM_CLASSES, n_gt)
    crowd = rng.random(n_gt) < 0.2
    if seed % 15 == 2:
        pred_masks = np.zeros((0, height, width), bool)
        pred_classes, scores = np.zeros(0, np.int64), np.zeros(0)
    else:
        pred_masks, pred_classes, scores = _predictions(
            rng, gt_masks, gt_classes, height, width, 130 if seed == 3 else int(rng.integers(0, 5)))
    if seed == 3:
        pred_classes[:] = 0  # more than 100 predictions of one class
    gt_crops = crops_of(gt_masks)
    gt = GroundTruth(gt_crops, np.asarray(gt_classes, np.int64), crowd,
                     gt_crops.areas.astype(np.float64), np.arange(1, n_gt + 1))
    pred_crops = crops_of(pred_masks) if len(pred_masks) else MaskCrops.empty(height, width)
    pred = Predictions(pred_crops, pred_classes, scores, pred_crops.areas.astype(np.float64))
    image = {"image_id": seed, "file_name": "", "height": height, "width": width}
    return image, gt, pred


def _evaluate(image, gt, pred, panoptic, score_threshold):
    return image_eval.evaluate_image(
        image, gt, pred, num_classes=NUM_CLASSES, iou_threshold=0.5,
        score_threshold=score_threshold, boundary_dilation=None, panoptic=panoptic,
        accounting=True)


@pytest.mark.parametrize("panoptic", [True, False])
def test_every_variant_equals_the_per_variant_implementation(panoptic, monkeypatch):
    rows_seen = np.zeros(len(ERROR_TYPES), np.int64)
    for seed in SEEDS:
        image, gt, pred = _scene(seed)
        threshold = 0.3 if seed % 2 else 0.0
        found = _evaluate(image, gt, pred, panoptic, threshold)
        with monkeypatch.context() as patch:
            patch.setattr(image_eval, "account_image", per_variant_impl.account_image)
            expected = _evaluate(image, gt, pred, panoptic, threshold)
        a, b = found.record.accounting, expected.record.accounting
        for name in ("counts", "variants", "iou_variants", "gt_iou", "pq_rows", "pq_iou",
                     "ap_groups", "ap_dets", "ap_ious"):
            x, y = getattr(a, name), getattr(b, name)
            assert x.dtype == y.dtype and x.shape == y.shape, (seed, name, x, y)
            np.testing.assert_array_equal(x, y, err_msg=f"seed {seed}: {name}")
        assert list(found.accounting_confusion) == list(expected.accounting_confusion), seed
        for row, delta in found.accounting_confusion.items():
            other = expected.accounting_confusion[row]
            assert delta.dtype == other.dtype
            np.testing.assert_array_equal(delta, other, err_msg=f"seed {seed}: row {row}")
        rows_seen += a.counts > 0
    # the scenes make every error row occur, several times
    assert (rows_seen >= 3).all(), dict(zip(ERROR_TYPES, rows_seen.tolist(), strict=True))


@pytest.mark.parametrize("panoptic", [True, False])
def test_the_variants_substitutions_equal_the_image_by_image_gathering(panoptic):
    from segcontrast.evaluation.accounting.dataset_deltas import _ALL_AREAS, _Variants

    from tests.evaluation import reference_impl as ref

    records = []
    for seed in SEEDS:
        image, gt, pred = _scene(seed)
        record = _evaluate(image, gt, pred, panoptic, 0.3 if seed % 2 else 0.0).record
        if seed % 7 == 5:
            record.accounting = None  # an image without the accounting
        records.append(record)
    for images in (records, records[:1], []):
        offsets = np.concatenate(([0], np.cumsum([len(r.gt_iou) for r in images]))).astype(
            np.int64)
        found = _Variants(images, NUM_CLASSES, offsets, _ALL_AREAS)
        expected = ref.variant_substitutions(images, offsets)
        assert found.iou_index.keys() == expected[0].keys()
        assert found.pq_index.keys() == expected[2].keys()
        if len(images) > 1:
            assert len(found.iou_index) > 3 and (len(found.pq_index) > 3) == panoptic
        for got, want in ((found.iou_index, expected[0]), (found.iou_values, expected[1]),
                          (found.pq_values, expected[3])):
            for v, x in want.items():
                assert got[v].dtype == x.dtype and got[v].shape == x.shape
                np.testing.assert_array_equal(got[v], x)
        for v, (image, category) in expected[2].items():
            for x, y in zip(found.pq_index[v], (image, category), strict=True):
                assert x.dtype == y.dtype
                np.testing.assert_array_equal(x, y)

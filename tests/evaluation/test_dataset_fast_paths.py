"""The dataset-level steps done once for all images against their per-image forms (reference_impl).

Randomised records: images without detections or ground truth, classes absent from some images,
equal scores, crowd regions, annotation ids 0, IoUs of 0. Results must be equal: integers
exactly, floats to the last bit.
"""

import math
from types import SimpleNamespace

import numpy as np
import pytest
from segcontrast.evaluation.accounting.dataset_deltas import panoptic_matrix
from segcontrast.evaluation.metrics import semantic
from segcontrast.evaluation.metrics.coco_ap import (
    AREA_RANGES,
    ApImage,
    accumulate,
    concat_ap_images,
    ground_truth_counts,
    match_detections,
)
from segcontrast.evaluation.records import EvalState, WorstImage, image_sort_key
from segcontrast.evaluation.summary import _summed_counts

from tests.evaluation import reference_impl as ref

SEEDS = range(6)


def random_ap_images(rng: np.random.Generator, n_images: int, num_classes: int) -> list[ApImage]:
    images = []
    for _ in range(n_images):
        n = int(rng.integers(0, 14)) if rng.random() > 0.15 else 0
        g = int(rng.integers(0, 9)) if rng.random() > 0.15 else 0
        scores = rng.choice([0.3, 0.5, 0.9], n) if rng.random() < 0.3 else rng.random(n)
        iou = rng.random((n, g)) * (rng.random((n, g)) < 0.6)
        images.append(ApImage.build(
            rng.integers(0, num_classes, n), scores.astype(np.float64),
            rng.integers(1, 20000, n).astype(np.float64), rng.integers(0, num_classes, g),
            rng.random(g) < 0.15, rng.integers(1, 20000, g).astype(np.float64),
            np.where(rng.random(g) < 0.1, 0, rng.integers(1, 10**6, g)), iou))
    return images


def assert_same_arrays(fast: dict, slow: dict) -> None:
    assert fast.keys() == slow.keys()
    for key in slow:
        assert fast[key].dtype == slow[key].dtype, key
        assert np.array_equal(fast[key], slow[key]), key


@pytest.mark.parametrize("seed", SEEDS)
def test_concat_ap_images_equals_one_diff_per_image(seed):
    rng = np.random.default_rng(seed)
    images = random_ap_images(rng, int(rng.integers(1, 40)), 4)
    assert_same_arrays(concat_ap_images(images), ref.concat_ap_images(images))
    assert_same_arrays(concat_ap_images(images[:1]), ref.concat_ap_images(images[:1]))
    assert_same_arrays(concat_ap_images([]), ref.concat_ap_images([]))


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("areas", [AREA_RANGES, AREA_RANGES[:1]], ids=["four", "all"])
def test_accumulate_equals_one_gather_per_class(seed, areas):
    rng = np.random.default_rng(seed)
    images = random_ap_images(rng, 30, 5)
    data = concat_ap_images(images)
    dets = match_detections(images, 5, areas=areas, data=data)
    assert_same_arrays(vars(dets), vars(match_detections(images, 5, areas=areas)))
    npig = ground_truth_counts(images, 5, areas=areas, data=data)
    assert np.array_equal(npig, ground_truth_counts(images, 5, areas=areas))
    fast, slow = accumulate(dets, npig, 5), ref.accumulate(dets, npig, 5)
    assert np.array_equal(fast.precision, slow.precision)
    assert np.array_equal(fast.recall, slow.recall)


@pytest.mark.parametrize("seed", SEEDS)
def test_the_compiled_accumulate_equals_numpys_on_ties_and_empty_classes(seed):
    # many equal scores and equal keys (the order among them decides precision), classes
    # without detections or without ground truth, one area range or four
    from segcontrast.evaluation.metrics.coco_ap import MatchedDetections

    rng = np.random.default_rng(100 + seed)
    for _ in range(30):
        k, a, d = int(rng.integers(1, 6)), int(rng.choice([1, 4])), int(rng.integers(0, 300))
        classes = rng.integers(0, k, d)
        scores = rng.choice([0.05, 0.5, 0.5000000000000001, 1.0], d) if rng.random() < 0.5 \
            else rng.random(d)
        keys = rng.integers(0, max(1, d // 3), d)
        tp = rng.random((d, a, 10)) < 0.4
        fp = ~tp & (rng.random((d, a, 10)) < 0.7)  # the rest: ignored
        npig = rng.integers(0, 8, (k, a)) * (rng.random((k, a)) < 0.8)
        dets = MatchedDetections(classes, scores, keys, np.zeros(d, np.int64), tp, fp)
        fast, slow = accumulate(dets, npig, k), ref.accumulate(dets, npig, k)
        assert np.array_equal(fast.precision, slow.precision)
        assert np.array_equal(fast.recall, slow.recall)


@pytest.mark.parametrize("seed", SEEDS)
def test_label_counts_and_thing_miou_equal_theirs(seed):
    rng = np.random.default_rng(seed)
    for _ in range(20):
        k = int(rng.integers(1, 6))
        conf = rng.integers(0, 50, (k, k)) * (rng.random((k, k)) < 0.4)
        counts = semantic.label_counts(conf)
        assert counts.dtype == np.int64
        assert np.array_equal(counts, ref.label_counts(conf))
        fast, slow = semantic.thing_miou(conf), ref.thing_miou(conf)
        assert fast == slow or (math.isnan(fast) and math.isnan(slow))
        of_counts = semantic.thing_miou_of_counts(counts)
        assert of_counts == slow or (math.isnan(of_counts) and math.isnan(slow))


@pytest.mark.parametrize("seed", SEEDS)
def test_summed_counts_and_panoptic_matrix_equal_the_loops(seed):
    rng = np.random.default_rng(seed)
    keys = ["n_gt", "matched", "missed"]
    images = [SimpleNamespace(counts={k: int(rng.integers(0, 9)) for k in keys},
                              panoptic=rng.random((4, 4)) if rng.random() < 0.7 else None)
              for _ in range(int(rng.integers(0, 12)))]
    assert _summed_counts(images) == ref.summed_counts(images)
    assert list(_summed_counts(images)) == list(ref.summed_counts(images))
    assert np.array_equal(panoptic_matrix(images, 4), ref.panoptic_matrix(images, 4))


@pytest.mark.parametrize("seed", SEEDS)
def test_worst_images_are_the_lowest_keys_and_looked_up_as_before(seed):
    rng = np.random.default_rng(seed)
    state = EvalState(num_labels=2, max_worst=5)
    empty = np.zeros((0, 4), np.int64)
    seen = []
    for image_id in rng.permutation(40).tolist():
        score = float(rng.choice([0.0, 0.25, 0.5])) if rng.random() < 0.5 else float(rng.random())
        # the lookup as it was: the largest key of the worst images so far
        before = len(state.worst) < state.max_worst or (
            (score, image_sort_key(image_id)) < max(w.key() for w in state.worst))
        assert state.wants_worst(score, image_id) == before
        if before:
            state.add_worst(WorstImage(score, image_id, empty, empty[:, :2], [], empty[:, 0],
                                       np.zeros(0)))
        seen.append((score, image_sort_key(image_id)))
    assert [w.key() for w in state.worst] == sorted(seen)[:5]

"""Hand-built cases whose answers are known in advance."""

import json
import math

import numpy as np
import pytest
from segcontrast.evaluation.metrics.instance import hungarian_match
from segcontrast.evaluation.metrics.semantic import confusion_matrix, semantic_scores

from tests.evaluation.helpers import box_mask, evaluate, image_dict, instances, register

H, W = 40, 50


def test_dog_example_from_confusion_matrix():
    # iou_dog = 801 / (true_dog + pred_dog - 801): 1000 true dog pixels, 900 predicted.
    conf = np.array(
        [
            [700, 0, 99],  # background: 99 pixels wrongly called dog
            [0, 0, 0],  # cat: absent
            [199, 0, 801],  # dog: 801 right, 199 missed
        ]
    )
    scores = semantic_scores(conf)
    true_dog, pred_dog = conf[2].sum(), conf[:, 2].sum()
    assert (true_dog, pred_dog) == (1000, 900)
    assert scores.iou[2] == 801 / (true_dog + pred_dog - 801)
    assert math.isnan(scores.iou[1])
    assert scores.absent == [0]
    assert scores.miou == scores.iou[2]  # the absent cat is left out of the mean


def test_dog_example_through_the_evaluator():
    gt_dog = np.zeros((H, W), bool)
    gt_dog[:20] = True  # 1000 pixels
    flat_pred = np.zeros(H * W, bool)
    inside = np.flatnonzero(gt_dog.ravel())[:801]
    outside = np.flatnonzero(~gt_dog.ravel())[:99]
    flat_pred[inside] = True
    flat_pred[outside] = True
    name = register([image_dict(1, [gt_dog], [1])], ["cat", "dog"])
    res = evaluate(name, {1: instances([flat_pred.reshape(H, W)], [1], [0.9])})
    assert res["semantic"]["IoU-dog"] == pytest.approx(100 * 801 / (1000 + 900 - 801), abs=1e-12)
    assert math.isnan(res["semantic"]["IoU-cat"])
    assert res["semantic"]["mIoU"] == res["semantic"]["IoU-dog"]


def test_class_only_predicted_counts_zero_and_absent_class_is_left_out(tmp_path):
    a = box_mask(H, W, 0, 0, 10, 10)
    b = box_mask(H, W, 20, 20, 30, 30)
    name = register([image_dict(1, [a], [0])], ["a", "b", "c"])
    res = evaluate(name, {1: instances([a, b], [0, 1], [0.9, 0.8])}, str(tmp_path))
    sem = res["semantic"]
    assert sem["IoU-a"] == 100.0
    assert sem["IoU-b"] == 0.0
    assert math.isnan(sem["IoU-c"])
    assert sem["mIoU"] == 50.0
    assert res["instance"]["IoU-b"] == 0.0 and math.isnan(res["instance"]["IoU-c"])
    assert res["instance"]["class_mIoU"] == 50.0
    assert res["instance"]["mIoU"] == 100.0  # over ground-truth instances only
    assert res["contrast"]["semantic_only_predicted_classes"] == 1
    assert res["contrast"]["semantic_absent_classes"] == 1

    rules = json.loads((tmp_path / "metrics.json").read_text())["details"]["absent_class_rules"]
    assert rules["semantic_only_predicted"]["classes"] == ["b"]
    assert rules["semantic_absent"]["classes"] == ["c"]
    assert rules["instance_only_predicted"]["classes"] == ["b"]


def test_crowd_pixels_are_ignored_and_predictions_there_are_not_false_positives():
    obj = box_mask(H, W, 0, 0, 10, 10)
    crowd = box_mask(H, W, 20, 20, 40, 50)
    in_crowd = box_mask(H, W, 25, 25, 35, 45)
    name = register([image_dict(1, [obj, crowd], [0, 0], [0, 1])], ["a", "b"])
    res = evaluate(name, {1: instances([obj, in_crowd], [0, 0], [0.9, 0.6])})
    assert res["semantic"]["IoU-a"] == 100.0
    assert res["instance"]["precision"] == 100.0
    assert res["contrast"]["in_crowd"] == 1 and res["contrast"]["false_positives"] == 0
    # the same prediction with another class lands on ignored pixels too, but is a false
    # positive on the instance side (COCO's crowd rule is per class)
    res = evaluate(name, {1: instances([obj, in_crowd], [0, 1], [0.9, 0.6])})
    assert res["semantic"]["IoU-a"] == 100.0 and math.isnan(res["semantic"]["IoU-b"])
    assert res["contrast"]["false_positives"] == 1


def test_overlap_of_two_classes_is_ignored():
    a = box_mask(H, W, 0, 0, 20, 20)
    b = box_mask(H, W, 10, 10, 30, 30)
    name = register([image_dict(1, [a, b], [0, 1])], ["a", "b"])
    only_a = a & ~b
    only_b = b & ~a
    res = evaluate(name, {1: instances([only_a, only_b], [0, 1], [0.9, 0.9])})
    # the shared 10x10 square is ignored, so painting either class there is not scored
    assert res["semantic"]["mIoU"] == 100.0


def test_image_without_ground_truth():
    a = box_mask(H, W, 0, 0, 10, 10)
    extra = box_mask(H, W, 0, 0, 10, 5)  # 50 pixels of class a on an empty image
    name = register(
        [
            image_dict(1, [a], [0]),
            {"file_name": "", "height": H, "width": W, "image_id": 2, "annotations": []},
        ],
        ["a"],
    )
    res = evaluate(name, {1: instances([a], [0], [0.9]), 2: instances([extra], [0], [0.9])})
    assert res["semantic"]["IoU-a"] == pytest.approx(100 * 100 / 150, abs=1e-12)
    assert res["instance"]["mIoU"] == 100.0
    assert res["instance"]["precision"] == 50.0
    assert res["contrast"]["false_positives"] == 1
    assert res["segm"]["AP"] < 100.0


def test_image_without_predictions():
    a = box_mask(H, W, 0, 0, 10, 10)
    b = box_mask(H, W, 20, 20, 30, 30)
    name = register([image_dict(1, [a], [0]), image_dict(2, [b], [0])], ["a"])
    empty = instances([], [], [], height=H, width=W)
    res = evaluate(name, {1: instances([a], [0], [0.9]), 2: empty})
    assert res["semantic"]["IoU-a"] == 50.0
    assert res["instance"]["mIoU"] == 50.0
    assert res["instance"]["recall"] == 50.0
    assert res["contrast"]["missed"] == 1
    # an output without "instances" at all is no predictions too
    res2 = evaluate(name, {1: instances([a], [0], [0.9]), 2: {}})
    assert res2 == res


def test_no_predictions_anywhere_gives_zero_ap():
    a = box_mask(H, W, 0, 0, 10, 10)
    name = register([image_dict(1, [a], [0])], ["a"])
    res = evaluate(name, {1: instances([], [], [], height=H, width=W)})
    assert res["segm"]["AP"] == 0.0
    assert res["instance"]["mIoU"] == 0.0
    assert math.isnan(res["instance"]["precision"])


def test_two_touching_objects_predicted_as_one_mask():
    left = box_mask(H, W, 10, 5, 30, 25)  # 400 pixels
    right = box_mask(H, W, 10, 25, 30, 35)  # 200 pixels, touching
    name = register([image_dict(1, [left, right], [0, 0])], ["a"])
    res = evaluate(name, {1: instances([left | right], [0], [0.9])})
    assert res["semantic"]["IoU-a"] == 100.0
    assert res["instance"]["mIoU"] == pytest.approx(100 * (400 / 600 + 0) / 2, abs=1e-12)
    assert res["contrast"]["merged"] == 1
    # the right object is unmatched but not missed: the merged prediction explains it (one
    # error, one type); the instance side still scores it 0
    assert res["contrast"]["missed"] == 0 and res["contrast"]["matched"] == 1
    assert res["contrast"]["split"] == 0


@pytest.mark.parametrize("cut", [12, 10])
def test_object_split_into_two_predictions(cut):
    obj = box_mask(H, W, 10, 10, 30, 30)
    part1 = box_mask(H, W, 10, 10, 30, 10 + cut)
    part2 = box_mask(H, W, 10, 10 + cut, 30, 30)
    name = register([image_dict(1, [obj], [0])], ["a"])
    res = evaluate(name, {1: instances([part1, part2], [0, 0], [0.9, 0.8])})
    assert res["semantic"]["IoU-a"] == 100.0
    assert res["contrast"]["split"] == 1
    assert res["contrast"]["merged"] == 0
    assert res["contrast"]["duplicate"] == 0
    assert res["contrast"]["false_positives"] == 1
    assert res["instance"]["mIoU"] == pytest.approx(100 * cut / 20, abs=1e-12)


def test_duplicate_and_class_confusion():
    a = box_mask(H, W, 0, 0, 20, 20)
    b = box_mask(H, W, 22, 22, 38, 48)
    shifted = np.roll(a, 1, axis=1)
    name = register([image_dict(1, [a, b], [0, 1])], ["a", "b"])
    res = evaluate(name, {1: instances([a, shifted, b], [0, 0, 0], [0.9, 0.8, 0.7])})
    c = res["contrast"]
    # b is unmatched, but the confusion explains it: not missed as well
    assert (c["matched"], c["duplicate"], c["class_confusion"], c["missed"]) == (1, 1, 1, 0)
    assert c["split"] == 0 and c["merged"] == 0
    assert c["false_positives"] == 2


def test_hungarian_maximises_total_iou_where_greedy_would_not():
    iou = np.array([[0.9, 0.8], [0.85, 0.0]])
    rows, cols = hungarian_match(iou, 0.5)
    assert sorted(zip(rows.tolist(), cols.tolist(), strict=True)) == [(0, 1), (1, 0)]
    rows, cols = hungarian_match(np.array([[0.4, 0.3]]), 0.5)
    assert rows.size == 0


@pytest.mark.parametrize("num_labels", [2, 11, 15, 16, 40])
def test_confusion_matrix_leaves_ignore_out(num_labels):
    rng = np.random.default_rng(num_labels)
    gt = rng.integers(0, num_labels, (37, 41)).astype(np.uint8)
    gt[rng.random(gt.shape) < 0.2] = 255
    pred = rng.integers(0, num_labels, (37, 41)).astype(np.uint8)
    valid = gt != 255
    expected = np.zeros((num_labels, num_labels), np.int64)
    np.add.at(expected, (gt[valid].astype(int), pred[valid].astype(int)), 1)
    assert np.array_equal(confusion_matrix(gt, pred, num_labels), expected)

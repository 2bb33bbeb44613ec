"""The gap accounting: hand-built cases with known deltas for every row; every variant against a
full evaluation of its fixed predictions; all fixes together give 100, and each stated
exception; a fix with nothing to fix changes nothing."""

import math

import numpy as np
import pycocotools.mask as mask_util
import pytest
from segcontrast.data.masks import GroundTruth
from segcontrast.engine.evaluator import SegContrastEvaluator, predictions_from_output
from segcontrast.evaluation.accounting.assignment import ERROR_TYPES
from segcontrast.evaluation.accounting.dataset_deltas import VARIANT_NAMES
from segcontrast.evaluation.image_eval import oracle_predictions
from segcontrast.evaluation.settings import EvalSettings

from tests.evaluation.helpers import (
    box_mask,
    coco_reference,
    evaluate,
    image_dict,
    instances,
    random_dataset,
    register,
)
from tests.evaluation.synthetic import synthetic_dataset, synthetic_predictions

H, W = 20, 40
METRICS = ("semantic_mIoU", "instance_mIoU", "PQ", "AP")
AP_HALF = 100 * 51 / 101 / 10  # AP when only IoU 0.5 counts and recall is 1/2 (51 of 101 points)


def _accounting(records, preds, names=("x", "y"), **kwargs):
    name = register(records, list(names))
    return evaluate(name, {r["image_id"]: p for r, p in zip(records, preds, strict=True)},
                    **kwargs)["accounting"]


def _check(acc, row, expected, count=1):
    """``row`` has these deltas (None: left out, NaN); every other row (but ``all``) occurs
    nowhere, delta 0."""
    assert acc[f"count-{row}"] == count
    for metric, value in zip(METRICS, expected, strict=True):
        if value is None:
            assert math.isnan(acc[f"delta_{metric}-{row}"]), metric
        else:
            assert acc[f"delta_{metric}-{row}"] == pytest.approx(value, abs=1e-9), metric
    for other in ERROR_TYPES:
        if other != row and acc[f"count-{other}"] == 0:
            assert all(acc[f"delta_{m}-{other}"] == 0.0 for m in METRICS
                       if (other, m) != ("low_score", "AP")), other


def _all_fixed_is_100(acc):
    for metric in METRICS:
        assert acc[metric] + acc[f"delta_{metric}-all"] == pytest.approx(100.0, abs=1e-9), metric


def test_merged_two_touching_objects_predicted_as_one():
    a, b = box_mask(H, W, 0, 0, 10, 10), box_mask(H, W, 0, 10, 10, 20)
    acc = _accounting([image_dict(1, [a, b], [0, 0])], [instances([a | b], [0], [0.9])])
    # one object matched at IoU 0.5: instance mIoU 25; PQ needs IoU > 0.5: 0; AP at IoU 0.5
    assert (acc["semantic_mIoU"], acc["instance_mIoU"], acc["PQ"]) == (100.0, 25.0, 0.0)
    _check(acc, "merged", (0.0, 75.0, 100.0, 100 - AP_HALF))
    _all_fixed_is_100(acc)


def test_split_one_object_in_two_halves():
    a = box_mask(H, W, 0, 0, 10, 20)
    left, right = box_mask(H, W, 0, 0, 10, 10), box_mask(H, W, 0, 10, 10, 20)
    acc = _accounting([image_dict(1, [a], [0])], [instances([left, right], [0, 0], [0.9, 0.8])])
    # AP: found at IoU 0.5 only, with recall 1: 10
    _check(acc, "split", (0.0, 50.0, 100.0, 90.0))
    _all_fixed_is_100(acc)


def test_duplicate_costs_the_semantic_side_its_extra_pixels_only():
    a = box_mask(H, W, 0, 0, 10, 10)
    shifted = box_mask(H, W, 0, 1, 10, 11)  # IoU 90 / 110 with a (and with its match)
    acc = _accounting([image_dict(1, [a], [0])], [instances([a, shifted], [0, 0], [0.9, 0.8])])
    # its 10 pixels outside a are the only loss: the panoptic rule drops it (it would lose
    # 90 % of its mask) and AP ranks it after the true positive
    _check(acc, "duplicate", (100 - 100 * 100 / 110, 0.0, 0.0, 0.0))
    _all_fixed_is_100(acc)


def test_class_confusion_is_relabelled():
    a = box_mask(H, W, 0, 0, 10, 10)
    acc = _accounting([image_dict(1, [a], [0])], [instances([a], [1], [0.9])])
    assert acc["count-missed"] == 0  # the confusion explains the miss
    _check(acc, "class_confusion", (100.0, 100.0, 100.0, 100.0))


def test_localisation_is_moved_onto_its_object():
    a = box_mask(H, W, 0, 0, 10, 10)
    beside = box_mask(H, W, 0, 6, 10, 16)  # IoU 40 / 160 = 0.25
    acc = _accounting([image_dict(1, [a], [0])], [instances([beside], [0], [0.9])])
    _check(acc, "localisation", (75.0, 100.0, 100.0, 100.0))


def test_mask_quality_made_exact():
    a = box_mask(H, W, 0, 0, 10, 10)
    acc = _accounting([image_dict(1, [a], [0])],
                      [instances([box_mask(H, W, 0, 0, 10, 9)], [0], [0.9])])
    # IoU 0.9: true positive at 9 of COCO's 10 thresholds; PQ = SQ = 90
    _check(acc, "mask_quality", (10.0, 10.0, 10.0, 10.0))


def test_missed_object_added():
    a, b = box_mask(H, W, 0, 0, 10, 10), box_mask(H, W, 10, 30, 20, 40)
    acc = _accounting([image_dict(1, [a, b], [0, 0])], [instances([a], [0], [0.9])])
    assert acc["PQ"] == pytest.approx(100 / 1.5)
    _check(acc, "missed", (50.0, 50.0, 100 - 100 / 1.5, 100 - 10 * AP_HALF))


def test_background_false_positive_removed():
    a = box_mask(H, W, 0, 0, 10, 10)
    nowhere = box_mask(H, W, 15, 30, 20, 40)  # 50 pixels on background
    acc = _accounting([image_dict(1, [a], [0])], [instances([a, nowhere], [0, 0], [0.9, 0.8])])
    _check(acc, "background", (100 - 100 * 100 / 150, 0.0, 100 - 100 / 1.5, 0.0))


def test_prediction_in_a_crowd_region_removed():
    a = box_mask(H, W, 0, 0, 10, 10)
    crowd = box_mask(H, W, 10, 20, 20, 40)
    half_in = box_mask(H, W, 8, 25, 13, 29)  # 20 pixels, 12 in the crowd region (0.6)
    acc = _accounting([image_dict(1, [a, crowd], [0, 0], [0, 1])],
                      [instances([a, half_in], [0, 0], [0.9, 0.95])])
    # semantic: its 8 pixels outside the crowd region; PQ: mostly on crowd, ignored; AP:
    # ignored up to IoU 0.6, a false positive ranked first at the 7 thresholds above
    assert acc["AP"] == pytest.approx(65.0)
    _check(acc, "in_crowd", (100 - 100 * 100 / 108, 0.0, 0.0, 35.0))
    _all_fixed_is_100(acc)


def test_low_score_predictions_are_counted_and_left_out_of_ap():
    a, b = box_mask(H, W, 0, 0, 10, 10), box_mask(H, W, 10, 30, 20, 40)
    acc = _accounting([image_dict(1, [a, b], [0, 0])], [instances([a, b], [0, 0], [0.9, 0.3])],
                      score_threshold=0.5)
    # b is found at score 0.3: a miss for the instance side, a true positive for AP. Removing
    # it would lower AP: for AP a prediction below the score threshold is no error, so the row
    # has no AP delta; the other sides never see it
    assert acc["AP"] == 100.0
    _check(acc, "low_score", (0.0, 0.0, 0.0, None))
    _check(acc, "missed", (50.0, 50.0, 100 - 100 / 1.5, 0.0))
    _all_fixed_is_100(acc)


# -- every variant equals a full evaluation of its fixed predictions ---------------------------

def _random(seed, n_images=4, num_classes=3, height=24, width=30):
    dicts, preds = random_dataset(seed, n_images, num_classes, height, width, max_pred=10,
                                  id_stride=1000)
    return dicts, preds, [f"c{k}" for k in range(num_classes)]


def _headlines(res):
    semantic = res.get("semantic_from_instances", res["semantic"])
    return {"semantic_mIoU": semantic["mIoU"], "instance_mIoU": res["instance"]["mIoU"],
            "PQ": res["panoptic"]["PQ"], "AP": res["segm"]["AP"]}


def _fixed_evaluation(name, dicts, preds, row, num_classes, score_threshold):
    ev = SegContrastEvaluator(name, distributed=False, accounting=False,
                              score_threshold=score_threshold)
    for d in dicts:
        gt = GroundTruth.from_dataset_dict(d, num_classes)
        pred = predictions_from_output({"instances": preds[d["image_id"]]}, d["height"],
                                       d["width"], EvalSettings(), num_classes)
        ev.add_predictions(d["image_id"], oracle_predictions(
            gt, pred, row, iou_threshold=0.5, score_threshold=score_threshold))
    return _headlines(ev.evaluate())


def _same(a, b, tol=1e-9):
    return (math.isnan(a) and math.isnan(b)) or abs(a - b) <= tol


def test_every_variant_equals_the_full_evaluation_of_its_fixed_predictions():
    seen = set()
    for seed in range(14):
        score_threshold = 0.0 if seed % 2 else 0.6
        if seed < 12:
            dicts, preds, names = _random(seed)
        elif seed == 12:  # the benchmark's workload: merges, splits, duplicates of polygons
            dicts = synthetic_dataset(4, height=96, width=128, seed=8)
            preds = {d["image_id"]: synthetic_predictions(d, seed=8) for d in dicts}
            names = [f"class{k}" for k in range(10)]
        else:  # more than 15 classes: the semantic codes no longer fit in uint8
            dicts, preds, names = _random(seed, num_classes=20, n_images=6)
        name = register(dicts, names)
        res = evaluate(name, preds, score_threshold=score_threshold)
        acc = res["accounting"]
        base = _headlines(res)
        for metric in METRICS:
            assert base[metric] == acc[metric] or _same(base[metric], acc[metric], 0)
        for row in VARIANT_NAMES:
            if acc[f"count-{row}"] == 0:
                continue
            seen.add(row)
            fixed = _fixed_evaluation(name, dicts, preds, row, len(names), score_threshold)
            for metric in METRICS:
                if (row, metric) == ("low_score", "AP"):  # left out: no error for AP
                    assert math.isnan(acc["delta_AP-low_score"])
                    continue
                assert _same(acc[metric] + acc[f"delta_{metric}-{row}"], fixed[metric]), (
                    seed, row, metric, acc[metric] + acc[f"delta_{metric}-{row}"],
                    fixed[metric])
    assert seen == set(VARIANT_NAMES)


def test_a_fix_with_nothing_to_fix_changes_nothing():
    checked = 0
    for seed in range(6):
        dicts, preds, names = _random(50 + seed, n_images=3)
        name = register(dicts, names)
        acc = evaluate(name, preds, score_threshold=0.3)["accounting"]
        for row in ERROR_TYPES:
            if acc[f"count-{row}"] == 0:
                assert all(acc[f"delta_{m}-{row}"] == 0.0 for m in METRICS
                           if (row, m) != ("low_score", "AP"))
        for d in dicts:  # per image: the oracle of an absent error returns the predictions
            gt = GroundTruth.from_dataset_dict(d, len(names))
            pred = predictions_from_output({"instances": preds[d["image_id"]]}, d["height"],
                                           d["width"], EvalSettings(), len(names))
            single = evaluate(register([d], names), {d["image_id"]: preds[d["image_id"]]},
                              score_threshold=0.3)["accounting"]
            for row in ERROR_TYPES:
                if single[f"count-{row}"]:
                    continue
                fixed = oracle_predictions(gt, pred, row, iou_threshold=0.5,
                                           score_threshold=0.3)
                assert np.array_equal(fixed.classes, pred.classes)
                assert np.array_equal(fixed.scores, pred.scores)
                assert np.array_equal(fixed.ap_areas, pred.ap_areas)
                assert np.array_equal(fixed.masks.boxes, pred.masks.boxes)
                assert all(a is b for a, b in zip(fixed.masks.crops, pred.masks.crops,
                                                  strict=True))
                checked += 1
    assert checked > 20


# -- all fixes together give 100, and the exceptions -------------------------------------------

def _grid_scene(rng, image_id, num_classes, first_id):
    """Objects in separate cells of a grid (no two overlap), some crowd; noisy predictions."""
    h, w, cell = 30, 40, 10
    masks, classes, crowd = [], [], []
    for cy in range(0, h, cell):
        for cx in range(0, w, cell):
            if rng.random() < 0.45:
                y0, x0 = cy + rng.integers(0, 3), cx + rng.integers(0, 3)
                masks.append(box_mask(h, w, y0, x0, y0 + rng.integers(3, 8),
                                      x0 + rng.integers(3, 8)))
                classes.append(int(rng.integers(num_classes)))
                crowd.append(int(rng.random() < 0.15))
    record = image_dict(image_id, masks, classes, crowd, height=h, width=w, first_id=first_id) \
        if masks else {"file_name": "", "height": h, "width": w, "image_id": image_id,
                       "annotations": []}
    pred_masks, pred_classes, scores = [], [], []
    for m, c in zip(masks, classes, strict=True):
        for _ in range(int(rng.integers(0, 3))):
            shifted = np.roll(m, int(rng.integers(-2, 3)), axis=int(rng.integers(0, 2)))
            pred_masks.append(shifted & (rng.random((h, w)) < 0.9) if rng.random() < 0.3
                              else shifted)
            pred_classes.append(c if rng.random() < 0.8 else int(rng.integers(num_classes)))
            scores.append(float(rng.random()))
    for _ in range(int(rng.integers(0, 3))):
        y, x = int(rng.integers(0, h - 4)), int(rng.integers(0, w - 4))
        pred_masks.append(box_mask(h, w, y, x, y + 4, x + int(rng.integers(2, 12))))
        pred_classes.append(int(rng.integers(num_classes)))
        scores.append(float(rng.random()))
    return record, instances(pred_masks, pred_classes, scores, height=h, width=w)


@pytest.mark.parametrize("score_threshold", [0.0, 0.5])
def test_all_fixes_together_give_100(score_threshold):
    rng = np.random.default_rng(int(score_threshold * 10))
    for trial in range(8):
        dicts, preds, next_id = [], {}, 1
        for i in range(4):
            record, pred = _grid_scene(rng, 10 * trial + i, 3, next_id)
            next_id += len(record["annotations"])
            dicts.append(record)
            preds[record["image_id"]] = pred
        res = evaluate(register(dicts, ["a", "b", "c"]), preds, score_threshold=score_threshold)
        acc = res["accounting"]
        if not any(not a["iscrowd"] for d in dicts for a in d["annotations"]):
            continue
        assert acc["count-all"] > 0
        _all_fixed_is_100(acc)


def test_all_fixes_on_overlapping_objects_give_100_but_where_a_rule_forbids_it():
    # random scenes have overlapping objects: instance mIoU and AP still reach 100; semantic
    # mIoU too (or is undefined); PQ only where no object loses more than half of its pixels
    # to an overlapping one (the panoptic drop rule applies to exact copies as well)
    for seed in range(10):
        dicts, preds, names = _random(200 + seed)
        acc = evaluate(register(dicts, names), preds)["accounting"]
        if acc["count-all"] == 0:
            continue
        fixed = {m: acc[m] + acc[f"delta_{m}-all"] for m in METRICS}
        assert fixed["instance_mIoU"] == pytest.approx(100.0, abs=1e-9)
        assert fixed["AP"] == pytest.approx(100.0, abs=1e-9)
        assert math.isnan(fixed["semantic_mIoU"]) or fixed["semantic_mIoU"] == pytest.approx(100)
        if not _an_object_mostly_covered(dicts):
            assert fixed["PQ"] == pytest.approx(100.0, abs=1e-9)


def _an_object_mostly_covered(dicts):
    for d in dicts:
        masks = [mask_util.decode(a["segmentation"]).astype(bool) for a in d["annotations"]
                 if not a["iscrowd"]]
        for i, m in enumerate(masks):
            others = np.zeros_like(m)
            for j, o in enumerate(masks):
                if j != i:
                    others |= o
            if 2 * np.count_nonzero(m & others) > np.count_nonzero(m):
                return True
    return False


def test_exception_more_than_100_objects_of_a_class_in_one_image():
    h, w = 20, 101
    masks = [box_mask(h, w, 0, i, 2, i + 1) for i in range(101)]
    acc = _accounting([image_dict(1, masks, [0] * 101, height=h, width=w)],
                      [instances([], [], [], height=h, width=w)], names=["x"])
    fixed = {m: acc[m] + acc[f"delta_{m}-all"] for m in METRICS}
    assert fixed["semantic_mIoU"] == fixed["instance_mIoU"] == fixed["PQ"] == 100.0
    # COCO scores 100 detections per class and image: recall 100/101, 100 of 101 points
    assert fixed["AP"] == pytest.approx(100 * 100 / 101, abs=1e-9)


def test_exception_annotation_id_0():
    a, b = box_mask(H, W, 0, 0, 10, 10), box_mask(H, W, 10, 30, 20, 40)
    record = image_dict(1, [a, b], [0, 0], first_id=0)  # ids 0 and 1
    pred = instances([box_mask(H, W, 0, 0, 10, 9)], [0], [0.9])
    acc = _accounting([record], [pred])
    fixed_ap = acc["AP"] + acc["delta_AP-all"]
    assert fixed_ap < 100
    # pycocotools itself on the oracle's predictions: a match to id 0 counts as none
    gt = GroundTruth.from_dataset_dict(record, 2)
    pred = predictions_from_output({"instances": pred}, H, W, EvalSettings(), 2)
    oracle = oracle_predictions(gt, pred, "all", iou_threshold=0.5, score_threshold=0.0)
    dense = [oracle.masks.to_dense(i) for i in range(len(oracle.masks))]
    stats, _, _ = coco_reference([record], {1: instances(dense, oracle.classes, oracle.scores,
                                                         boxes=False)}, 2)
    assert fixed_ap == pytest.approx(stats["AP"], abs=1e-9)
    for metric in ("semantic_mIoU", "instance_mIoU", "PQ"):
        assert acc[metric] + acc[f"delta_{metric}-all"] == pytest.approx(100.0, abs=1e-9)


def test_exception_an_object_without_pixels():
    a = box_mask(H, W, 0, 0, 10, 10)
    record = image_dict(1, [a, np.zeros((H, W), bool)], [0, 0])
    acc = _accounting([record], [instances([a], [0], [0.9])])
    # nothing can match an empty mask: it stays missed, instance mIoU stops at 50, AP's
    # recall at 1/2; it has no panoptic segment (no false negative) and no pixels
    assert acc["instance_mIoU"] + acc["delta_instance_mIoU-all"] == pytest.approx(50.0)
    assert acc["AP"] + acc["delta_AP-all"] == pytest.approx(10 * AP_HALF)
    assert acc["PQ"] + acc["delta_PQ-all"] == 100.0
    assert acc["semantic_mIoU"] + acc["delta_semantic_mIoU-all"] == 100.0
    assert acc["count-missed"] == 1 and acc["delta_instance_mIoU-missed"] == 0.0


def test_exception_semantic_miou_undefined():
    a = box_mask(H, W, 0, 0, 10, 10)
    # the same pixels annotated with two classes: all ignored, semantic mIoU undefined
    acc = _accounting([image_dict(1, [a, a], [0, 1])], [instances([a], [0], [0.9])])
    assert math.isnan(acc["semantic_mIoU"])
    assert math.isnan(acc["delta_semantic_mIoU-all"])
    assert math.isnan(acc["delta_semantic_mIoU-missed"])


def test_exception_panoptic_drop_rule_on_overlapping_objects():
    a = box_mask(H, W, 0, 0, 10, 10)
    b = box_mask(H, W, 0, 4, 10, 14)  # 60 of its 100 pixels inside a
    acc = _accounting([image_dict(1, [a, b], [0, 0])],
                      [instances([], [], [], height=H, width=W)], names=["x"])
    # both added with score 1, a first: b's copy would lose 60 % to a's and is dropped
    assert acc["PQ"] + acc["delta_PQ-all"] == pytest.approx(100 / 1.5)
    for metric in ("semantic_mIoU", "instance_mIoU", "AP"):
        assert acc[metric] + acc[f"delta_{metric}-all"] == pytest.approx(100.0, abs=1e-9)

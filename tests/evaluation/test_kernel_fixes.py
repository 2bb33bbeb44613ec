"""The accounting kernel's own fixed lists against the lists made in Python.

``image_variants.account_image`` hands the kernel the error assignment and the kernel makes
every fix itself; tests/evaluation/python_fixes_impl.py makes them with fixes.py and has the
same kernel score them. On the randomised images of test_accounting_kernel.py (merged, split,
duplicates, class confusions, some removed, localisation, mask quality, missed objects,
background, predictions in crowd regions and below the score threshold, objects without
pixels, images without predictions or objects), with PQ on and off and score thresholds 0 and
0.5, every packed array must be equal, dtype and shape included, floats to the last bit.
"""

import numpy as np
import pytest
from segcontrast.data.masks import GroundTruth, MaskCrops
from segcontrast.evaluation import image_eval
from segcontrast.evaluation.accounting import image_variants
from segcontrast.evaluation.accounting.assignment import CONFUSION, ERROR_TYPES, LOCALISATION
from segcontrast.evaluation.predictions import Predictions

from tests.evaluation import python_fixes_impl
from tests.evaluation.test_accounting_kernel import _evaluate, _scene
from tests.evaluation.test_kernels import crops_of

SEEDS = range(150)
FIELDS = ("counts", "variants", "iou_variants", "gt_iou", "pq_rows", "pq_iou", "ap_groups",
          "ap_dets", "ap_ious")


def _same_accounting(found, expected, what: str) -> None:
    a, b = found.record.accounting, expected.record.accounting
    for name in FIELDS:
        x, y = getattr(a, name), getattr(b, name)
        assert x.dtype == y.dtype and x.shape == y.shape, (what, name, x, y)
        np.testing.assert_array_equal(x, y, err_msg=f"{what}: {name}")
    assert list(found.accounting_confusion) == list(expected.accounting_confusion), what
    for row, delta in found.accounting_confusion.items():
        other = expected.accounting_confusion[row]
        assert delta.dtype == other.dtype and delta.shape == other.shape, what
        np.testing.assert_array_equal(delta, other, err_msg=f"{what}: row {row}")


@pytest.mark.parametrize("score_threshold", [0.0, 0.5])
@pytest.mark.parametrize("panoptic", [True, False])
def test_the_kernels_fixes_equal_the_python_fixes(panoptic, score_threshold, monkeypatch):
    seen = {"rows": np.zeros(len(ERROR_TYPES), np.int64), "fix_removes": 0,
            "objects_without_pixels": 0, "no_predictions": 0, "no_objects": 0}
    made = image_variants.account_image

    def account_image(ctx, errors, original, keep):
        seen["rows"] += errors.counts > 0
        aims = (errors.pred_type == CONFUSION) | (errors.pred_type == LOCALISATION)
        seen["fix_removes"] += int(np.count_nonzero(aims & errors.pred_fix_removes))
        seen["objects_without_pixels"] += int(np.count_nonzero(
            ctx.gt.masks.areas[ctx.regular] == 0))
        seen["no_predictions"] += len(original.scores) == 0
        seen["no_objects"] += len(ctx.regular) == 0
        return made(ctx, errors, original, keep)

    for seed in SEEDS:
        image, gt, pred = _scene(seed)
        with monkeypatch.context() as patch:
            patch.setattr(image_eval, "account_image", account_image)
            found = _evaluate(image, gt, pred, panoptic, score_threshold)
        with monkeypatch.context() as patch:
            patch.setattr(image_eval, "account_image", python_fixes_impl.account_image)
            expected = _evaluate(image, gt, pred, panoptic, score_threshold)
        _same_accounting(found, expected, f"seed {seed}")
    # the scenes make every error row occur, several times, and the rarer cases too
    rows = dict(zip(ERROR_TYPES, seen.pop("rows").tolist(), strict=True))
    low_score = rows.pop("low_score")
    assert min(rows.values()) >= 5, rows
    assert (low_score >= 5) == (score_threshold > 0), low_score
    assert min(seen.values()) >= 3, seen


def _image(height: int, width: int, gt_masks: np.ndarray, gt_classes: list[int],
           pred_masks: np.ndarray, pred_classes: list[int], scores: list[float]):
    gt_crops = crops_of(gt_masks)
    gt = GroundTruth(gt_crops, np.array(gt_classes, np.int64), np.zeros(len(gt_classes), bool),
                     gt_crops.areas.astype(np.float64), np.arange(1, len(gt_classes) + 1))
    pred_crops = crops_of(pred_masks) if len(pred_masks) else MaskCrops.empty(height, width)
    pred = Predictions(pred_crops, np.array(pred_classes, np.int64), np.array(scores, float),
                       pred_crops.areas.astype(np.float64))
    return {"image_id": 1, "file_name": "", "height": height, "width": width}, gt, pred


@pytest.mark.parametrize("panoptic", [True, False])
def test_empty_images_and_objects_without_pixels(panoptic):
    empty = np.zeros((0, 6, 5), bool)
    blank = np.zeros((2, 6, 5), bool)  # objects and predictions without pixels
    some = np.zeros((2, 6, 5), bool)
    some[0, 1:3, 1:4] = some[1, 4:, :2] = True
    cases = {
        "nothing": (empty, [], empty, [], []),
        "no predictions": (some, [0, 1], empty, [], []),
        "no objects": (empty, [], some, [0, 1], [0.9, 0.2]),
        "blank objects": (blank, [0, 0], some, [0, 0], [0.9, 0.9]),
        "blank predictions": (some, [1, 1], blank, [1, 0], [0.9, 0.1]),
        "all blank": (blank, [0, 1], blank, [1, 0], [0.9, 0.1]),
    }
    for what, (gt_masks, gt_classes, pred_masks, pred_classes, scores) in cases.items():
        image, gt, pred = _image(6, 5, gt_masks, gt_classes, pred_masks, pred_classes, scores)
        for threshold in (0.0, 0.5):
            found = _evaluate(image, gt, pred, panoptic, threshold)
            with pytest.MonkeyPatch.context() as patch:
                patch.setattr(image_eval, "account_image", python_fixes_impl.account_image)
                expected = _evaluate(image, gt, pred, panoptic, threshold)
            _same_accounting(found, expected, f"{what}, threshold {threshold}")
    found = _evaluate(*_image(6, 5, empty, [], empty, [], []), panoptic, 0.0)
    assert found.record.accounting.variants.shape == (0,)


def _one_image_args():
    """The kernel's arguments for an image with one merged prediction and one missed object."""
    objects = np.zeros((3, 8, 8), bool)
    objects[0, :4, :4] = objects[1, 4:, 4:] = objects[2, :2, 6:] = True
    merged = (objects[0] | objects[1])[None]
    image, gt, pred = _image(8, 8, objects, [0, 0, 0], merged, [0], [0.9])
    captured = {}

    def account_image(ctx, errors, original, keep):
        captured.update(ctx=ctx, errors=errors, original=original, keep=keep)
        return image_variants.account_image(ctx, errors, original, keep)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(image_eval, "account_image", account_image)
        _evaluate(image, gt, pred, False, 0.0)
    assert captured["errors"].counts[0] == 1 and crops_of(merged).areas[0] > 0
    return captured


@pytest.mark.parametrize("field, value", [
    ("pred_target", np.array([5])),  # only read by the fixes that aim at an object
    ("pred_match", np.array([3])),
    ("merged_objects", [np.array([0, 7])]),
    ("split_objects", np.array([9])),
    ("gt_missed", np.zeros(7, bool)),
    ("pred_type", np.zeros(3, np.int64)),
])
def test_an_assignment_out_of_range_is_refused_not_read(field, value):
    captured = _one_image_args()
    errors = captured["errors"]
    errors.pred_type[0] = CONFUSION if field == "pred_target" else errors.pred_type[0]
    if field == "split_objects":
        errors.split_pieces = [np.array([0])]
    setattr(errors, field, value)
    with pytest.raises(ValueError, match="errors"):
        image_variants.account_image(captured["ctx"], errors, captured["original"],
                                     captured["keep"])


def test_the_rows_follow_the_assignments_order():
    # the kernel numbers the rows as assignment.py does: a merged prediction's fix is row 0
    # and replaces it by its pieces; a missed object is added by row 6 (every row's fix is
    # compared with fixes.py above)
    captured = _one_image_args()
    record, _ = image_variants.account_image(captured["ctx"], captured["errors"],
                                             captured["original"], captured["keep"])
    assert ERROR_TYPES[0] == "merged" and ERROR_TYPES[6] == "missed"
    assert record.variants.tolist() == [0, 6, len(ERROR_TYPES)]

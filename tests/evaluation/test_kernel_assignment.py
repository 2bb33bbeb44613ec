"""The error assignment made by the compiled kernel against the numpy version it replaced
(tests/evaluation/assignment_reference.py), on the randomised images of
test_accounting_kernel.py: every field equal, dtype and shape included, the lists item by item.
"""

import numpy as np
import pytest
from segcontrast.evaluation import image_eval
from segcontrast.evaluation.accounting import assignment
from segcontrast.evaluation.accounting.assignment import (
    CONFUSION,
    ERROR_TYPES,
    LOCALISATION,
    ErrorAssignment,
)
from segcontrast.evaluation.metrics.instance import InstanceMatch

from tests.evaluation import assignment_reference
from tests.evaluation.test_accounting_kernel import _evaluate, _scene

SEEDS = range(150)


def _same_assignment(found: ErrorAssignment, expected: ErrorAssignment, what: str) -> None:
    for name in ("pred_type", "pred_target", "pred_fix_removes", "split_objects", "gt_missed",
                 "counts", "pred_match"):
        x, y = getattr(found, name), getattr(expected, name)
        assert x.dtype == y.dtype and x.shape == y.shape, (what, name, x, y)
        np.testing.assert_array_equal(x, y, err_msg=f"{what}: {name}")
    for name in ("merged_objects", "split_pieces"):
        xs, ys = getattr(found, name), getattr(expected, name)
        assert isinstance(xs, list) and len(xs) == len(ys), (what, name)
        for x, y in zip(xs, ys, strict=True):
            assert x.dtype == y.dtype and x.shape == y.shape, (what, name, x, y)
            np.testing.assert_array_equal(x, y, err_msg=f"{what}: {name}")


def _arguments(seeds, score_threshold: float, iou_threshold: float) -> list[tuple]:
    """assign_errors' arguments of every image the evaluation scores."""
    captured = []

    def assign_errors(*args):
        captured.append(args)
        return assignment.assign_errors(*args)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(image_eval, "assign_errors", assign_errors)
        for seed in seeds:
            image, gt, pred = _scene(seed)
            image_eval.evaluate_image(
                image, gt, pred, num_classes=3, iou_threshold=iou_threshold,
                score_threshold=score_threshold, boundary_dilation=None, accounting=False)
    return captured


@pytest.mark.parametrize("score_threshold, iou_threshold", [(0.0, 0.5), (0.5, 0.5), (0.0, 0.75)])
def test_the_kernels_assignment_equals_the_numpy_one(score_threshold, iou_threshold):
    seen = {"fix_removes": 0, "fix_taken": 0, "no_predictions": 0, "no_objects": 0,
            "duplicate_flag": 0}
    rows = np.zeros(len(ERROR_TYPES), np.int64)
    for n, args in enumerate(_arguments(SEEDS, score_threshold, iou_threshold)):
        found = assignment.assign_errors(*args)
        expected = assignment_reference.assign_errors(*args)
        _same_assignment(found, expected, f"image {n}")
        rows += expected.counts > 0
        aims = (expected.pred_type == CONFUSION) | (expected.pred_type == LOCALISATION)
        seen["fix_removes"] += int(np.count_nonzero(aims & expected.pred_fix_removes))
        seen["fix_taken"] += int(np.count_nonzero(aims & ~expected.pred_fix_removes))
        seen["no_predictions"] += len(expected.pred_type) == 0
        seen["no_objects"] += len(expected.gt_missed) == 0
        seen["duplicate_flag"] += int(np.count_nonzero(args[7].pred_duplicate))
    # every row occurs, several times (low score only with a threshold), and the rarer cases
    counts = dict(zip(ERROR_TYPES, rows.tolist(), strict=True))
    assert (counts.pop("low_score") >= 5) == (score_threshold > 0), counts
    assert min(counts.values()) >= 5, counts
    assert min(seen.values()) >= 3, seen


def test_a_matching_without_duplicate_flags_is_read_as_none_set():
    args = [a for a in _arguments(SEEDS[:40], 0.0, 0.5)
            if len(a[0]) and np.count_nonzero(a[7].pred_duplicate)]
    assert args
    for a in args:
        match = a[7]
        unflagged = InstanceMatch(match.pred_index, match.gt_index, match.pair_iou,
                                  match.gt_iou, match.pred_matched, match.pred_ignored, None)
        b = (*a[:7], unflagged, *a[8:])
        _same_assignment(assignment.assign_errors(*b), assignment_reference.assign_errors(*b),
                         "no flags")


def test_inputs_out_of_range_are_refused():
    args = next(a for a in _arguments(SEEDS, 0.0, 0.5) if len(a[0]) and len(a[3]))
    match = args[7]
    outside = InstanceMatch(np.array([0]), np.array([len(args[3])]), np.ones(1), match.gt_iou,
                            match.pred_matched, match.pred_ignored, match.pred_duplicate)
    with pytest.raises(ValueError, match="outside the image"):
        assignment.assign_errors(*args[:7], outside, *args[8:])
    with pytest.raises(ValueError, match=r"\(N, G\)"):
        assignment.assign_errors(*args[:5], args[5][:, :0], *args[6:])
    with pytest.raises(TypeError):  # pixel counts: floats are refused, not truncated
        assignment.assign_errors(*args[:5], args[5] + 0.5, *args[6:])


def test_the_evaluation_counts_come_from_the_kernels_assignment():
    # evaluate_image's counts, with the numpy assignment instead, are the same
    for seed in SEEDS[:30]:
        image, gt, pred = _scene(seed)
        found = _evaluate(image, gt, pred, True, 0.5)
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(image_eval, "assign_errors", assignment_reference.assign_errors)
            expected = _evaluate(image, gt, pred, True, 0.5)
        assert found.record.counts == expected.record.counts, seed

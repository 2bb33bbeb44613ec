"""The fixed prediction lists (fixes._apply's one gather per table) equal the straightforward
construction (tests/evaluation/fixes_reference.py) on the kernel test's randomised images:
every field, dtype and shape included, every row's fix and all fixes together. (fixes.py is
the oracle's lists, oracle_predictions, and the reference of the kernel's own lists:
tests/evaluation/test_kernel_fixes.py.)"""

import numpy as np
import pytest
from segcontrast.evaluation import image_eval
from segcontrast.evaluation.accounting import fixes, image_variants
from segcontrast.evaluation.accounting.assignment import ERROR_TYPES, LOW_SCORE

from tests.evaluation.fixes_reference import apply_reference
from tests.evaluation.test_accounting_kernel import SEEDS, _evaluate, _scene


def _same_list(found: fixes.PredList, expected: fixes.PredList, what: str) -> None:
    for name in ("boxes", "areas"):
        x, y = getattr(found.masks, name), getattr(expected.masks, name)
        assert x.dtype == y.dtype and x.shape == y.shape, (what, name)
        np.testing.assert_array_equal(x, y, err_msg=f"{what}: {name}")
    assert (found.masks.height, found.masks.width) == (expected.masks.height,
                                                       expected.masks.width)
    assert len(found.masks.crops) == len(expected.masks.crops), what
    for x, y in zip(found.masks.crops, expected.masks.crops, strict=True):
        assert x.dtype == y.dtype and x.shape == y.shape, what
        np.testing.assert_array_equal(x, y, err_msg=what)
    for name in ("classes", "scores", "ap_areas", "source", "mask_source", "gt_copy",
                 "touched_boxes"):
        x, y = getattr(found, name), getattr(expected, name)
        assert x.dtype == y.dtype and x.shape == y.shape, (what, name, x, y)
        np.testing.assert_array_equal(x, y, err_msg=f"{what}: {name}")
    assert found.touched_classes == expected.touched_classes, what


def _fix_arguments(seeds, score_threshold: float) -> list[tuple]:
    """(errors, original, keep, objects, their classes) of each image the accounting sees."""
    captured = []

    def account_image(ctx, errors, original, keep):
        captured.append((errors, original, keep, ctx.gt.masks.subset(ctx.regular),
                         ctx.gt.classes[ctx.regular]))
        return image_variants.account_image(ctx, errors, original, keep)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(image_eval, "account_image", account_image)
        for seed in seeds:
            image, gt, pred = _scene(seed)
            _evaluate(image, gt, pred, True, score_threshold)
    return captured


@pytest.mark.parametrize("score_threshold", [0.0, 0.3])
def test_every_fixed_list_equals_the_straightforward_construction(score_threshold):
    made = []
    for errors, pred, keep, gt, gt_classes in _fix_arguments(SEEDS, score_threshold):
        # the variants the accounting makes: each row that occurs, then all fixes together
        for row in np.flatnonzero(errors.counts > 0).tolist():
            if row == LOW_SCORE:
                continue
            fixed = fixes.fix_one(row, errors, pred, keep, gt, gt_classes)
            expected = apply_reference(pred, fixes._ops(row, errors, pred, keep, gt,
                                                        gt_classes))
            made.append((row, fixed, expected))
        if errors.counts.any():
            fixed = fixes.fix_all(errors, pred, keep, gt, gt_classes)
            expected = apply_reference(pred, fixes._all_ops(errors, pred, keep, gt, gt_classes))
            made.append((len(ERROR_TYPES), fixed, expected))
    rows = {row for row, _, _ in made}
    # every row's fix is made (the low-score variant is not a fix list)
    assert rows == set(range(len(ERROR_TYPES) + 1)) - {LOW_SCORE}, rows
    for row, found, expected in made:
        _same_list(found, expected, f"row {row}")


def test_a_list_made_from_a_fixed_list_equals_the_straightforward_construction():
    errors, original, keep, gt_reg, gt_classes = _fix_arguments([4], 0.0)[0]
    # a second fix on top of a first (touched classes and boxes accumulate), and no change
    for base in (fixes.fix_all(errors, original, keep, gt_reg, gt_classes), original):
        for ops in (fixes._Ops(remove={0}), fixes._Ops()):
            if ops.remove and not len(base.masks):
                continue
            _same_list(fixes._apply(base, ops), apply_reference(base, ops), "second fix")

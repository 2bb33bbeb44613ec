"""The one bootstrap implementation, AP re-accumulated per resample, and the A vs B comparison."""

import importlib.util
import math
import sys
from pathlib import Path

import numpy as np
import pytest
from segcontrast.data.masks import GroundTruth
from segcontrast.engine.evaluator import SegContrastEvaluator
from segcontrast.evaluation.compare import compare_states, resampled_metrics
from segcontrast.evaluation.metrics.bootstrap import (
    bootstrap_mean_ci,
    paired_seed_image_ci,
    percentile_ci,
    resample_weights,
)
from segcontrast.evaluation.metrics.coco_ap import coco_ap_matches, coco_segm_ap, weighted_ap

from .helpers import instances
from .synthetic import register_synthetic_dataset, synthetic_dataset, synthetic_predictions

REPO = Path(__file__).resolve().parents[2]
K = 4


def _scored(dicts, name, *, noise_seed=0, perfect=False):
    """An evaluator that saw the synthetic predictions (or the ground truth itself)."""
    register_synthetic_dataset(name, dicts, K)
    evaluator = SegContrastEvaluator(name, None, distributed=False, score_threshold=0.0)
    for d in dicts:
        inst = synthetic_predictions(d, num_classes=K, seed=noise_seed)
        if perfect:
            gt = GroundTruth.from_dataset_dict(d, K)
            keep = np.flatnonzero(~gt.crowd)
            masks = [gt.masks.to_dense(i) for i in keep]
            inst = instances(masks, gt.classes[keep], np.linspace(1, 0.5, len(keep)),
                             height=d["height"], width=d["width"])
        evaluator.process([{"image_id": d["image_id"]}], [{"instances": inst}])
    return evaluator, evaluator.evaluate()


@pytest.fixture(scope="module")
def scored():
    dicts = synthetic_dataset(24, height=96, width=128, num_classes=K, instances_per_image=6,
                              crowd_fraction=0.1, seed=3)
    return dicts, _scored(dicts, "compare_a", noise_seed=0), _scored(dicts, "compare_b",
                                                                       noise_seed=1)


def test_resample_weights_count_draws_with_replacement():
    rng = np.random.default_rng(0)
    w = resample_weights(7, 500, rng)
    assert w.shape == (500, 7) and w.dtype.kind == "i"
    assert (w.sum(axis=1) == 7).all()
    # the same draws as rng.integers, counted
    draws = np.random.default_rng(0).integers(0, 7, size=(500, 7))
    assert np.array_equal(w, np.stack([np.bincount(d, minlength=7) for d in draws]))
    # each item is drawn n/n = 1 time on average, and left out (1 - 1/n)^n of the time
    assert w.mean() == pytest.approx(1.0)
    assert (w == 0).mean() == pytest.approx((1 - 1 / 7) ** 7, abs=0.03)


def test_percentile_ci_and_mean_ci_against_numpy():
    values = np.random.default_rng(1).normal(10, 2, size=50)
    values[3] = np.nan
    low, high = bootstrap_mean_ci(values, np.random.default_rng(2), 4000)
    finite = values[np.isfinite(values)]
    draws = np.random.default_rng(2).integers(0, finite.size, size=(4000, finite.size))
    means = finite[draws].mean(axis=1)
    assert (low, high) == (np.percentile(means, 2.5), np.percentile(means, 97.5))
    assert low < finite.mean() < high
    assert high - low == pytest.approx(2 * 1.96 * finite.std() / np.sqrt(finite.size), rel=0.15)
    assert all(math.isnan(v) for v in percentile_ci(np.array([np.nan, np.inf])))


def test_the_study_uses_the_package_bootstrap():
    spec = importlib.util.spec_from_file_location("run_study", REPO / "bench" / "run_study.py")
    study = importlib.util.module_from_spec(spec)
    sys.modules["run_study"] = study
    try:
        spec.loader.exec_module(study)
    finally:
        sys.modules.pop("run_study", None)
    values = np.random.default_rng(4).uniform(0, 100, size=30)
    base = np.random.default_rng(5).uniform(0, 100, size=(30, 3))
    n = study.BOOTSTRAP_SAMPLES
    assert study._bootstrap_ci(values, np.random.default_rng(0)) == bootstrap_mean_ci(
        values, np.random.default_rng(0), n)
    assert study._paired_seed_image_ci(base + 1, base, np.random.default_rng(0)) == \
        paired_seed_image_ci(base + 1, base, np.random.default_rng(0), n)


def test_weights_of_one_give_the_evaluators_numbers(scored):
    _, (ev, res), _ = scored
    n = len(ev.state.images)
    stats = resampled_metrics(ev.state, K, np.ones((1, n)))
    for (group, key), values in stats.items():
        assert values[0] == pytest.approx(res[group][key], abs=1e-9), (group, key)
    assert {("semantic", "mIoU"), ("segm", "AP"), ("segm", "AP50"), ("instance", "mIoU"),
            ("instance", "boundary_IoU"), ("contrast", "merged")} <= set(stats)


def test_weighted_ap_equals_coco_ap_on_the_repeated_images(scored):
    _, (ev, _), _ = scored
    records = [r.ap for r in ev.state.images]
    matches = coco_ap_matches(records, K)
    rng = np.random.default_rng(7)
    weights = resample_weights(len(records), 5, rng)
    weights[0, :3] = 0  # images left out entirely
    got = weighted_ap(matches, K, weights)
    for b in range(len(weights)):
        repeated = [records[i] for i in range(len(records)) for _ in range(weights[b, i])]
        ap = coco_segm_ap(repeated, K).stats()
        # synthetic scores are continuous: no ties, so the order of equal scores cannot matter
        assert got["AP"][b] == pytest.approx(ap["AP"], abs=1e-9)
        assert got["AP50"][b] == pytest.approx(ap["AP50"], abs=1e-9)


def test_comparing_a_model_with_itself_finds_no_difference(scored):
    _, (ev, res), _ = scored
    comparison = compare_states(ev.state, ev.state, res, res, K, samples=200, seed=0)
    assert comparison.rows and not any(r.differs for r in comparison.rows)
    assert all(r.delta == 0 and r.low == 0 and r.high == 0 for r in comparison.rows)
    assert comparison.sentence.startswith("No difference between B and A")


def test_a_clearly_better_model_differs_and_the_sentence_says_where(scored):
    dicts, (ev_a, res_a), _ = scored
    ev_p, res_p = _scored(dicts, "compare_perfect", perfect=True)
    comparison = compare_states(ev_a.state, ev_p.state, res_a, res_p, K, samples=300, seed=1)
    rows = {(r.group, r.key): r for r in comparison.rows}
    for key in (("instance", "mIoU"), ("segm", "AP"), ("semantic", "mIoU")):
        row = rows[key]
        assert row.b == res_p[key[0]][key[1]] and row.a == res_a[key[0]][key[1]]
        assert row.delta == row.b - row.a
        assert row.differs and row.low > 0 and row.low <= row.delta <= row.high
    assert rows[("contrast", "missed")].differs and rows[("contrast", "missed")].high < 0
    assert "instance mIoU +" in comparison.sentence and "mask AP +" in comparison.sentence
    assert comparison.to_dict()["rows"][0]["label"] == comparison.rows[0].label


def test_comparison_is_seeded_and_its_interval_covers_the_difference(scored):
    _, (ev_a, res_a), (ev_b, res_b) = scored
    first = compare_states(ev_a.state, ev_b.state, res_a, res_b, K, samples=300, seed=5)
    again = compare_states(ev_a.state, ev_b.state, res_a, res_b, K, samples=300, seed=5)
    other = compare_states(ev_a.state, ev_b.state, res_a, res_b, K, samples=300, seed=6)
    assert first.to_dict() == again.to_dict()
    assert first.to_dict() != other.to_dict()
    for row in first.rows:
        assert row.low <= row.delta <= row.high, row.label

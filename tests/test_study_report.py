"""The loss study's statistics and verdicts (bench/run_study.py), on fabricated runs.

The study itself takes an hour; what it concludes must still follow from its numbers. These
tests feed the report made-up runs whose answer is known and check what it says.
"""

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def study():
    spec = importlib.util.spec_from_file_location("run_study", REPO / "bench" / "run_study.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["run_study"] = module  # dataclasses look their module up there
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.modules.pop("run_study", None)


def _run(per_image_miou: np.ndarray, pos_weight: float | None = None,
         best_threshold: float = 0.5, ap_at: dict | None = None) -> dict:
    """One fabricated finished run: per-image scores, curves and a threshold sweep."""
    thresholds = [0.3, 0.4, 0.5, 0.6, 0.7]
    ap_at = ap_at or {t: 40.0 for t in thresholds}
    per_image = {str(i): {"image_id": str(i), "semantic_mIoU": str(v), "instance_mIoU": str(v)}
                 for i, v in enumerate(per_image_miou)}
    row = {"iteration": 9, "loss_mask": 0.3, "loss_cls": 0.2, "mask_rcnn/accuracy": 0.9}
    if pos_weight is not None:
        row["mask_rcnn/pos_weight"] = pos_weight
    metrics = {"segm": {"AP": ap_at[0.5], "AP75": 30.0},
               "semantic": {"mIoU": float(np.mean(per_image_miou))},
               "instance": {"mIoU": float(np.mean(per_image_miou)), "boundary_IoU": 50.0},
               "contrast": {"merged": 3, "split": 1}}
    sweep = {"thresholds": thresholds, "best_threshold": best_threshold,
             "results": [{"segm": {"AP": ap_at[t]}} for t in thresholds]}
    return {"metrics": metrics, "per_image": per_image, "sweep": sweep, "curves": [row]}


def _section(study, runs, tmp_path, monkeypatch):
    monkeypatch.setattr(study, "FIGURES", tmp_path)
    findings = {"better": set(), "worse": set(), "threshold": set()}
    text = "\n".join(study._dataset_section("toy", runs, np.random.default_rng(0), findings))
    return text, findings


def test_paired_ci_of_a_constant_shift_is_that_shift(study):
    base = np.random.default_rng(1).uniform(40, 60, size=(30, 3))
    low, high = study._paired_seed_image_ci(base + 5.0, base, np.random.default_rng(0))
    # Seeds of the two sides are drawn apart, so the interval is not a point, but it is
    # centred on the shift and excludes 0.
    assert low > 0 and low < 5.0 < high


def test_paired_ci_widens_with_seed_to_seed_spread(study):
    rng = np.random.default_rng(2)
    images = rng.uniform(40, 60, size=(30, 1))
    steady = images + rng.normal(0, 0.1, size=(30, 3))
    jumpy = images + np.array([[-6.0, 0.0, 6.0]]) + rng.normal(0, 0.1, size=(30, 3))
    narrow = study._paired_seed_image_ci(steady, steady.copy(), np.random.default_rng(0))
    wide = study._paired_seed_image_ci(jumpy, steady, np.random.default_rng(0))
    assert (wide[1] - wide[0]) > 5 * (narrow[1] - narrow[0])


def test_paired_ci_skips_images_without_a_score(study):
    base = np.full((4, 3), 50.0)
    variant = base + 2.0
    variant[0, 1] = np.nan
    assert study._paired_seed_image_ci(variant, base, np.random.default_rng(0)) == (2.0, 2.0)


def test_report_names_a_clear_gain_and_calls_a_weight_of_one_noise(study, tmp_path,
                                                                  monkeypatch):
    rng = np.random.default_rng(3)
    images = rng.uniform(40, 60, size=40)
    runs = {
        "bce": [_run(images + rng.normal(0, 0.5, 40)) for _ in range(3)],
        "focal_g1": [_run(images + 10 + rng.normal(0, 0.5, 40)) for _ in range(3)],
        "posbce_batch": [_run(images + 3 + rng.normal(0, 0.5, 40), pos_weight=1.0)
                         for _ in range(3)],
        "focal_g3": [_run(images + rng.normal(0, 0.5, 40)) for _ in range(3)],
    }
    text, findings = _section(study, runs, tmp_path, monkeypatch)
    assert findings == {"better": {"focal, gamma 1"}, "worse": set(), "threshold": set()}
    assert "focal, gamma 1: semantic mIoU per image better than BCE" in text
    assert "this head's weight was 1" in text  # flagged, yet not counted as a finding
    assert "focal, gamma 3: " not in text.split("**What the numbers say**")[1]
    assert (tmp_path / "toy_metrics.png").is_file() and (tmp_path / "toy_curves.png").is_file()


def test_report_says_no_difference_when_there_is_none(study, tmp_path, monkeypatch):
    rng = np.random.default_rng(4)
    images = rng.uniform(40, 60, size=40)
    runs = {name: [_run(images + rng.normal(0, 2.0, 40)) for _ in range(3)]
            for name in ("bce", "focal_g2", "posbce_instance")}
    text, findings = _section(study, runs, tmp_path, monkeypatch)
    assert findings == {"better": set(), "worse": set(), "threshold": set()}
    assert "makes no measurable difference" in text


def test_report_flags_a_threshold_that_recovers_mask_ap(study, tmp_path, monkeypatch):
    images = np.linspace(40, 60, 20)
    shifted = {0.3: 30.0, 0.4: 25.0, 0.5: 0.0, 0.6: 0.0, 0.7: 0.0}
    runs = {"bce": [_run(images) for _ in range(2)],
            "focal_g2_tv": [_run(images, best_threshold=0.3, ap_at=shifted) for _ in range(2)]}
    text, findings = _section(study, runs, tmp_path, monkeypatch)
    assert findings["threshold"] == {"focal, gamma 2, torchvision's alpha 0.25, weight 1"}
    assert "0.5 is the wrong mask threshold" in text
    assert "recovers +30.0 mask AP" in text
    assert "(edge of the grid)" in text

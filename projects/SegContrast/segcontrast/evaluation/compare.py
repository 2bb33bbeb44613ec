"""Two models on the same images: A, B, B - A and a paired bootstrap 95% interval per metric.

Each resample draws the images with replacement (:func:`.bootstrap.resample_weights`) and
recomputes every dataset-level metric of both models on the same draw, from per-image
statistics: semantic mIoU from the per-image TP / GT / predicted pixel counts (as from a summed
confusion matrix), instance and boundary IoU from per-image sums, the contrast counts as totals,
and mask AP by re-accumulating COCO's per-image matches (:func:`.coco_ap.weighted_ap`; the
matching itself depends on one image only and is done once). A difference is called one only
when its interval excludes 0.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

from . import catalog
from .metrics.bootstrap import DEFAULT_SAMPLES, percentile_ci, resample_weights
from .metrics.coco_ap import coco_ap_matches, weighted_ap
from .records import EvalState, image_sort_key
from .summary import CONTRAST_COUNTS

__all__ = ["HEADLINE_METRICS", "Comparison", "ComparisonRow", "compare_states",
           "resampled_metrics"]

# (group, key, label) of every compared metric (the catalog's); counts are the contrast
# group's, from the error assignment.
HEADLINE_METRICS = tuple((group, key, catalog.label(group, key))
                         for group, key in catalog.COMPARED)


@dataclass
class ComparisonRow:
    """One metric of both models.

    Attributes:
        group: result group ("semantic", "segm", ...).
        key: metric key in the group.
        label: what the table shows.
        a: model A's value (from its results, as in its metrics.json).
        b: model B's value.
        delta: ``b - a``.
        low: 2.5th percentile of the resampled ``b - a``.
        high: 97.5th percentile.
        differs: the interval excludes 0.
    """

    group: str
    key: str
    label: str
    a: float
    b: float
    delta: float
    low: float
    high: float
    differs: bool


@dataclass
class Comparison:
    """The comparison table and its sentence.

    Attributes:
        rows: one per metric both models have.
        num_images: images compared.
        samples: bootstrap resamples.
        seed: their seed.
        sentence: which differences the intervals support.
    """

    rows: list[ComparisonRow]
    num_images: int
    samples: int
    seed: int
    sentence: str

    def to_dict(self) -> dict:
        """JSON-ready (NaN as None)."""
        def clean(v):
            return None if isinstance(v, float) and math.isnan(v) else v

        return {"num_images": self.num_images, "samples": self.samples, "seed": self.seed,
                "sentence": self.sentence,
                "rows": [{k: clean(v) for k, v in asdict(r).items()} for r in self.rows]}


def _stack(values: Sequence[np.ndarray | None]) -> np.ndarray | None:
    if not values or any(v is None for v in values):
        return None
    return np.stack(values).astype(np.float64)


def _thing_miou(counts: np.ndarray) -> float:
    """Semantic mIoU of (3, K + 1) summed TP / GT / predicted counts (as semantic_scores)."""
    tp, gt, pred = counts
    union = gt + pred - tp
    valid = union[1:] > 0
    if not valid.any():
        return math.nan
    return float(np.mean(tp[1:][valid] / union[1:][valid])) * 100.0


def resampled_metrics(state: EvalState, num_classes: int, weights: np.ndarray, *,
                      boundary_iou: bool = True) -> dict[tuple[str, str], np.ndarray]:
    """Every headline metric of one model when image i counts ``weights[b, i]`` times.

    Args:
        state: the model's statistics (images in id order: :meth:`EvalState.merge` order).
        num_classes: K.
        weights: (B, images) integer counts, images in the order of ``state.images``.
        boundary_iou: whether boundary IoU was computed.

    Returns:
        ``{(group, key): (B,) values}`` in percent (counts as counts); with all weights 1
        these are the evaluator's own numbers.
    """
    images = state.images
    weights = np.asarray(weights, np.float64)
    out: dict[tuple[str, str], np.ndarray] = {}
    for group, attr in (("semantic", "semantic_counts"),
                        ("semantic_from_instances", "semantic_counts_from_instances")):
        per_image = _stack([getattr(r, attr) for r in images])
        if per_image is None:
            continue
        summed = np.einsum("bn,nkl->bkl", weights, per_image)
        out[(group, "mIoU")] = np.array([_thing_miou(c) for c in summed])
    if not state.has_instances:
        return out
    iou_sum = np.array([r.gt_iou.sum() for r in images])
    iou_count = np.array([len(r.gt_iou) for r in images], np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        out[("instance", "mIoU")] = weights @ iou_sum / (weights @ iou_count) * 100.0
        if boundary_iou:
            matched = [r.gt_boundary_iou[(r.gt_iou > 0) & np.isfinite(r.gt_boundary_iou)]
                       for r in images]
            b_sum = np.array([m.sum() for m in matched])
            b_count = np.array([len(m) for m in matched], np.float64)
            out[("instance", "boundary_IoU")] = weights @ b_sum / (weights @ b_count) * 100.0
    ap = weighted_ap(coco_ap_matches([r.ap for r in images], num_classes), num_classes, weights)
    out[("segm", "AP")], out[("segm", "AP50")] = ap["AP"], ap["AP50"]
    counts = np.array([[r.counts.get(key, 0) for key in CONTRAST_COUNTS] for r in images],
                      np.float64).reshape(len(images), len(CONTRAST_COUNTS))
    totals = weights @ counts
    for j, key in enumerate(CONTRAST_COUNTS):
        out[("contrast", key)] = totals[:, j]
    return out


def _ordered(state: EvalState) -> EvalState:
    return EvalState.merge([state])


def _sentence(rows: list[ComparisonRow], num_images: int, samples: int) -> str:
    def shown(r: ComparisonRow) -> str:
        found = catalog.metric(r.group, r.key)
        digits = 0 if found is not None and found.is_count else 1
        return (f"{r.label} {r.delta:+.{digits}f} [{r.low:+.{digits}f}, {r.high:+.{digits}f}]")

    found = [r for r in rows if r.differs]
    level = (f"paired bootstrap over the {num_images} images, {samples} resamples, 95% "
             "intervals")
    if not found:
        return (f"No difference between B and A: every interval includes 0 ({level}); "
                "the gaps in the table are within what resampling the images gives.")
    rest = [r.label for r in rows if not r.differs and math.isfinite(r.low)]
    text = (f"B differs from A where the interval excludes 0 ({level}): "
            + "; ".join(shown(r) for r in found) + ".")
    if rest:
        text += " No difference is shown in " + ", ".join(rest) + " (the interval includes 0)."
    return text


def compare_states(state_a: EvalState, state_b: EvalState, results_a: dict, results_b: dict,
                   num_classes: int, *, samples: int = DEFAULT_SAMPLES, seed: int = 0,
                   boundary_iou: bool = True) -> Comparison:
    """Compare two models scored on the same images.

    Args:
        state_a: model A's statistics.
        state_b: model B's, over the same image ids.
        results_a: A's result groups (the numbers of its metrics.json).
        results_b: B's.
        num_classes: K.
        samples: bootstrap resamples.
        seed: their seed.
        boundary_iou: whether boundary IoU was computed.

    Returns:
        The table and its sentence.

    Raises:
        ValueError: the two states hold different images.
    """
    a, b = _ordered(state_a), _ordered(state_b)
    keys_a = [image_sort_key(r.image_id) for r in a.images]
    if keys_a != [image_sort_key(r.image_id) for r in b.images]:
        raise ValueError("the two models were scored on different images")
    weights = resample_weights(len(a.images), samples, np.random.default_rng(seed))
    stats_a = resampled_metrics(a, num_classes, weights, boundary_iou=boundary_iou)
    stats_b = resampled_metrics(b, num_classes, weights, boundary_iou=boundary_iou)
    rows = []
    for group, key, label in HEADLINE_METRICS:
        if (group, key) not in stats_a or (group, key) not in stats_b:
            continue
        value_a = _value(results_a, group, key)
        value_b = _value(results_b, group, key)
        low, high = percentile_ci(stats_b[(group, key)] - stats_a[(group, key)])
        rows.append(ComparisonRow(group, key, label, value_a, value_b, value_b - value_a, low,
                                  high, bool(low > 0 or high < 0)))
    return Comparison(rows, len(a.images), samples, seed,
                      _sentence(rows, len(a.images), samples))


def _value(results: dict, group: str, key: str) -> float:
    value = results.get(group, {}).get(key)
    return math.nan if value is None else float(value)

"""Sweep the mask binarisation threshold of a trained Mask R-CNN on a validation set.

Focal and pos-weighted losses move the threshold at which a mask probability is best called
foreground away from BCE's 0.5: pos-weighted BCE with ``w > 1`` pushes probabilities up, focal
loss (which stops pushing easy pixels towards 0 or 1) leaves them less extreme. The model runs
once per image; its raw soft masks are pasted at every threshold and each result is scored by
its own :class:`~segcontrast.evaluation.SegContrastEvaluator`.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import math
import os
from collections.abc import Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch
from detectron2.evaluation.evaluator import inference_context
from detectron2.structures import Instances
from tqdm import tqdm

from ..evaluation import catalog
from ..modeling.postprocessing import RawOutputs, postprocess_at_threshold, raw_outputs
from ..utils import atomic_write
from .evaluator import SegContrastEvaluator

__all__ = ["DEFAULT_THRESHOLDS", "SweepResult", "sweep_mask_thresholds", "write_sweep"]

logger = logging.getLogger(__name__)

DEFAULT_THRESHOLDS = (0.2, 0.25, 0.3, 0.35, 0.4, 0.45, 0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8)
# (group, key, label) of the metrics shown for each threshold (the catalog's labels).
SWEEP_METRICS = tuple((group, key, catalog.label(group, key))
                      for group, key in catalog.SWEEP_ROWS)


@dataclass
class SweepResult:
    """Scores at each threshold.

    Attributes:
        thresholds: the thresholds, ascending.
        results: per threshold, the evaluator's result dict.
        metric: ``"group/key"`` that picks the best threshold.
        best: the threshold with the highest ``metric``.
    """

    thresholds: list[float]
    results: list[dict]
    metric: str

    def value(self, index: int, metric: str | None = None) -> float:
        """``metric`` (default: the picking metric) at the ``index``-th threshold."""
        group, key = (metric or self.metric).split("/", 1)
        return float(self.results[index].get(group, {}).get(key, float("nan")))

    @property
    def best(self) -> float:
        """The threshold with the highest picking metric (the lowest such one on ties)."""
        values = [self.value(i) for i in range(len(self.thresholds))]
        return self.thresholds[int(np.nanargmax(values))]

    def table(self) -> str:
        """A Markdown table: one row per threshold, the best one marked."""
        header = "| threshold | " + " | ".join(label for _, _, label in SWEEP_METRICS) + " |"
        lines = [header, "|---:|" + "---:|" * len(SWEEP_METRICS)]
        for i, threshold in enumerate(self.thresholds):
            mark = " (best)" if threshold == self.best else ""
            cells = [f"{self.value(i, f'{g}/{k}'):.1f}" for g, k, _ in SWEEP_METRICS]
            lines.append(f"| {threshold:.2f}{mark} | " + " | ".join(cells) + " |")
        return "\n".join(lines)


def _copy_instances(instances: Instances) -> Instances:
    # detector_postprocess scales the boxes in place: each threshold needs its own copy.
    fields = {k: (v.clone() if hasattr(v, "clone") else v)
              for k, v in instances.get_fields().items()}
    return Instances(instances.image_size, **fields)


@contextmanager
def _quiet(logger_name: str):
    target = logging.getLogger(logger_name)
    level = target.level
    target.setLevel(logging.WARNING)
    try:
        yield
    finally:
        target.setLevel(level)


def sweep_mask_thresholds(
    model: torch.nn.Module,
    data_loader,
    dataset_name: str,
    thresholds: Sequence[float] = DEFAULT_THRESHOLDS,
    *,
    metric: str = "segm/AP",
    iou_threshold: float = 0.5,
    score_threshold: float = 0.5,
    boundary_iou: bool = True,
    boundary_dilation_ratio: float = 0.02,
) -> SweepResult:
    """Run ``model`` once over ``data_loader``; score its masks at every threshold.

    Args:
        model: a ``GeneralizedRCNN`` or ``PanopticFPN`` with trained weights (a Panoptic FPN's
            semantic head gives the "semantic" group at every threshold, its instances
            "semantic_from_instances").
        data_loader: the test loader of ``dataset_name`` (batches of model inputs).
        dataset_name: the registered dataset (ground truth of the evaluators).
        thresholds: mask thresholds in (0, 1).
        metric: ``"group/key"`` of the evaluator's results that picks the best threshold.
        iou_threshold: matching IoU of the instance metrics.
        score_threshold: predictions below it are left out of the semantic painting and the
            instance metrics (not of AP).
        boundary_iou: also compute boundary IoU.
        boundary_dilation_ratio: boundary band width as a fraction of the image diagonal.

    Returns:
        The scores at each threshold.
    """
    thresholds = sorted(float(t) for t in thresholds)
    if not thresholds or not all(0 < t < 1 for t in thresholds):
        raise ValueError(f"thresholds must be in (0, 1), got {thresholds}")
    evaluators = [
        SegContrastEvaluator(dataset_name, None, distributed=False, iou_threshold=iou_threshold,
                             score_threshold=score_threshold, boundary_iou=boundary_iou,
                             boundary_dilation_ratio=boundary_dilation_ratio)
        for _ in thresholds
    ]
    with inference_context(model), torch.no_grad():
        for inputs in tqdm(data_loader, total=len(data_loader), desc="threshold sweep",
                           unit="batch"):
            raw = raw_outputs(model, inputs)
            for threshold, evaluator in zip(thresholds, evaluators, strict=True):
                copies = RawOutputs([_copy_instances(r) for r in raw.instances], raw.sem_seg)
                evaluator.process(inputs, postprocess_at_threshold(copies, inputs, threshold))
    with _quiet("segcontrast.engine.evaluator"), _quiet("segcontrast.evaluation"):
        results = [dict(evaluator.evaluate()) for evaluator in evaluators]
    return SweepResult(thresholds, results, metric)


def _json_ready(value):
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: _json_ready(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_ready(v) for v in value]
    return value


def write_sweep(result: SweepResult, output_dir: str) -> dict[str, str]:
    """Write ``threshold_sweep.json``, ``.csv`` and ``.png`` (atomically) to ``output_dir``.

    Returns:
        The paths written, by kind.
    """
    os.makedirs(output_dir, exist_ok=True)
    paths = {kind: os.path.join(output_dir, f"threshold_sweep.{kind}")
             for kind in ("json", "csv", "png")}
    # NaN (a metric without data) is written as null, as the evaluator's metrics.json does.
    payload = _json_ready({"metric": result.metric, "best_threshold": result.best,
                           "thresholds": result.thresholds, "results": result.results})
    atomic_write(paths["json"], lambda f: json.dump(payload, f, indent=2), mode="w")

    text = io.StringIO()
    writer = csv.writer(text)
    writer.writerow(["threshold"] + [f"{g}/{k}" for g, k, _ in SWEEP_METRICS])
    for i, threshold in enumerate(result.thresholds):
        writer.writerow([threshold] + [f"{result.value(i, f'{g}/{k}'):.4f}"
                                       for g, k, _ in SWEEP_METRICS])
    atomic_write(paths["csv"], lambda f: f.write(text.getvalue()), mode="w")

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for group, key, label in SWEEP_METRICS:
        ax.plot(result.thresholds,
                [result.value(i, f"{group}/{key}") for i in range(len(result.thresholds))],
                marker="o", label=label)
    ax.axvline(result.best, color="gray", linestyle="--", label=f"best ({result.metric})")
    ax.set_xlabel("mask threshold")
    ax.set_ylabel("score (%)")
    ax.set_title("Scores against the mask binarisation threshold")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    plt.close(fig)
    atomic_write(paths["png"], lambda f: f.write(buffer.getvalue()))
    return paths

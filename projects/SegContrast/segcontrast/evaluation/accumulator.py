"""The accumulator: predictions added one image at a time, sufficient statistics, compute.

The shape other frameworks' validation loops call (torchmetrics' ``update`` / ``compute``,
MMSegmentation's ``IoUMetric``)::

    acc = Accumulator.from_coco("annotations/val.json")
    for image_id, masks, category_ids, scores in my_validation_loop():
        acc.add(image_id, masks=masks, category_ids=category_ids, scores=scores)
    result = acc.compute()
    print(result.explanation)
    result.save("eval/")

Each image becomes a small record (:mod:`.records`); nothing that grows with the images is
kept but those records, the summed confusion matrices and the few worst images' masks.
Accumulators of the same ground truth merge (:meth:`merge`, or :attr:`state` sent between
processes and :meth:`add_state`): images are sorted by id, so the numbers do not depend on
which process saw which image. The Detectron2 evaluator
(:class:`segcontrast.engine.evaluator.SegContrastEvaluator`) is a thin adapter over this class.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ..data.masks import GroundTruth, describe_image
from .accounting.dataset_deltas import VARIANT_NAMES
from .ground_truth import GroundTruthSet
from .image_eval import evaluate_image
from .metrics.boundary import boundary_dilation
from .predictions import Predictions
from .records import EvalState, WorstImage, image_sort_key
from .report.panoptic_files import category_ids, write_panoptic_pngs
from .result import EvaluationResult
from .settings import EvalSettings
from .summary import summarize

__all__ = ["Accumulator"]

logger = logging.getLogger(__name__)


class Accumulator:
    """Scores predictions image by image against one ground truth; merges; computes.

    Args:
        ground_truth: the ground truth.
        settings: how to score (default: :class:`EvalSettings`' defaults).
        keep_worst: keep the worst images' masks for the overlays (``num_worst_images``).
        **overrides: settings by name, applied over ``settings`` (``iou_threshold=0.75``).
    """

    def __init__(self, ground_truth: GroundTruthSet, settings: EvalSettings | None = None, *,
                 keep_worst: bool = True, **overrides: Any) -> None:
        self.ground_truth = ground_truth
        self.settings = (settings or EvalSettings()).replace(**overrides) if overrides \
            else (settings or EvalSettings())
        self._keep_worst = keep_worst
        self._categories = category_ids(ground_truth.num_classes, ground_truth.id_map or None)
        self._panoptic_dir = self.settings.panoptic_output_dir or None
        self.reset()

    @classmethod
    def from_coco(cls, gt: str | os.PathLike | Mapping, images: str | os.PathLike | None = None,
                  settings: EvalSettings | None = None, **overrides: Any) -> Accumulator:
        """An accumulator for a COCO instances file or its parsed dict.

        Args:
            gt: the file or the dict.
            images: the image root (checks the image files; draws overlays on them).
            settings: how to score.
            **overrides: settings by name.

        Raises:
            DatasetValidationError: the ground truth cannot be used (every problem named).
        """
        return cls(GroundTruthSet.from_coco(gt, images), settings, **overrides)

    def reset(self) -> None:
        """Forget every image added so far."""
        keep = self.settings.num_worst_images if self._keep_worst else 0
        self._state = EvalState(num_labels=self.ground_truth.num_classes + 1, max_worst=keep)
        self._seen: set = set()

    @property
    def state(self) -> EvalState:
        """The sufficient statistics so far (picklable: send them between processes)."""
        return self._state

    def __len__(self) -> int:
        return len(self._state.images)

    def add(self, image_id: Any, *, scores: Sequence[float] | np.ndarray,
            masks: Any = None, segmentations: Sequence[Any] | None = None,
            category_ids: Sequence[int] | np.ndarray | None = None,
            classes: Sequence[int] | np.ndarray | None = None,
            boxes: Sequence[Sequence[float]] | np.ndarray | None = None,
            semantic: np.ndarray | None = None, file_name: str | None = None) -> None:
        """Score one image's predicted instances.

        Args:
            image_id: the ground truth's image id.
            scores: (N,) confidences.
            masks: (N, H, W) binary masks (bool, or probabilities binarised at
                ``mask_threshold``), at the image's size; or None with ``segmentations``.
            segmentations: N COCO segmentations (RLE dicts, compressed or not, or polygons)
                instead of ``masks``.
            category_ids: (N,) the ground truth file's category ids; or ``classes``.
            classes: (N,) contiguous class ids in [0, K) instead of ``category_ids``.
            boxes: (N, 4) ``x, y, w, h`` boxes, used only with ``ap_area="box"``.
            semantic: optional (H, W) labels of a semantic model: 0 background, class k as
                k + 1.
            file_name: the image file for the overlays (default: the ground truth's).

        Raises:
            ValueError: an unknown image, masks of the wrong size, an unknown class; the
                message names the image.
        """
        record = self._record(image_id)
        height, width = int(record["height"]), int(record["width"])
        try:
            pred = Predictions.from_arrays(
                height, width, scores=scores, masks=masks, segmentations=segmentations,
                category_ids=category_ids, classes=classes, boxes=boxes, semantic=semantic,
                id_map=self.ground_truth.id_map, num_classes=self.ground_truth.num_classes,
                mask_threshold=self.settings.mask_threshold, ap_area=self.settings.ap_area)
        except ValueError as err:
            raise ValueError(f"{describe_image(record)}: {err}") from None
        self.add_predictions(image_id, pred, file_name)

    def _record(self, image_id: Any) -> dict:
        record = self.ground_truth.records.get(image_id)
        if record is None:
            raise KeyError(f"image_id {image_id!r} is not an image of {self.ground_truth.name} "
                           f"({len(self.ground_truth.records)} images)")
        return record

    def add_predictions(self, image_id: Any, pred: Predictions,
                        file_name: str | None = None) -> None:
        """Score one image whose predictions are read already (what :meth:`add` ends with).

        Args:
            image_id: the ground truth's image id.
            pred: its predictions at the image's size.
            file_name: the image file for the overlays (default: the ground truth's).
        """
        record = self._record(image_id)
        key = image_sort_key(image_id)
        if key in self._seen:
            logger.warning("Image %r added twice since reset(); the repeat is skipped.",
                           image_id)
            return
        self._seen.add(key)
        s = self.settings
        num_classes = self.ground_truth.num_classes
        gt = GroundTruth.from_dataset_dict(record, num_classes)
        height, width = gt.masks.height, gt.masks.width
        dilation = (boundary_dilation(height, width, s.boundary_dilation_ratio)
                    if s.boundary_iou else None)
        image = {"image_id": image_id, "file_name": file_name or record.get("file_name", "")}
        result = evaluate_image(
            image, gt, pred, num_classes=num_classes, iou_threshold=s.iou_threshold,
            score_threshold=s.score_threshold, boundary_dilation=dilation,
            panoptic=s.panoptic, accounting=s.accounting,
            overlap_threshold=s.panoptic_overlap_threshold,
        )
        rec, keep = result.record, result.keep
        self._state.add_confusions(result.confusion, result.confusion_from_instances)
        if rec.accounting is not None:
            self._state.add_accounting_confusion(result.accounting_confusion,
                                                 len(VARIANT_NAMES))
        if self._panoptic_dir and result.panoptic_gt is not None:
            rec.panoptic_segments = write_panoptic_pngs(
                self._panoptic_dir, image_id, result.panoptic_gt, result.panoptic_pred,
                pred.masks.boxes[keep], pred.classes[keep], self._categories,
            )
        self._state.images.append(rec)
        if self._state.wants_worst(rec.worst_image_score, image_id):
            self._state.add_worst(WorstImage.pack(
                rec.worst_image_score, image_id, pred.masks.subset(keep), pred.classes[keep],
                pred.scores[keep]))

    def add_state(self, state: EvalState) -> None:
        """Add statistics other accumulators of this ground truth gathered (other images)."""
        self._state = EvalState.merge([self._state, state])
        self._seen.update(image_sort_key(r.image_id) for r in state.images)

    def merge(self, other: Accumulator) -> None:
        """Add another accumulator's images (same ground truth and settings)."""
        if other.settings != self.settings:
            raise ValueError("cannot merge accumulators with different settings")
        self.add_state(other.state)

    def compute(self, *, source: dict[str, Any] | None = None,
                states: Sequence[EvalState] | None = None) -> EvaluationResult:
        """Every metric of the images added so far.

        Args:
            source: what was scored (e.g. the results file), for ``metrics.json`` and the
                report; its ``"notes"`` (sentences) appear in the report.
            states: other processes' states to merge with this one's (gathered already).

        Returns:
            The result (its ``metrics`` are empty groups' NaN when no image was added).
        """
        state = EvalState.merge([self._state, *(states or [])])
        gt = self.ground_truth
        if len(state.images) < len(gt.records):
            logger.info("Evaluated %d of the %d images of %s.", len(state.images),
                        len(gt.records), gt.name)
        summary = summarize(state, gt.class_names, boundary_iou=self.settings.boundary_iou)
        return EvaluationResult(summary=summary, state=state, ground_truth=gt,
                                settings=self.settings, source=dict(source) if source else None)

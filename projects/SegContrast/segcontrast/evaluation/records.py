"""Sufficient statistics: what each process keeps per image, and how processes are merged.

A process keeps the dataset's confusion matrix (summed), one small :class:`ImageRecord` per
image (counts, per-instance IoUs, the COCO IoU matrices) and the predicted masks of the few
worst images so far, as packed-bit crops. Nothing else grows with the number of images.
Merging sorts images by id, so results do not depend on which process saw which image, nor
on the order of the images.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from ..data.masks import MaskCrops
from .metrics.coco_ap import ApImage
from .record_transfer import RecordBatch

if TYPE_CHECKING:
    from .accounting.image_variants import ImageAccounting

__all__ = ["EvalState", "ImageRecord", "WorstImage", "image_sort_key"]

logger = logging.getLogger(__name__)


def image_sort_key(image_id: Any) -> tuple[int, Any]:
    """Order of images: integer ids numerically (as COCOeval), then other ids as strings."""
    if isinstance(image_id, (int, np.integer)) and not isinstance(image_id, bool):
        return (0, int(image_id))
    return (1, str(image_id))


@dataclass
class ImageRecord:
    """Everything the dataset-level metrics need from one image.

    Attributes:
        image_id: the dataset's image id.
        file_name: the image file (for the overlays).
        height, width: image size.
        semantic_miou: mean IoU over thing classes present in this image (NaN if none), of
            the semantic view (the semantic model's labels when there are any, else the painted
            instances).
        semantic_miou_from_instances: the same for the painted instances when the model also
            gave semantic labels (NaN otherwise).
        instance_miou: mean IoU of its non-crowd instances, missed = 0 (NaN if none, or when the
            model gave no instances).
        has_instances: whether the model gave instances (False for a semantic model).
        counts: ``n_gt, n_crowd, n_pred, matched, false_positives`` and each error type's
            count (``catalog.ERROR_TYPES``), all from the image's error assignment
            (:meth:`~.accounting.assignment.ErrorAssignment.outcome_counts`).
        gt_classes: (G,) int16 classes of the non-crowd instances.
        gt_iou: (G,) float64 IoU with the matched prediction, 0 when missed.
        gt_boundary_iou: (G,) float64 boundary IoU of matched instances, NaN otherwise.
        pred_classes: (N,) int16 classes of the predictions (after the score threshold).
        pred_matched: (N,) bool.
        pred_ignored: (N,) bool (in a crowd region).
        ap: the COCO records.
        semantic_counts: (3, K + 1) int64 TP, GT and predicted pixels per label of the
            semantic view (:func:`~.semantic.label_counts`), for resampling images.
        semantic_counts_from_instances: the same for the painted instances when the model also
            gave semantic labels, else None.
        panoptic: (K + 1, 4) PQ statistics (TP, FP, FN, matched-IoU sum per category,
            background first), None when PQ is off or for a semantic model.
        accounting: the gap accounting's fixed variants, None when it is off.
        panoptic_segments: the segments' JSON entries when the panoptic files are written.
    """

    image_id: Any
    file_name: str
    height: int
    width: int
    semantic_miou: float
    semantic_miou_from_instances: float
    instance_miou: float
    has_instances: bool
    counts: dict[str, int]
    gt_classes: np.ndarray
    gt_iou: np.ndarray
    gt_boundary_iou: np.ndarray
    pred_classes: np.ndarray
    pred_matched: np.ndarray
    pred_ignored: np.ndarray
    ap: ApImage
    semantic_counts: np.ndarray | None = None
    semantic_counts_from_instances: np.ndarray | None = None
    panoptic: np.ndarray | None = None
    accounting: ImageAccounting | None = None
    panoptic_segments: dict | None = None

    @property
    def worst_image_score(self) -> float | None:
        """The score by which the worst images are picked, lower is worse.

        Instance mIoU for an image with ground truth; 0 for one with only false positives;
        None (never among the worst) for one with neither, and for a semantic model's images.
        """
        if not self.has_instances:
            return None
        if self.counts["n_gt"] > 0:
            return self.instance_miou
        return 0.0 if self.counts["false_positives"] > 0 else None


@dataclass
class WorstImage:
    """Predicted masks of one of the worst images, as packed-bit crops.

    Attributes:
        score: :attr:`ImageRecord.worst_image_score`.
        image_id: image id.
        boxes: (N, 4) int64 crop boxes.
        shapes: (N, 2) crop shapes.
        bits: N ``np.packbits`` arrays of the crops.
        classes: (N,) classes.
        scores: (N,) scores.
    """

    score: float
    image_id: Any
    boxes: np.ndarray
    shapes: np.ndarray
    bits: list[np.ndarray]
    classes: np.ndarray
    scores: np.ndarray

    @classmethod
    def pack(
        cls,
        score: float,
        image_id: Any,
        masks: MaskCrops,
        classes: np.ndarray,
        scores: np.ndarray,
    ) -> WorstImage:
        """Keep ``masks`` compactly."""
        return cls(
            score=score,
            image_id=image_id,
            boxes=masks.boxes.copy(),
            shapes=np.array([c.shape for c in masks.crops], np.int64).reshape(-1, 2),
            bits=[np.packbits(c, axis=None) for c in masks.crops],
            classes=np.asarray(classes).copy(),
            scores=np.asarray(scores).copy(),
        )

    def masks(self, height: int, width: int) -> MaskCrops:
        """Unpack the crops."""
        crops = [
            np.unpackbits(b, count=int(s[0] * s[1])).reshape(s).astype(bool)
            for b, s in zip(self.bits, self.shapes, strict=True)
        ]
        areas = np.array([np.count_nonzero(c) for c in crops], np.int64)
        return MaskCrops(self.boxes, crops, areas, height, width)

    def key(self) -> tuple:
        """Worst first; ties by image id."""
        return (self.score, image_sort_key(self.image_id))


@dataclass
class EvalState:
    """One process's sufficient statistics.

    Attributes:
        num_labels: K + 1.
        confusion: (K + 1, K + 1) int64, rows ground truth, of the semantic view (see
            :class:`~.image_eval.ImageResult`).
        confusion_from_instances: the painted instances' matrix when the model gave both
            semantic labels and instances; None until such an image is seen.
        images: one record per processed image.
        worst: at most ``max_worst`` worst images with their predicted masks, worst first
            (:meth:`WorstImage.key` order, as :meth:`add_worst` and :meth:`merge` keep them).
        max_worst: capacity of ``worst``.
        accounting_confusion: (V, K + 1, K + 1) int64 per accounting variant the summed
            change of the painted instances' confusion matrix; None until an image adds one.
    """

    num_labels: int
    max_worst: int = 0
    confusion: np.ndarray = field(default=None)  # type: ignore[assignment]
    confusion_from_instances: np.ndarray | None = None
    images: list[ImageRecord] = field(default_factory=list)
    worst: list[WorstImage] = field(default_factory=list)
    accounting_confusion: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.confusion is None:
            self.confusion = np.zeros((self.num_labels, self.num_labels), np.int64)

    # What processes send each other (score_files' workers, Detectron2's gather) is pickled:
    # packed, the records cost a few buffers instead of about thirty arrays per image.
    def __getstate__(self) -> dict[str, Any]:
        """The attributes, with ``images`` and ``worst`` packed (:class:`RecordBatch`)."""
        state = dict(self.__dict__)
        state["images"] = RecordBatch(self.images)
        state["worst"] = RecordBatch(self.worst)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        """Restore the attributes, unpacking what :meth:`__getstate__` packed."""
        state = dict(state)
        for name in ("images", "worst"):
            if isinstance(state.get(name), RecordBatch):
                state[name] = state[name].unpack()
        self.__dict__.update(state)

    def wants_worst(self, score: float | None, image_id: Any) -> bool:
        """Whether an image with this worst-image score would enter the worst-images set."""
        if score is None or self.max_worst <= 0:
            return False
        if len(self.worst) < self.max_worst:
            return True
        # the list is kept in key order: its last entry is the best of the worst
        return (score, image_sort_key(image_id)) < self.worst[-1].key()

    def add_confusions(self, confusion: np.ndarray, from_instances: np.ndarray | None) -> None:
        """Add one image's confusion matrices."""
        self.confusion += confusion
        if from_instances is not None:
            if self.confusion_from_instances is None:
                self.confusion_from_instances = np.zeros_like(self.confusion)
            self.confusion_from_instances += from_instances

    def add_accounting_confusion(self, deltas: dict[int, np.ndarray], num_variants: int) -> None:
        """Add one image's confusion-matrix changes per accounting variant."""
        if self.accounting_confusion is None:
            self.accounting_confusion = np.zeros(
                (num_variants, self.num_labels, self.num_labels), np.int64
            )
        for variant, delta in deltas.items():
            self.accounting_confusion[variant] += delta

    @property
    def has_instances(self) -> bool:
        """Whether any image had instance predictions (False: a semantic model only)."""
        return any(r.has_instances for r in self.images)

    def add_worst(self, entry: WorstImage) -> None:
        """Insert, dropping the best entry when over capacity."""
        self.worst.append(entry)
        self.worst.sort(key=WorstImage.key)
        del self.worst[self.max_worst :]

    @classmethod
    def merge(cls, states: Sequence[EvalState]) -> EvalState:
        """Combine processes' states; images sorted by id, a repeated image kept once.

        Args:
            states: states with the same ``num_labels``.

        Returns:
            The merged state (``confusion`` summed exactly; integer counts).
        """
        if not states:
            raise ValueError("no states to merge")
        num_labels = states[0].num_labels
        if any(s.num_labels != num_labels for s in states):
            raise ValueError("states of evaluators with different numbers of classes")
        max_worst = max(s.max_worst for s in states)
        merged = cls(num_labels=num_labels, max_worst=max_worst)
        seen: set = set()
        images = []
        for record in sorted(
            (r for s in states for r in s.images), key=lambda r: image_sort_key(r.image_id)
        ):
            key = image_sort_key(record.image_id)
            if key in seen:
                logger.warning(
                    "Image %r was evaluated by more than one process: its instances are "
                    "counted once, its pixels more than once in the semantic confusion matrix.",
                    record.image_id,
                )
                continue
            seen.add(key)
            images.append(record)
        merged.images = images
        merged.confusion = np.sum([s.confusion for s in states], axis=0).astype(np.int64)
        from_instances = [s.confusion_from_instances for s in states
                          if s.confusion_from_instances is not None]
        if from_instances:
            merged.confusion_from_instances = np.sum(from_instances, axis=0).astype(np.int64)
        deltas = [s.accounting_confusion for s in states if s.accounting_confusion is not None]
        if deltas:
            merged.accounting_confusion = np.sum(deltas, axis=0).astype(np.int64)
        worst_seen: set = set()
        for entry in sorted((w for s in states for w in s.worst), key=WorstImage.key):
            if len(merged.worst) >= max_worst:
                break
            key = image_sort_key(entry.image_id)
            if key not in worst_seen:
                worst_seen.add(key)
                merged.worst.append(entry)
        return merged

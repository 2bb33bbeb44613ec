"""One image's predictions as the evaluator scores them.

Binarised masks as crops, classes, scores, and the area each detection has for COCO's area
ranges.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..data.masks import MaskCrops, annotation_to_rle, crops_from_dense, crops_from_rles
from .metrics.coco_ap import AP_AREAS

__all__ = ["Predictions", "ap_areas"]


def ap_areas(masks: MaskCrops, boxes: Any, ap_area: str) -> np.ndarray:
    """Each detection's area for COCO's area ranges.

    Args:
        masks: the N masks.
        boxes: (N, 4) ``x, y, w, h`` boxes, or None.
        ap_area: "mask": the mask's pixel count (what ``pycocotools.mask.area`` gives, as
            Detectron2's COCOEvaluator, which drops the boxes for segm); "box": the box
            ``w * h`` when boxes are given (pycocotools' ``loadRes`` with boxes).

    Returns:
        (N,) float64 areas.
    """
    if ap_area == "box" and boxes is not None and len(boxes):
        boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
        return boxes[:, 2] * boxes[:, 3]
    return masks.areas.astype(np.float64)


@dataclass
class Predictions:
    """One image's predicted instances.

    Attributes:
        masks: N binarised masks.
        classes: (N,) contiguous class ids.
        scores: (N,) float64.
        ap_areas: (N,) float64 area of each detection for COCO's area ranges
            (:func:`ap_areas`).
        semantic: optional (H, W) uint8 labels of a semantic model (a ``sem_seg`` output or a
            label PNG): 0 background, class k as k + 1.
        has_instances: False when the model gave no instances at all (a semantic model): the
            instance side is then not scored.
    """

    masks: MaskCrops
    classes: np.ndarray
    scores: np.ndarray
    ap_areas: np.ndarray
    semantic: np.ndarray | None = None
    has_instances: bool = True

    @classmethod
    def empty(cls, height: int, width: int, semantic: np.ndarray | None = None,
              has_instances: bool = True) -> Predictions:
        """No instances (an image without results, or a semantic model's image)."""
        nothing = np.zeros(0)
        return cls(MaskCrops.empty(height, width), nothing.astype(np.int64), nothing, nothing,
                   semantic, has_instances)

    @classmethod
    def from_arrays(cls, height: int, width: int, *, scores: Any, num_classes: int,
                    masks: Any = None, segmentations: Sequence[Any] | None = None,
                    category_ids: Any = None, classes: Any = None, boxes: Any = None,
                    semantic: Any = None, id_map: Mapping[int, int] | None = None,
                    mask_threshold: float = 0.5, ap_area: str = "mask") -> Predictions:
        """Predictions from arrays, as a validation loop has them.

        Args:
            height: image height.
            width: image width.
            scores: (N,) confidences.
            num_classes: K.
            masks: (N, H, W) bool masks or probabilities (numpy, or a torch tensor).
            segmentations: N COCO segmentations (RLE or polygons) instead of ``masks``.
            category_ids: (N,) category ids of ``id_map``; or ``classes``.
            classes: (N,) contiguous ids in [0, K).
            boxes: (N, 4) ``x, y, w, h``, for ``ap_area="box"``.
            semantic: (H, W) labels of a semantic model, or None.
            id_map: category id -> contiguous id.
            mask_threshold: probabilities >= this are foreground.
            ap_area: "mask" or "box" (:func:`ap_areas`).

        Raises:
            ValueError: inconsistent lengths, masks of another size, unknown classes.
        """
        scores = np.asarray(scores, np.float64).reshape(-1)
        n = len(scores)
        if (masks is None) == (segmentations is None):
            raise ValueError("give either masks (N, H, W) or segmentations (N COCO "
                             "segmentations)")
        if segmentations is not None:
            if len(segmentations) != n:
                raise ValueError(f"{len(segmentations)} segmentations for {n} scores")
            crops = crops_from_rles([annotation_to_rle(s, height, width) for s in segmentations],
                                    height, width)
        else:
            crops = (crops_from_dense(masks, mask_threshold) if n else
                     MaskCrops.empty(height, width))
            if (crops.height, crops.width) != (height, width) or len(crops) != n:
                shape = tuple(getattr(masks, "shape", ()))
                raise ValueError(f"masks of shape {shape}: expected ({n}, {height}, {width})")
        if (category_ids is None) == (classes is None):
            raise ValueError("give either category_ids (the ground truth's ids) or classes "
                             "(contiguous, 0..K-1)")
        if classes is None:
            ids = [int(c) for c in np.asarray(category_ids).reshape(-1).tolist()]
            if id_map:
                unknown = sorted({c for c in ids if c not in id_map})
                if unknown:
                    raise ValueError(f"category_id(s) {unknown[:10]} are not categories of the "
                                     f"ground truth (ids {sorted(id_map)[:20]})")
                ids = [id_map[c] for c in ids]
            classes = ids
        classes = np.asarray(classes, np.int64).reshape(-1)
        if len(classes) != n:
            raise ValueError(f"{len(classes)} classes for {n} scores")
        if n and (classes.min() < 0 or classes.max() >= num_classes):
            raise ValueError(f"classes outside [0, {num_classes})")
        if ap_area not in AP_AREAS:
            raise ValueError(f"ap_area {ap_area!r}: expected one of {AP_AREAS}")
        if semantic is not None:
            semantic = np.asarray(semantic)
            if semantic.shape != (height, width):
                raise ValueError(f"semantic labels of shape {semantic.shape}: expected "
                                 f"({height}, {width})")
            if semantic.size and int(semantic.max()) > num_classes:
                raise ValueError(f"semantic labels up to {int(semantic.max())}: expected 0 "
                                 f"(background) to {num_classes}")
            semantic = semantic.astype(np.uint8)
        return cls(crops, classes, scores, ap_areas(crops, boxes, ap_area), semantic)

"""The semantic ground truth of an image, painted from its instance annotations.

One rule, used both by the evaluator (what semantic predictions are scored against) and by the
dataset mapper (the training targets of a semantic head), so the two can never differ.
Label convention: 0 background, thing class k (contiguous) -> k + 1, 255 ignore.
"""

from __future__ import annotations

import numpy as np

from ..utils.native import kernels
from .masks import GroundTruth, MaskCrops

__all__ = ["IGNORE_LABEL", "paint_semantic_gt", "semantic_gt_from_record"]

IGNORE_LABEL = 255


def paint_semantic_gt(gt: MaskCrops, classes: np.ndarray, crowd: np.ndarray) -> np.ndarray:
    """Build the semantic ground truth of one image from its instances.

    Rule, in this order: a pixel covered by non-crowd instances of one class gets that class
    (k + 1); covered by non-crowd instances of two or more classes it is ignored (255: no
    instance is preferred over another); covered only by crowd regions it is ignored (255);
    elsewhere background (0).

    Args:
        gt: the instance masks.
        classes: (G,) contiguous class ids.
        crowd: (G,) bool ``iscrowd`` flags.

    Returns:
        (H, W) uint8 labels.
    """
    return kernels.paint_semantic_gt(gt.boxes, gt.crops, gt.areas, np.asarray(classes, np.int64),
                                     np.asarray(crowd, bool), gt.height, gt.width)


def semantic_gt_from_record(record: dict, num_classes: int) -> np.ndarray:
    """Decode a dataset dict's annotations and paint its semantic ground truth.

    Args:
        record: a Detectron2 dataset dict (``height``, ``width``, ``annotations`` with contiguous
            ``category_id``, polygon or RLE ``segmentation`` and ``iscrowd``).
        num_classes: K.

    Returns:
        (H, W) uint8 labels at the record's size.
    """
    gt = GroundTruth.from_dataset_dict(record, num_classes)
    return paint_semantic_gt(gt.masks, gt.classes, gt.crowd)

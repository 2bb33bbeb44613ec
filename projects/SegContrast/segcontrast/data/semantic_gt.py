"""The semantic ground truth of an image, painted from its instance annotations.

One rule, used both by the evaluator (what semantic predictions are scored against) and by the
dataset mapper (the training targets of a semantic head), so the two can never differ.
Label convention: 0 background, thing class k (contiguous) -> k + 1, 255 ignore.
"""

from __future__ import annotations

import numpy as np

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
    labels = np.zeros((gt.height, gt.width), np.uint8)
    regular = np.flatnonzero(~crowd & (gt.areas > 0))
    for i in regular:
        x0, y0, x1, y1 = gt.boxes[i]
        np.copyto(labels[y0:y1, x0:x1], classes[i] + 1, where=gt.crops[i], casting="unsafe")
    # Pixels shared by instances of different classes: only where such boxes overlap.
    boxes = gt.boxes[regular]
    cls = classes[regular]
    ix0 = np.maximum(boxes[:, None, 0], boxes[None, :, 0])
    iy0 = np.maximum(boxes[:, None, 1], boxes[None, :, 1])
    ix1 = np.minimum(boxes[:, None, 2], boxes[None, :, 2])
    iy1 = np.minimum(boxes[:, None, 3], boxes[None, :, 3])
    clash = (ix1 > ix0) & (iy1 > iy0) & (cls[:, None] != cls[None, :])
    for a, b in zip(*np.nonzero(np.triu(clash, 1)), strict=True):
        i, j = regular[a], regular[b]
        x0, y0, x1, y1 = ix0[a, b], iy0[a, b], ix1[a, b], iy1[a, b]
        bi, bj = gt.boxes[i], gt.boxes[j]
        both = (
            gt.crops[i][y0 - bi[1] : y1 - bi[1], x0 - bi[0] : x1 - bi[0]]
            & gt.crops[j][y0 - bj[1] : y1 - bj[1], x0 - bj[0] : x1 - bj[0]]
        )
        labels[y0:y1, x0:x1][both] = IGNORE_LABEL
    for i in np.flatnonzero(crowd & (gt.areas > 0)):
        x0, y0, x1, y1 = gt.boxes[i]
        region = labels[y0:y1, x0:x1]
        region[gt.crops[i] & (region == 0)] = IGNORE_LABEL
    return labels


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

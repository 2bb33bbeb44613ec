"""A validation loop's way of feeding the accumulator: image by image, RLEs or dense masks.

Imports neither torch nor Detectron2 (tests/test_library.py runs it in a second process).
"""

from __future__ import annotations

import numpy as np
import pycocotools.mask as mask_util
from segcontrast import Accumulator
from segcontrast.data.masks import annotation_to_rle
from segcontrast.evaluation.ground_truth import GroundTruthSet


def accumulate(gt: GroundTruthSet, results: list, image_ids: list) -> Accumulator:
    """Feed an accumulator image by image, as a validation loop would (RLEs and dense masks)."""
    acc = Accumulator(gt)
    for n, image_id in enumerate(image_ids):
        mine = [r for r in results if r["image_id"] == image_id]
        height, width = gt.images[image_id]
        kwargs = {"scores": [r["score"] for r in mine],
                  "category_ids": [r["category_id"] for r in mine]}
        if n % 2:  # dense binary masks, as a model gives them
            rles = [annotation_to_rle(r["segmentation"], height, width) for r in mine]
            masks = (np.stack([mask_util.decode(r) for r in rles]).astype(bool) if rles
                     else np.zeros((0, height, width), bool))
            acc.add(image_id, masks=masks, **kwargs)
        else:
            acc.add(image_id, segmentations=[r["segmentation"] for r in mine], **kwargs)
    return acc

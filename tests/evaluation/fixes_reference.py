"""The straightforward way of making a fix's prediction list, which fixes._apply replaced
(one concatenation and gather per array): the reference the fast one is tested against."""

from __future__ import annotations

import numpy as np
from segcontrast.data.masks import MaskCrops
from segcontrast.evaluation.accounting.fixes import PredList, _Ops


def apply_reference(base: PredList, ops: _Ops) -> PredList:
    """The list with the changes made: replacements in place, additions at the end."""
    n = len(base.masks)
    replaced = sorted(ops.replace)
    news = [new for i in replaced for new in ops.replace[i]] + ops.add
    k = len(news)
    gone = ops.remove.union(replaced)
    # each entry of the new list as an index into the old entries followed by the new ones
    pick: list[int] = []
    first_new = n
    for i in range(n):
        if i not in gone:
            pick.append(i)
        elif i in ops.replace:
            count = len(ops.replace[i])
            pick.extend(range(first_new, first_new + count))
            first_new += count
    pick.extend(range(first_new, n + k))
    at = np.array(pick, np.int64)
    gone_index = np.array(sorted(gone), np.int64)
    if k:
        new_boxes = np.array([new.box for new in news], np.int64).reshape(k, 4)
        ints = np.array([(new.area, new.cls, new.mask_source, new.gt_copy) for new in news],
                        np.int64)
        floats = np.array([(new.score, float(new.area)) for new in news], np.float64)

        def merged(own: np.ndarray, fresh: np.ndarray) -> np.ndarray:
            return np.concatenate([own, fresh])[at]

        boxes = merged(base.masks.boxes, new_boxes)
        areas = merged(base.masks.areas, ints[:, 0])
        classes = merged(base.classes, ints[:, 1])
        mask_source = merged(base.mask_source, ints[:, 2])
        gt_copy = merged(base.gt_copy, ints[:, 3])
        scores = merged(base.scores, floats[:, 0])
        ap_areas = merged(base.ap_areas, floats[:, 1])
        source = merged(base.source, np.full(k, -1, np.int64))
    else:
        new_boxes = np.zeros((0, 4), np.int64)
        boxes, areas = base.masks.boxes[at], base.masks.areas[at]
        classes, scores, ap_areas = base.classes[at], base.scores[at], base.ap_areas[at]
        source, mask_source, gt_copy = base.source[at], base.mask_source[at], base.gt_copy[at]
    pool = base.masks.crops + [new.crop for new in news] if k else base.masks.crops
    crops = [pool[i] for i in pick]
    touched_classes = set(base.touched_classes)
    touched_classes.update(base.classes[gone_index].tolist())
    touched_classes.update(new.cls for new in news)
    touched_boxes = np.concatenate([base.touched_boxes, base.masks.boxes[gone_index],
                                    new_boxes]).astype(np.int64)
    masks = MaskCrops(boxes, crops, areas, base.masks.height, base.masks.width)
    return PredList(masks, classes, scores, ap_areas, source, mask_source, gt_copy,
                    touched_classes, touched_boxes)


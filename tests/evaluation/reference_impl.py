"""The evaluator's kernels as they were in numpy, pycocotools, scipy and OpenCV: the references.

The package computes these with its compiled kernels (segcontrast._kernels); the tests check
that every fast path gives exactly these results on randomised data. Kept as they were
written (reference code is not restyled), with only the imports they need.
"""

# ruff: noqa: E501, D

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from typing import Any

import cv2
import numpy as np
import pycocotools.mask as mask_util
from segcontrast.data.masks import GroundTruth, MaskCrops
from segcontrast.data.rle import rle_counts_to_runs
from segcontrast.data.semantic_gt import IGNORE_LABEL
from segcontrast.evaluation.metrics.coco_ap import (
    AREA_RANGES,
    IOU_THRESHOLDS,
    MAX_DETS,
    RECALL_THRESHOLDS,
    ApImage,
    CocoAp,
    MatchedDetections,
    _gt_ignore,
)
from segcontrast.evaluation.metrics.panoptic import (
    FN,
    FP,
    IOU,
    MATCH_IOU,
    TP,
    GtPanoptic,
    PredPanoptic,
    rank_order,
)


def crops_from_rles(rles: Sequence[dict], height: int, width: int) -> MaskCrops:
    """Decode compressed RLEs straight into tight crops.

    Args:
        rles: compressed RLEs (``counts`` bytes) of masks of size (height, width).
        height: image height.
        width: image width.

    Returns:
        The crops, pixel for pixel equal to ``pycocotools.mask.decode``.

    Raises:
        ValueError: an RLE whose size is not (height, width) or whose runs do not add up.
    """
    n = len(rles)
    if n == 0:
        return MaskCrops.empty(height, width)
    for rle in rles:
        if list(rle["size"]) != [height, width]:
            raise ValueError(f"RLE of size {rle['size']} in an image of size {[height, width]}")
    runs, run_offsets = rle_counts_to_runs([r["counts"] for r in rles])
    # Foreground runs [start, end) in column-major pixel order, mapped to each crop's own
    # column-major order. A run that crosses a column edge only occurs when the mask touches
    # both the top and the bottom row, where the crop is full height and the map is a shift.
    mask_of = np.repeat(np.arange(n), np.diff(run_offsets))
    local = np.arange(len(runs)) - run_offsets[mask_of]
    cumulative = np.cumsum(runs)
    ends_local = cumulative - np.concatenate(([0], cumulative))[run_offsets[:-1]][mask_of]
    last_run = run_offsets[1:][np.diff(run_offsets) > 0] - 1
    if np.any(runs < 0) or np.any(ends_local[last_run] != height * width):
        raise ValueError("RLE run lengths do not add up to height * width")
    foreground = local % 2 == 1
    # pycocotools.mask.area's sum of the odd runs; area() itself cannot be called with 256 or
    # more masks under NumPy 2 (it builds its output from a uint8 array of the count).
    areas = np.bincount(mask_of[foreground], weights=runs[foreground], minlength=n)
    areas = areas.astype(np.int64)
    bbox = mask_util.toBbox(list(rles)).astype(np.int64)  # x, y, w, h
    boxes = np.stack([bbox[:, 0], bbox[:, 1], bbox[:, 0] + bbox[:, 2], bbox[:, 1] + bbox[:, 3]], 1)
    boxes[areas == 0] = 0
    crop_w = boxes[:, 2] - boxes[:, 0]
    crop_h = boxes[:, 3] - boxes[:, 1]
    sizes = crop_w * crop_h
    crop_offsets = np.concatenate(([0], np.cumsum(sizes)))
    fg = np.flatnonzero(foreground & (runs > 0))
    stop = ends_local[fg]
    start = stop - runs[fg]
    owner = mask_of[fg]

    def to_crop(pixel: np.ndarray) -> np.ndarray:
        col, row = pixel // height, pixel % height
        return (
            crop_offsets[owner] + (col - boxes[owner, 0]) * crop_h[owner] + (row - boxes[owner, 1])
        )

    first = to_crop(start)
    last = to_crop(stop - 1) + 1
    total = int(crop_offsets[-1])
    # Within a crop the mapped runs keep their order and crops follow each other, so the run
    # bounds are non-decreasing: the crops are one repeat of alternating off/on values.
    bounds = np.empty(2 * len(first) + 2, np.int64)
    bounds[0], bounds[-1] = 0, total
    bounds[1:-1:2] = first
    bounds[2:-1:2] = last
    values = np.zeros(len(bounds) - 1, bool)
    values[1::2] = True
    flat = np.repeat(values, np.diff(bounds))
    crops = [
        np.ascontiguousarray(
            flat[crop_offsets[i] : crop_offsets[i + 1]].reshape(crop_w[i], crop_h[i]).T
        )
        for i in range(n)
    ]
    return MaskCrops(boxes, crops, areas, height, width)

def pairwise_intersections(a: MaskCrops, b: MaskCrops) -> np.ndarray:
    """Pixel counts of ``a_i & b_j`` for every pair, touching only overlapping boxes.

    Args:
        a: N masks.
        b: M masks of the same image.

    Returns:
        (N, M) int64 intersection areas.
    """
    out = np.zeros((len(a), len(b)), np.int64)
    if len(a) == 0 or len(b) == 0:
        return out
    ba, bb = a.boxes, b.boxes
    ix0 = np.maximum(ba[:, None, 0], bb[None, :, 0])
    iy0 = np.maximum(ba[:, None, 1], bb[None, :, 1])
    ix1 = np.minimum(ba[:, None, 2], bb[None, :, 2])
    iy1 = np.minimum(ba[:, None, 3], bb[None, :, 3])
    overlap = (ix1 > ix0) & (iy1 > iy0)
    overlap &= (a.areas[:, None] > 0) & (b.areas[None, :] > 0)
    for i, j in zip(*np.nonzero(overlap), strict=True):
        x0, y0, x1, y1 = ix0[i, j], iy0[i, j], ix1[i, j], iy1[i, j]
        ca = a.crops[i][y0 - ba[i, 1] : y1 - ba[i, 1], x0 - ba[i, 0] : x1 - ba[i, 0]]
        cb = b.crops[j][y0 - bb[j, 1] : y1 - bb[j, 1], x0 - bb[j, 0] : x1 - bb[j, 0]]
        out[i, j] = np.count_nonzero(ca & cb)
    return out

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

def paint_semantic_from_crops(
    pred: MaskCrops, classes: np.ndarray, scores: np.ndarray
) -> np.ndarray:
    """Paint predicted instances in ascending score order; the highest score wins a pixel.

    Between equal scores the later prediction wins; background elsewhere.

    Args:
        pred: binarised predicted masks.
        classes: (N,) contiguous class ids.
        scores: (N,) confidences.

    Returns:
        (H, W) uint8 labels.
    """
    labels = np.zeros((pred.height, pred.width), np.uint8)
    for i in np.argsort(scores, kind="stable"):
        if pred.areas[i] == 0:
            continue
        x0, y0, x1, y1 = pred.boxes[i]
        np.copyto(labels[y0:y1, x0:x1], classes[i] + 1, where=pred.crops[i], casting="unsafe")
    return labels

def paint_window(
    pred: MaskCrops, classes: np.ndarray, scores: np.ndarray, window: Sequence[int]
) -> np.ndarray:
    """:func:`paint_semantic_from_crops` restricted to a window of the image.

    Args:
        pred: binarised predicted masks.
        classes: (N,) contiguous class ids.
        scores: (N,) confidences.
        window: ``x0, y0, x1, y1``.

    Returns:
        (y1 - y0, x1 - x0) uint8 labels, equal to the full painting's pixels there.
    """
    wx0, wy0, wx1, wy1 = (int(v) for v in window)
    labels = np.zeros((wy1 - wy0, wx1 - wx0), np.uint8)
    boxes = pred.boxes
    overlap = (
        (boxes[:, 0] < wx1) & (boxes[:, 2] > wx0) & (boxes[:, 1] < wy1) & (boxes[:, 3] > wy0)
        & (pred.areas > 0)
    )
    index = np.flatnonzero(overlap)
    for i in index[np.argsort(scores[index], kind="stable")]:
        x0, y0, x1, y1 = boxes[i]
        cx0, cy0, cx1, cy1 = max(x0, wx0), max(y0, wy0), min(x1, wx1), min(y1, wy1)
        crop = pred.crops[i][cy0 - y0 : cy1 - y0, cx0 - x0 : cx1 - x0]
        np.copyto(labels[cy0 - wy0 : cy1 - wy0, cx0 - wx0 : cx1 - wx0], classes[i] + 1,
                  where=crop, casting="unsafe")
    return labels

def confusion_matrix(gt: np.ndarray, pred: np.ndarray, num_labels: int) -> np.ndarray:
    """Confusion of two label maps; ignore-label pixels of ``gt`` are left out.

    Args:
        gt: (H, W) uint8 ground-truth labels in [0, num_labels) or 255.
        pred: (H, W) uint8 predicted labels in [0, num_labels).
        num_labels: K + 1 (background included).

    Returns:
        (num_labels, num_labels) int64, rows ground truth, columns prediction.
    """
    n2 = num_labels * num_labels
    if num_labels * (num_labels + 1) <= 256:
        # uint8 codes wrap: ignore (255) gives 256 - num_labels + pred, above every valid
        # code (< num_labels ** 2), so ignored pixels fall in bins that are cut off below.
        code = gt.astype(np.uint8, copy=False) * np.uint8(num_labels)
        code += pred.astype(np.uint8, copy=False)
        flat = code.ravel()
    else:
        code = gt.astype(np.int32) * num_labels + pred
        code[gt == IGNORE_LABEL] = n2
        flat = code.ravel()
    # Most pixels are background in both maps; count only the others.
    others = flat[flat != 0]
    counts = np.bincount(others, minlength=n2)[:n2]
    counts[0] = flat.size - others.size  # ignored pixels never have code 0
    return counts.reshape(num_labels, num_labels).astype(np.int64)

def hungarian_match(iou: np.ndarray, threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """One-to-one matching maximising the total IoU among pairs with IoU >= threshold.

    Args:
        iou: (N, M) IoUs.
        threshold: smallest IoU of a match.

    Returns:
        (rows, cols) of the matched pairs, int64.
    """
    candidate = iou >= threshold
    if not candidate.any():
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    if (candidate.sum(0) <= 1).all() and (candidate.sum(1) <= 1).all():
        rows, cols = np.nonzero(candidate)
        return rows.astype(np.int64), cols.astype(np.int64)
    rows_in = np.flatnonzero(candidate.any(1))
    cols_in = np.flatnonzero(candidate.any(0))
    sub = np.where(candidate[np.ix_(rows_in, cols_in)], iou[np.ix_(rows_in, cols_in)], 0.0)
    # Imported on first conflict only: scipy.optimize takes a second to import, and most
    # images' candidate pairs are one to one already.
    from scipy.optimize import linear_sum_assignment

    r, c = linear_sum_assignment(sub, maximize=True)
    keep = sub[r, c] >= threshold
    return rows_in[r[keep]].astype(np.int64), cols_in[c[keep]].astype(np.int64)

def mask_boundary(crop: np.ndarray, dilation: int) -> np.ndarray:
    """Inner boundary band of a mask crop.

    Args:
        crop: (h, w) bool tight crop (outside it the mask is empty).
        dilation: band width in pixels.

    Returns:
        (h, w) bool: pixels of the mask within ``dilation`` (chessboard distance) of a
        background pixel or of the image border.
    """
    size = 2 * dilation + 1
    if min(crop.shape) < size:
        # no pixel has a full (2d + 1) square of mask around it: all of the mask is boundary
        return crop.copy()
    framed = cv2.copyMakeBorder(crop.view(np.uint8), 1, 1, 1, 1, cv2.BORDER_CONSTANT, value=0)
    eroded = cv2.erode(framed, _square(size))[1:-1, 1:-1]
    return crop & ~eroded.view(bool)

@functools.lru_cache(maxsize=16)
def _square(size: int) -> np.ndarray:
    return np.ones((size, size), np.uint8)

def boundary_iou_pairs(
    pred: MaskCrops, gt: MaskCrops, pairs: np.ndarray, dilation: int
) -> np.ndarray:
    """Boundary IoU of (prediction, ground truth) pairs of one image.

    Args:
        pred: predicted masks.
        gt: ground-truth masks.
        pairs: (P, 2) int indices (prediction, ground truth).
        dilation: band width in pixels (:func:`boundary_dilation`).

    Returns:
        (P,) float64 boundary IoUs; 0 where both boundaries are empty.
    """
    out = np.zeros(len(pairs), np.float64)
    if len(pairs) == 0:
        return out
    pred_bands: dict[int, np.ndarray] = {}
    gt_bands: dict[int, np.ndarray] = {}
    for k, (i, j) in enumerate(pairs):
        if i not in pred_bands:
            pred_bands[i] = mask_boundary(pred.crops[i], dilation)
        if j not in gt_bands:
            gt_bands[j] = mask_boundary(gt.crops[j], dilation)
        pb, gb = pred_bands[i], gt_bands[j]
        bp, bg = pred.boxes[i], gt.boxes[j]
        x0, y0 = max(bp[0], bg[0]), max(bp[1], bg[1])
        x1, y1 = min(bp[2], bg[2]), min(bp[3], bg[3])
        inter = 0
        if x1 > x0 and y1 > y0:
            inter = np.count_nonzero(
                pb[y0 - bp[1] : y1 - bp[1], x0 - bp[0] : x1 - bp[0]]
                & gb[y0 - bg[1] : y1 - bg[1], x0 - bg[0] : x1 - bg[0]]
            )
        union = np.count_nonzero(pb) + np.count_nonzero(gb) - inter
        out[k] = inter / union if union > 0 else 0.0
    return out

def _paint(labels: np.ndarray, areas: np.ndarray, box: np.ndarray, crop: np.ndarray,
           value: int, void: int, free_only_crowd: int | None = None) -> None:
    """Paint one mask into ``labels``, keeping ``areas`` in step.

    A non-crowd mask (``free_only_crowd`` None) takes the free pixels and turns every pixel
    it shares with another segment into VOID. A crowd mask takes only free pixels and turns
    pixels of another class's crowd segment (labels >= ``free_only_crowd``) into VOID.
    """
    x0, y0, x1, y1 = box
    region = labels[y0:y1, x0:x1]
    old = region[crop]
    if free_only_crowd is None:
        clash = old != 0
    else:
        clash = (old >= free_only_crowd) & (old != value) & (old != void)
    free = old == 0
    if clash.any():
        areas -= np.bincount(old[clash], minlength=len(areas))
        areas[void] += int(np.count_nonzero(clash))
        old = old.copy()
        old[clash] = void
    old[free] = value
    areas[value] += int(np.count_nonzero(free))
    region[crop] = old

def gt_segments(gt: GroundTruth) -> GtPanoptic:
    """The ground truth as non-overlapping segments (module docstring).

    Args:
        gt: the image's annotations (crowd regions included).

    Returns:
        Its segments; an instance left without pixels has a segment of area 0 (it is no
        segment: neither a false negative nor matchable).
    """
    masks = gt.masks
    regular = np.flatnonzero(~gt.crowd)
    crowd = np.flatnonzero(gt.crowd & (masks.areas > 0))
    crowd_classes = np.unique(gt.classes[crowd]).astype(np.int64)
    n = len(regular)
    num_labels = n + len(crowd_classes) + 2
    void = num_labels - 1
    labels = np.zeros((masks.height, masks.width), np.uint16 if num_labels < 65536 else np.int32)
    areas = np.zeros(num_labels, np.int64)
    # an instance whose box meets no other annotation's box keeps all its pixels
    b = masks.boxes
    meets = ((b[:, None, 0] < b[None, :, 2]) & (b[:, None, 2] > b[None, :, 0])
             & (b[:, None, 1] < b[None, :, 3]) & (b[:, None, 3] > b[None, :, 1]))
    np.fill_diagonal(meets, False)
    alone = ~meets.any(axis=1)
    for r, i in enumerate(regular.tolist()):
        if masks.areas[i] == 0:
            continue
        if alone[i]:
            x0, y0, x1, y1 = b[i]
            np.copyto(labels[y0:y1, x0:x1], r + 1, where=masks.crops[i])
            areas[r + 1] = masks.areas[i]
        else:
            _paint(labels, areas, masks.boxes[i], masks.crops[i], r + 1, void)
    for i in crowd:
        value = n + 1 + int(np.searchsorted(crowd_classes, gt.classes[i]))
        _paint(labels, areas, masks.boxes[i], masks.crops[i], value, void, free_only_crowd=n + 1)
    areas[0] = masks.height * masks.width - int(areas[1:].sum())
    categories = np.concatenate(
        ([0], gt.classes[regular] + 1, crowd_classes + 1, [-1])
    ).astype(np.int64)
    is_crowd = np.zeros(num_labels, bool)
    is_crowd[n + 1 : void] = True
    return GtPanoptic(labels, categories, is_crowd, areas, crowd_classes)

def _overlap_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(N, M) bool: box a_i and box b_j share pixels."""
    return ((a[:, None, 0] < b[None, :, 2]) & (a[:, None, 2] > b[None, :, 0])
            & (a[:, None, 1] < b[None, :, 3]) & (a[:, None, 3] > b[None, :, 1]))

def pred_segments(masks: MaskCrops, scores: np.ndarray, gt: GtPanoptic,
                  overlap_threshold: float,
                  reuse: tuple[PredPanoptic, np.ndarray, np.ndarray] | None = None,
                  gt_copy: np.ndarray | None = None) -> PredPanoptic:
    """Make predictions non-overlapping (module docstring) and count their pixels per GT label.

    Args:
        masks: N predictions (already cut at the score threshold).
        scores: (N,) their scores.
        gt: the image's ground-truth segments.
        overlap_threshold: a prediction that would lose more than this fraction of its mask to
            higher-ranked ones is dropped.
        reuse: ``(segments, source, changed_boxes)`` to update earlier segments instead of
            starting afresh: ``source[i]`` is the entry of ``segments`` that prediction ``i``
            is identical to (same mask, same rank among the unchanged ones), -1 for a new
            one; ``changed_boxes`` (B, 4) the boxes of the earlier entries that are gone. A
            prediction is recomputed only when it is new, overlaps a gone one, or overlaps a
            recomputed one ranked above it. The result then has no segment crops (only an
            image's own segments are exported).
        gt_copy: (N,) the non-crowd instance (index into the ground truth's instances) whose
            exact mask a prediction is, -1 otherwise; such a mask's pixels are its own
            segment's and VOID, which saves counting them.

    Returns:
        The segments.
    """
    n = len(masks)
    num_labels = len(gt.areas)
    void = gt.void
    kept = np.zeros(n, bool)
    areas = np.zeros(n, np.int64)
    hist = np.zeros((n, num_labels), np.int64)
    crops: list[np.ndarray | None] = [None] * n
    order = rank_order(scores)
    visit = np.ones(n, bool)
    reuse_seg = None
    if reuse is not None:
        reuse_seg, source, dirty = reuse
        # Only a prediction overlapping a changed one ranked above it can change, and only
        # then can it change those below it: visit that closure, copy the rest in bulk.
        rank = np.empty(n, np.int64)
        rank[order] = np.arange(n)
        boxes = masks.boxes
        changed = np.asarray(dirty, np.int64).reshape(-1, 4)
        visit = (source < 0) | _overlap_matrix(boxes, changed).any(axis=1)
        if visit.any():
            pair = _overlap_matrix(boxes, boxes) & (rank[:, None] > rank[None, :])
            frontier = visit.copy()
            while frontier.any():
                frontier = pair[:, frontier].any(axis=1) & ~visit
                visit |= frontier
        same = np.flatnonzero(~visit)
        src = source[same]
        kept[same] = reuse_seg.kept[src]
        areas[same] = reuse_seg.areas[src]
        hist[same] = reuse_seg.hist[src]
    box_list = masks.boxes.tolist()
    kept_list: list[int] = []
    changed = reuse is None
    if reuse is not None:
        # an earlier segment gone: its pixels are someone else's (or background) now
        present = np.zeros(len(reuse_seg.kept), bool)
        present[source[source >= 0]] = True
        changed = bool((reuse_seg.kept & ~present).any())
    for i in order.tolist():
        if not visit[i]:
            if kept[i]:
                kept_list.append(i)
            continue
        area = int(masks.areas[i])
        if area == 0:
            continue
        x0, y0, x1, y1 = box_list[i]
        crop = masks.crops[i]
        taken = None
        for j in kept_list:
            bx = box_list[j]
            if bx[0] < x1 and bx[2] > x0 and bx[1] < y1 and bx[3] > y0:
                if taken is None:
                    taken = np.zeros(crop.shape, bool)
                cx0, cy0 = max(bx[0], x0), max(bx[1], y0)
                cx1, cy1 = min(bx[2], x1), min(bx[3], y1)
                taken[cy0 - y0 : cy1 - y0, cx0 - x0 : cx1 - x0] |= masks.crops[j][
                    cy0 - bx[1] : cy1 - bx[1], cx0 - bx[0] : cx1 - bx[0]
                ]
        lost = 0
        if taken is not None:
            taken &= crop
            lost = int(np.count_nonzero(taken))
        # the same float expression as Detectron2's, so the same masks are dropped
        if lost * 1.0 / area > overlap_threshold:
            continue
        kept[i] = True
        areas[i] = area - lost
        copy = -1 if gt_copy is None else int(gt_copy[i])
        if lost == 0 and copy >= 0:
            hist[i, copy + 1] = gt.areas[copy + 1]
            hist[i, void] = area - gt.areas[copy + 1]
            segment = crop
        else:
            segment = crop & ~taken if lost else crop
            hist[i] = np.bincount(gt.labels[y0:y1, x0:x1][segment], minlength=num_labels)
        if reuse is None:
            crops[i] = segment
        kept_list.append(i)
    if not changed and reuse is not None:
        visited = np.flatnonzero(visit)
        src = source[visited]
        new = src < 0
        old = ~new
        changed = bool(kept[visited[new]].any()) or not (
            np.array_equal(kept[visited[old]], reuse_seg.kept[src[old]])
            and np.array_equal(areas[visited[old]], reuse_seg.areas[src[old]])
            and np.array_equal(hist[visited[old]], reuse_seg.hist[src[old]])
        )
    return PredPanoptic(kept, areas, hist, crops)  # (the reuse path's "changed" flag is gone)

def panoptic_stats(pred_categories: np.ndarray, pred: PredPanoptic, gt: GtPanoptic,
                   num_categories: int) -> np.ndarray:
    """Per-category TP, FP, FN and matched-IoU sum of one image, as panopticapi counts them.

    Args:
        pred_categories: (N,) category of each prediction (class + 1).
        pred: its segments.
        gt: the ground-truth segments.
        num_categories: K + 1.

    Returns:
        (K + 1, 4) float64: TP, FP, FN (integers) and the sum of the matched IoUs.
    """
    seg = np.flatnonzero(pred.kept)
    background_area = gt.labels.size - int(pred.areas[seg].sum())
    with_background = background_area > 0
    cats = np.zeros(len(seg) + with_background, np.int64)
    cats[: len(seg)] = pred_categories[seg]
    areas = np.zeros(len(cats), np.int64)
    areas[: len(seg)] = pred.areas[seg]
    hist = np.zeros((len(cats), len(gt.areas)), np.int64)
    hist[: len(seg)] = pred.hist[seg]
    if with_background:
        areas[-1] = background_area
        hist[-1] = gt.areas - hist[: len(seg)].sum(axis=0)
    void = gt.void
    on_void = hist[:, void]
    valid_gt = (gt.areas > 0) & ~gt.crowd
    valid_gt[void] = False
    candidate = (cats[:, None] == gt.categories[None, :]) & valid_gt[None, :] & (hist > 0)
    rows, cols = np.nonzero(candidate)
    inter = hist[rows, cols]
    iou = inter / (areas[rows] + gt.areas[cols] - inter - on_void[rows])
    match = iou > MATCH_IOU
    rows, cols, iou = rows[match], cols[match], iou[match]
    stats = np.zeros((num_categories, 4), np.float64)
    stats[:, TP] = np.bincount(cats[rows], minlength=num_categories)
    stats[:, IOU] = np.bincount(cats[rows], weights=iou, minlength=num_categories)
    unmatched_gt = valid_gt.copy()
    unmatched_gt[cols] = False
    stats[:, FN] = np.bincount(gt.categories[unmatched_gt], minlength=num_categories)
    unmatched = np.ones(len(cats), bool)
    unmatched[rows] = False
    ignored = on_void.copy()
    if gt.crowd_classes.size and unmatched.any():
        # the crowd segment of each thing category, label index (0: none)
        crowd_label = np.zeros(num_categories, np.int64)
        crowd_label[gt.crowd_classes + 1] = np.flatnonzero(gt.crowd)
        has = unmatched & (crowd_label[cats] > 0)
        ignored[has] += hist[np.flatnonzero(has), crowd_label[cats[has]]]
    with np.errstate(divide="ignore", invalid="ignore"):  # empty segments: never ignored
        false_pos = unmatched & ~(ignored / areas > 0.5)
    stats[:, FP] = np.bincount(cats[false_pos], minlength=num_categories)
    return stats

def _clusters(boxes: np.ndarray) -> list[tuple[int, int, int, int]]:
    """Disjoint windows covering the boxes (overlapping boxes merged until none overlap)."""
    boxes = [b for b in boxes.tolist() if b[2] > b[0] and b[3] > b[1]]
    merged = True
    while merged and len(boxes) > 1:
        merged = False
        out: list[list[int]] = []
        for b in boxes:
            for o in out:
                if b[0] < o[2] and o[0] < b[2] and b[1] < o[3] and o[1] < b[3]:
                    o[0], o[1] = min(o[0], b[0]), min(o[1], b[1])
                    o[2], o[3] = max(o[2], b[2]), max(o[3], b[3])
                    merged = True
                    break
            else:
                out.append(list(b))
        boxes = out
    if len(boxes) > 1:
        # one window instead of many when they fill most of their bounding box anyway
        x0, y0 = min(b[0] for b in boxes), min(b[1] for b in boxes)
        x1, y1 = max(b[2] for b in boxes), max(b[3] for b in boxes)
        if 2 * sum((b[2] - b[0]) * (b[3] - b[1]) for b in boxes) > (x1 - x0) * (y1 - y0):
            return [(x0, y0, x1, y1)]
    return [tuple(b) for b in boxes]

class _PixelCodes:
    """Per pixel ``gt * (K + 1) + label`` codes; an ignored pixel's code is >= (K + 1)^2.

    uint8 arithmetic (wrapping, as :func:`.semantic.confusion_matrix`) when the codes fit.
    """

    def __init__(self, gt_labels: np.ndarray, painted: np.ndarray, num_labels: int) -> None:
        self.num_labels = num_labels
        small = num_labels * (num_labels + 1) <= 256
        self.dtype = np.uint8 if small else np.int32
        self.gt = gt_labels.astype(self.dtype) * self.dtype(num_labels)
        self.original = self.gt + painted.astype(self.dtype)
        self.bins = 256 if small else int(IGNORE_LABEL + 1) * num_labels

def _confusion_delta(ctx: Any, codes: _PixelCodes, kept: MaskCrops,
                     classes: np.ndarray, scores: np.ndarray, touched: np.ndarray) -> np.ndarray:
    """Change of the painted confusion matrix: repaint only windows around touched masks.

    The painting is :func:`paint_window`'s (ascending score, later wins on ties).
    """
    num_labels = codes.num_labels
    windows = _clusters(touched)
    if not windows:
        return np.zeros((num_labels, num_labels), np.int64)
    order = np.argsort(scores, kind="stable")
    order = order[kept.areas[order] > 0]
    b = kept.boxes[order]
    w = np.array(windows, np.int64)
    hits = ((b[None, :, 0] < w[:, None, 2]) & (b[None, :, 2] > w[:, None, 0])
            & (b[None, :, 1] < w[:, None, 3]) & (b[None, :, 3] > w[:, None, 1]))
    boxes = kept.boxes.tolist()
    values = (classes + 1).astype(np.uint8)
    fresh, stale = [], []
    for (wx0, wy0, wx1, wy1), hit in zip(windows, hits, strict=True):
        new = np.zeros((wy1 - wy0, wx1 - wx0), np.uint8)
        for i in order[hit].tolist():
            x0, y0, x1, y1 = boxes[i]
            cx0, cy0, cx1, cy1 = max(x0, wx0), max(y0, wy0), min(x1, wx1), min(y1, wy1)
            np.copyto(new[cy0 - wy0 : cy1 - wy0, cx0 - wx0 : cx1 - wx0], values[i],
                      where=kept.crops[i][cy0 - y0 : cy1 - y0, cx0 - x0 : cx1 - x0])
        differs = new != ctx.painted[wy0:wy1, wx0:wx1]
        fresh.append(codes.gt[wy0:wy1, wx0:wx1][differs] + new[differs].astype(codes.dtype))
        stale.append(codes.original[wy0:wy1, wx0:wx1][differs])
    counts = np.bincount(np.concatenate(fresh), minlength=codes.bins)
    counts -= np.bincount(np.concatenate(stale), minlength=codes.bins)
    return counts[: num_labels * num_labels].reshape(num_labels, num_labels)


_MAX_ELEMENTS = 250_000


def _chunks(n_det: np.ndarray, n_gt: np.ndarray) -> list[slice]:
    """Consecutive groups whose padded arrays stay within _MAX_ELEMENTS."""
    per_group = len(AREA_RANGES) * len(IOU_THRESHOLDS)
    chunks, start, d_max, g_max = [], 0, 0, 0
    for i, (d, g) in enumerate(zip(n_det.tolist(), n_gt.tolist(), strict=True)):
        d_max, g_max = max(d_max, d), max(g_max, g)
        size = (i + 1 - start) * max(per_group * max(d_max, g_max), d_max * g_max)
        if size > _MAX_ELEMENTS and i > start:
            chunks.append(slice(start, i))
            start, d_max, g_max = i, d, g
    if start < len(n_det):
        chunks.append(slice(start, len(n_det)))
    return chunks


def _last_argmax(values: np.ndarray) -> np.ndarray:
    """Index of the last maximum along the last axis."""
    return values.shape[-1] - 1 - np.argmax(values[..., ::-1], axis=-1)


def _match_chunk(
    groups: np.ndarray, data: dict[str, np.ndarray], gt_ignore: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Greedy COCO matching for a chunk of groups.

    Returns:
        det_index (X,) global detection indices, matched (X, A, T) bool after the id-0 rule,
        matched_ignored (X, A, T) bool (matched to an ignored ground truth).
    """
    n_det, n_gt = data["n_det"][groups], data["n_gt"][groups]
    if np.any(np.diff(n_det) < 0):
        raise AssertionError("groups must come sorted by detection count")
    b_count, d_max, g_max = len(groups), int(n_det.max()), int(n_gt.max())
    a_count, t_count = gt_ignore.shape[1], len(IOU_THRESHOLDS)

    sizes = n_det * n_gt
    owner = np.repeat(np.arange(b_count), sizes)
    within = np.arange(int(sizes.sum())) - np.repeat(np.cumsum(sizes) - sizes, sizes)
    cols = np.repeat(n_gt, sizes)
    ious = np.full((b_count, d_max, g_max), -1.0)
    ious[owner, within // cols, within % cols] = data["ious"][
        np.repeat(data["iou_start"][groups], sizes) + within
    ]
    g_owner = np.repeat(np.arange(b_count), n_gt)
    g_local = np.arange(int(n_gt.sum())) - np.repeat(np.cumsum(n_gt) - n_gt, n_gt)
    g_global = np.repeat(data["gt_start"][groups], n_gt) + g_local
    ignore = np.ones((b_count, a_count, g_max), bool)
    ignore[g_owner, :, g_local] = gt_ignore[g_global]
    crowd = np.zeros((b_count, g_max), bool)
    crowd[g_owner, g_local] = data["gt_crowd"][g_global]
    id_zero = np.zeros((b_count, g_max), bool)
    id_zero[g_owner, g_local] = data["gt_id_zero"][g_global]

    thresholds = np.minimum(IOU_THRESHOLDS, 1 - 1e-10)[None, None, :, None]
    taken = np.zeros((b_count, a_count, t_count, g_max), bool)
    match = np.full((b_count, a_count, t_count, d_max), -1, np.int32)
    ignore4 = ignore[:, :, None, :]
    for d in range(d_max):
        # groups come sorted by detection count: those with a d-th detection are a suffix
        lo = int(np.searchsorted(n_det, d, side="right"))
        v = ious[lo:, d, :][:, None, None, :]
        free = (v >= thresholds) & ~taken[lo:]
        regular = free & ~ignore4[lo:]
        fallback = free & ignore4[lo:]
        best_regular = _last_argmax(np.where(regular, v, -2.0))
        best_fallback = _last_argmax(np.where(fallback, v, -2.0))
        m = np.where(regular.any(-1), best_regular, np.where(fallback.any(-1), best_fallback, -1))
        match[lo:, :, :, d] = m
        b, a, t = np.nonzero(m >= 0)
        g = m[b, a, t]
        b = b + lo
        keep = ~crowd[b, g]
        taken[b[keep], a[keep], t[keep], g[keep]] = True

    d_owner = np.repeat(np.arange(b_count), n_det)
    d_local = np.arange(int(n_det.sum())) - np.repeat(np.cumsum(n_det) - n_det, n_det)
    det_index = np.repeat(data["det_start"][groups], n_det) + d_local
    m = match[d_owner, :, :, d_local]  # (X, A, T)
    has = m >= 0
    safe = np.where(has, m, 0)
    matched_ignored = has & ignore[d_owner[:, None, None], np.arange(a_count)[None, :, None], safe]
    effective = has & ~id_zero[d_owner[:, None, None], safe]
    return det_index, effective, matched_ignored


def match_groups(data: dict[str, np.ndarray], group_image: np.ndarray, num_classes: int,
                 areas: np.ndarray = AREA_RANGES) -> MatchedDetections:
    """:func:`match_detections` on groups already concatenated (:func:`group_data`).

    Args:
        data: the groups.
        group_image: (Q,) each group's image position in COCOeval's order.
        num_classes: K.
        areas: the area ranges.

    Returns:
        The matched detections.
    """
    t_count, a_count = len(IOU_THRESHOLDS), len(areas)
    lo, hi = areas[:, 0], areas[:, 1]
    gt_ignore = _gt_ignore(data, areas)
    det_area = data["det_areas"][:, None]
    det_outside = (det_area < lo) | (det_area > hi)  # (ND, A)

    n_total = len(data["det_scores"])
    matched = np.zeros((n_total, a_count, t_count), bool)
    matched_ignored = np.zeros((n_total, a_count, t_count), bool)
    active = np.flatnonzero((data["n_det"] > 0) & (data["n_gt"] > 0))
    active = active[np.lexsort((data["n_gt"][active], data["n_det"][active]))]
    for chunk in _chunks(data["n_det"][active], data["n_gt"][active]):
        idx, eff, mig = _match_chunk(active[chunk], data, gt_ignore)
        matched[idx] = eff
        matched_ignored[idx] = mig
    det_ignored = matched_ignored | (~matched & det_outside[:, :, None])
    det_image = np.repeat(np.asarray(group_image, np.int64), data["n_det"])
    position = np.arange(n_total) - np.repeat(data["det_start"], data["n_det"])
    det_class = np.repeat(data["classes"], data["n_det"])
    return MatchedDetections(
        classes=det_class,
        scores=data["det_scores"],
        keys=det_image * (MAX_DETS + 1) + position,
        groups=det_image * num_classes + det_class,
        tp=matched & ~det_ignored,
        fp=~matched & ~det_ignored,
    )


def class_match(iou: np.ndarray, pred_classes: np.ndarray, gt_classes: np.ndarray,
                threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """Per class, :func:`hungarian_match` of predictions to ground truth of their class.

    Classes whose candidate pairs are already one to one take them as they are (what the
    Hungarian algorithm would return).

    Args:
        iou: (N, G) IoUs.
        pred_classes: (N,) classes.
        gt_classes: (G,) classes.
        threshold: smallest IoU of a match.

    Returns:
        (rows, cols) of the matched pairs, int64, ordered by column.
    """
    candidate = (iou >= threshold) & (pred_classes[:, None] == gt_classes[None, :])
    if not candidate.any():
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    rows, cols = (x.astype(np.int64) for x in np.nonzero(candidate))
    if (candidate.sum(0) > 1).any() or (candidate.sum(1) > 1).any():
        conflict = np.unique(np.concatenate([
            gt_classes[candidate.sum(0) > 1], pred_classes[candidate.sum(1) > 1]]))
        in_conflict = np.zeros(int(max(pred_classes.max(), gt_classes.max())) + 1, bool)
        in_conflict[conflict] = True
        simple = ~in_conflict[pred_classes[rows]]
        rows_all, cols_all = [rows[simple]], [cols[simple]]
        for cls in conflict:
            pi = np.flatnonzero(pred_classes == cls)
            gi = np.flatnonzero(gt_classes == cls)
            r, c = hungarian_match(iou[pi[:, None], gi], threshold)
            rows_all.append(pi[r])
            cols_all.append(gi[c])
        rows, cols = np.concatenate(rows_all), np.concatenate(cols_all)
    order = np.argsort(cols, kind="stable")
    return rows[order], cols[order]


def _ap_patch(fixed: Any, iou: np.ndarray, gt_by_class: dict[int, np.ndarray],
              touched: list[int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The AP records of the touched classes, exactly as :meth:`ApImage.build` groups them."""
    if not touched:
        return np.zeros((0, 3), np.int64), np.zeros((0, 2)), np.zeros(0)
    order = np.lexsort((-fixed.scores, fixed.classes))
    sorted_classes = fixed.classes[order]
    lo = np.searchsorted(sorted_classes, touched, side="left").tolist()
    hi = np.searchsorted(sorted_classes, touched, side="right").tolist()
    groups, dets, ious = [], [], []
    empty = np.zeros(0, np.int64)
    for c, a, b in zip(touched, lo, hi, strict=True):
        d = order[a : min(b, a + MAX_DETS)]
        g = gt_by_class.get(c, empty)
        groups.append((c, len(d), len(g)))
        dets.append(d)
        if len(d) and len(g):
            ious.append(iou[d[:, None], g].ravel())
    d_all = np.concatenate(dets)
    return (np.array(groups, np.int64),
            np.stack([fixed.scores[d_all], fixed.ap_areas[d_all]], axis=1),
            np.concatenate(ious) if ious else np.zeros(0))


def variant_substitutions(images: Sequence[Any], offsets: np.ndarray):
    """dataset_deltas._Variants' IoU and PQ substitutions, gathered image by image."""
    from collections import defaultdict
    iou_index: dict[int, list] = defaultdict(list)
    iou_values: dict[int, list] = defaultdict(list)
    pq_rows: dict[int, list] = defaultdict(list)
    for i, r in enumerate(images):
        acc = r.accounting
        if acc is None:
            continue
        for variant, row in zip(acc.iou_variants.tolist(), acc.gt_iou, strict=True):
            iou_index[variant].append(np.arange(offsets[i], offsets[i + 1]))
            iou_values[variant].append(row)
        if len(acc.pq_rows):
            rows = np.column_stack([acc.pq_rows.astype(np.float64), acc.pq_iou])
            for variant in np.unique(acc.pq_rows[:, 0]).tolist():
                pq_rows[variant].append((i, rows[acc.pq_rows[:, 0] == variant]))
    iou_index = {v: np.concatenate(x) for v, x in iou_index.items()}
    iou_values = {v: np.concatenate(x) for v, x in iou_values.items()}
    pq_index = {v: (np.concatenate([np.full(len(r), i) for i, r in x]),
                    np.concatenate([r[:, 1] for _, r in x]).astype(np.int64))
                for v, x in pq_rows.items()}
    pq_values = {v: np.concatenate([r[:, 2:] for _, r in x]) for v, x in pq_rows.items()}
    return iou_index, iou_values, pq_index, pq_values


# The dataset-level steps as they were before they were done once for all images (issue 21).


def concat_ap_images(images: Sequence[ApImage]) -> dict[str, np.ndarray]:
    """coco_ap._concat as it was: one np.diff per image."""
    def cat(name: str, dtype: type) -> np.ndarray:
        parts = [getattr(im, name) for im in images]
        return np.concatenate(parts).astype(dtype) if parts else np.zeros(0, dtype)

    n_det = np.concatenate([np.diff(im.det_offsets) for im in images]) if images else []
    n_gt = np.concatenate([np.diff(im.gt_offsets) for im in images]) if images else []
    n_det = np.asarray(n_det, np.int64)
    n_gt = np.asarray(n_gt, np.int64)
    return {
        "classes": cat("classes", np.int64),
        "n_det": n_det,
        "n_gt": n_gt,
        "det_start": np.concatenate(([0], np.cumsum(n_det)))[:-1],
        "gt_start": np.concatenate(([0], np.cumsum(n_gt)))[:-1],
        "iou_start": np.concatenate(([0], np.cumsum(n_det * n_gt)))[:-1],
        "det_scores": cat("det_scores", np.float64),
        "det_areas": cat("det_areas", np.float64),
        "gt_crowd": cat("gt_crowd", bool),
        "gt_areas": cat("gt_areas", np.float64),
        "gt_id_zero": cat("gt_id_zero", bool),
        "ious": cat("ious", np.float64),
    }


def accumulate(dets: MatchedDetections, npig: np.ndarray, num_classes: int) -> CocoAp:
    """COCO's accumulate step: precision and recall over all images, per class and area.

    Args:
        dets: the matched detections of every image.
        npig: (K, A) non-ignored ground truth counts (A: the area ranges matched).
        num_classes: K.

    Returns:
        Precision and recall arrays (over the A area ranges matched).
    """
    t_count, r_count, a_count = len(IOU_THRESHOLDS), len(RECALL_THRESHOLDS), npig.shape[1]
    precision = -np.ones((t_count, r_count, num_classes, a_count))
    recall = -np.ones((t_count, num_classes, a_count))
    eps = np.spacing(1)
    # by class, then decreasing score, then COCOeval's concatenation order (its mergesort)
    order = np.lexsort((dets.keys, -dets.scores, dets.classes))
    sorted_classes = dets.classes[order]
    bounds = np.searchsorted(sorted_classes, np.arange(num_classes + 1), side="left")
    for k in range(num_classes):
        selected = order[bounds[k] : bounds[k + 1]]
        for a in range(a_count):
            gt_count = int(npig[k, a])
            if gt_count == 0:
                continue
            tp_sum = np.cumsum(dets.tp[selected, a, :], axis=0).astype(float)  # (nd, T)
            fp_sum = np.cumsum(dets.fp[selected, a, :], axis=0).astype(float)
            nd = len(selected)
            rc = tp_sum / gt_count
            pr = tp_sum / (fp_sum + tp_sum + eps)
            recall[:, k, a] = rc[-1] if nd else 0
            if nd == 0:
                precision[:, :, k, a] = 0
                continue
            pr = np.maximum.accumulate(pr[::-1], axis=0)[::-1]
            for t in range(t_count):
                inds = np.searchsorted(rc[:, t], RECALL_THRESHOLDS, side="left")
                q = np.zeros(r_count)
                valid = inds < nd
                q[valid] = pr[inds[valid], t]
                precision[t, :, k, a] = q
    return CocoAp(precision=precision, recall=recall)



def label_counts(conf: np.ndarray) -> np.ndarray:
    conf = np.asarray(conf)
    return np.stack([np.diag(conf), conf.sum(axis=1), conf.sum(axis=0)]).astype(np.int64)


def thing_miou(conf: np.ndarray) -> float:
    tp = np.diag(conf)[1:].astype(np.float64)
    union = conf.sum(0)[1:] + conf.sum(1)[1:] - tp
    valid = union > 0
    if not valid.any():
        return math.nan
    return float(np.mean(tp[valid] / union[valid]))


def summed_counts(images: Sequence[Any]) -> dict[str, int]:
    """summary.summarize's counts as they were: one Python sum per key."""
    return {key: int(sum(r.counts[key] for r in images)) for key in images[0].counts} if images else {}


def panoptic_matrix(images: Sequence[Any], num_categories: int) -> np.ndarray:
    out = np.zeros((len(images), num_categories, 4), np.float64)
    for i, r in enumerate(images):
        if r.panoptic is not None:
            out[i] = r.panoptic
    return out

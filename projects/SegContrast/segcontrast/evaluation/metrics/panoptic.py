"""Panoptic quality (PQ, SQ, RQ) of instance predictions, with panopticapi's definitions.

Both sides are first made non-overlapping (rules in docs/EVALUATION.md):

* ground truth: a non-crowd instance keeps the pixels no other non-crowd instance covers;
  pixels of two or more non-crowd instances are VOID; the crowd regions of one class form one
  crowd segment on the pixels no non-crowd instance covers (pixels of crowd regions of two or
  more classes are VOID); every other pixel is one **background** segment (a stuff category,
  not VOID);
* predictions: Detectron2's ``combine_semantic_and_instance_outputs`` rule for things: in
  descending score order (equal scores in the model's order) each prediction takes the pixels
  not yet taken, unless it would lose more than ``overlap_threshold`` of its mask, in which case
  it is dropped; the pixels left are the predicted background segment.

Category indices: 0 background, thing class k is k + 1. Statistics per category are
``(TP, FP, FN, sum of matched IoU)``; they add over images.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ...data.masks import GroundTruth, MaskCrops

__all__ = [
    "MATCH_IOU",
    "GtPanoptic",
    "PanopticScores",
    "PredPanoptic",
    "gt_segments",
    "panoptic_scores",
    "panoptic_stats",
    "pred_segments",
]

# panopticapi: a predicted and a ground-truth segment match when their IoU is above this.
MATCH_IOU = 0.5
TP, FP, FN, IOU = range(4)


@dataclass
class GtPanoptic:
    """One image's non-overlapping ground-truth segments.

    Attributes:
        labels: (H, W) uint16 (int32 beyond 65535 labels) label of every pixel: 0
            background, ``r + 1`` the segment of the r-th non-crowd instance, then one crowd
            segment per class, and last VOID.
        categories: (L,) category of each label (0 background, k + 1 class k; -1 for VOID).
        crowd: (L,) bool, a crowd segment.
        areas: (L,) int64 pixels of each label.
        crowd_classes: (C,) the classes of the crowd segments, in label order.
    """

    labels: np.ndarray
    categories: np.ndarray
    crowd: np.ndarray
    areas: np.ndarray
    crowd_classes: np.ndarray

    @property
    def void(self) -> int:
        """The VOID label."""
        return len(self.areas) - 1

    @property
    def num_instances(self) -> int:
        """Non-crowd instances (labels 1..G)."""
        return len(self.areas) - len(self.crowd_classes) - 2


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


@dataclass
class PredPanoptic:
    """Predicted segments of one image, one entry per prediction given.

    Attributes:
        kept: (N,) bool, the prediction has a segment (not dropped, not empty).
        areas: (N,) int64 segment areas (0 when not kept).
        hist: (N, L) int64 pixels of each segment on each ground-truth label.
        crops: N segment masks within the prediction's box (None when not kept).
        changed: when updated from earlier segments (``pred_segments``' ``reuse``), whether
            any segment differs from them (True otherwise).
    """

    kept: np.ndarray
    areas: np.ndarray
    hist: np.ndarray
    crops: list[np.ndarray | None]
    changed: bool = True


def rank_order(scores: np.ndarray) -> np.ndarray:
    """Descending score; equal scores in the given order."""
    return np.argsort(-np.asarray(scores, np.float64), kind="stable")


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
    return PredPanoptic(kept, areas, hist, crops, changed)


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
    false_pos = unmatched & ~(ignored / areas > 0.5)
    stats[:, FP] = np.bincount(cats[false_pos], minlength=num_categories)
    return stats


@dataclass
class PanopticScores:
    """PQ, SQ, RQ from summed statistics (fractions, not percent).

    Attributes:
        pq, sq, rq: (K + 1,) per category (index 0 background); NaN for a category with no
            TP, FP or FN.
        things: ``(PQ, SQ, RQ)`` averaged over the thing categories that have segments.
        all: the same with the background category.
    """

    pq: np.ndarray
    sq: np.ndarray
    rq: np.ndarray
    things: tuple[float, float, float]
    all: tuple[float, float, float]


def _average(values: np.ndarray, present: np.ndarray) -> float:
    return float(values[present].sum() / np.count_nonzero(present)) if present.any() else math.nan


def panoptic_scores(stats: np.ndarray) -> PanopticScores:
    """Panopticapi's ``pq_average``: per category, then the mean over categories with segments.

    ``PQ_c = sum IoU / (TP + FP/2 + FN/2)``, ``SQ_c = sum IoU / TP`` (0 without TP),
    ``RQ_c = TP / (TP + FP/2 + FN/2)``.

    Args:
        stats: (K + 1, 4) summed statistics.

    Returns:
        The scores.
    """
    tp, fp, fn, iou = stats[:, TP], stats[:, FP], stats[:, FN], stats[:, IOU]
    present = tp + fp + fn > 0
    denominator = np.where(present, tp + 0.5 * fp + 0.5 * fn, 1.0)
    pq = np.where(present, iou / denominator, math.nan)
    sq = np.where(present, np.where(tp > 0, iou / np.where(tp > 0, tp, 1.0), 0.0), math.nan)
    rq = np.where(present, tp / denominator, math.nan)
    things = present.copy()
    things[0] = False

    def means(mask: np.ndarray) -> tuple[float, float, float]:
        return (_average(pq, mask), _average(sq, mask), _average(rq, mask))

    return PanopticScores(pq, sq, rq, means(things), means(present))

"""COCO mask AP from stored per-image IoU matrices, equal to pycocotools' ``COCOeval``.

``COCOeval(iouType="segm")`` with default parameters is reproduced step by step:

* per image and class, detections sorted by score (stable, so ties keep the model's order),
  at most 100 kept; IoUs as ``pycocotools.mask.iou`` (a crowd region: intersection over the
  detection's area);
* ground truth ignored for an area range when crowd or when its annotation ``area`` lies
  outside the range (bounds inclusive); a detection left unmatched is ignored when its
  ``area`` lies outside. The caller passes the detection areas (:data:`AP_AREAS`): mask areas
  by default, as Detectron2's ``COCOEvaluator`` has pycocotools take them (it removes each
  result's box before ``loadRes``), or box ``w * h`` as ``loadRes`` takes them from results
  with boxes;
* greedy matching per IoU threshold in score order: each detection takes the still-free
  ground truth of highest IoU >= threshold (on equal IoU the later one), non-ignored ground
  truth before ignored, crowd regions never used up; a match to a ground truth whose
  annotation ``id`` is 0 is counted as no match (pycocotools stores the id and tests it for
  truth);
* precision/recall accumulated over images in increasing image-id order, detections sorted
  by score with a stable sort, precision made monotone and sampled at 101 recall points.

Matching runs for all (image, class) groups in one call of the compiled kernels
(``segcontrast._kernels.coco_match``), group by group as COCOeval's ``evaluateImg``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ...utils.native import kernels

__all__ = [
    "AP_AREAS",
    "AP_AREA_RULES",
    "AREA_RANGES",
    "IOU_THRESHOLDS",
    "MAX_DETS",
    "RECALL_THRESHOLDS",
    "ApImage",
    "ApMatches",
    "CocoAp",
    "MatchedDetections",
    "accumulate",
    "coco_ap_matches",
    "coco_segm_ap",
    "concat_ap_images",
    "ground_truth_counts",
    "group_data",
    "match_detections",
    "match_groups",
    "weighted_ap",
]

# pycocotools.cocoeval.Params.setDetParams, same expressions so the floats are identical.
IOU_THRESHOLDS = np.linspace(0.5, 0.95, int(np.round((0.95 - 0.5) / 0.05)) + 1, endpoint=True)
RECALL_THRESHOLDS = np.linspace(0.0, 1.00, int(np.round((1.00 - 0.0) / 0.01)) + 1, endpoint=True)
AREA_RANGES = np.array(
    [[0**2, 1e5**2], [0**2, 32**2], [32**2, 96**2], [96**2, 1e5**2]], dtype=np.float64
)
AREA_NAMES = ("all", "small", "medium", "large")
MAX_DETS = 100
# What a detection's area is for the area ranges: "mask" (its pixel count, as Detectron2's
# COCOEvaluator and MMDetection's CocoMetric have pycocotools compute it) or "box" (its box
# w * h where there is one, as pycocotools' loadRes takes it from results with boxes).
AP_AREAS = ("mask", "box")
AP_AREA_RULES = {
    "mask": "APs, APm and APl (small < 32^2, medium, large > 96^2 pixels) take each prediction's "
            "mask area, as Detectron2's COCOEvaluator and MMDetection do (AP_AREA mask; "
            "'box' takes box areas, as pycocotools does on a results file with boxes).",
    "box": "APs, APm and APl (small < 32^2, medium, large > 96^2 pixels) take each prediction's "
           "box area w * h where it has a box, as pycocotools' loadRes does on a results file "
           "with boxes (AP_AREA box; Detectron2's COCOEvaluator and MMDetection take mask "
           "areas).",
}
# COCOeval's matching thresholds (it caps them just below 1)
_THRESHOLDS = np.minimum(IOU_THRESHOLDS, 1 - 1e-10)
_WEIGHTED_ELEMENTS = 1_000_000  # per (resamples, detections, thresholds) block of weighted_ap


@dataclass
class ApImage:
    """What AP needs from one image: one group per class with detections or ground truth.

    Attributes:
        classes: (Q,) class of each group, increasing.
        det_offsets: (Q + 1,) slices of the detection arrays per group.
        gt_offsets: (Q + 1,) slices of the ground-truth arrays per group.
        det_scores: detection scores, per group sorted by decreasing score (stable), <= 100.
        det_areas: detection areas used for the area ranges.
        gt_crowd: bool crowd flags, per group in annotation order.
        gt_areas: annotation ``area`` of each ground truth.
        gt_id_zero: bool, the annotation ``id`` is 0.
        ious: per group the (D, G) IoU matrix, flattened and concatenated.
    """

    classes: np.ndarray
    det_offsets: np.ndarray
    gt_offsets: np.ndarray
    det_scores: np.ndarray
    det_areas: np.ndarray
    gt_crowd: np.ndarray
    gt_areas: np.ndarray
    gt_id_zero: np.ndarray
    ious: np.ndarray

    @classmethod
    def build(
        cls,
        det_classes: np.ndarray,
        det_scores: np.ndarray,
        det_areas: np.ndarray,
        gt_classes: np.ndarray,
        gt_crowd: np.ndarray,
        gt_areas: np.ndarray,
        gt_ids: np.ndarray,
        iou: np.ndarray,
    ) -> ApImage:
        """Group one image's detections and ground truth by class.

        Args:
            det_classes: (N,) detection classes, in the model's order.
            det_scores: (N,) float64 scores.
            det_areas: (N,) float64 areas for the area ranges.
            gt_classes: (G,) classes, annotation order, crowd regions included.
            gt_crowd: (G,) bool.
            gt_areas: (G,) annotation areas.
            gt_ids: (G,) annotation ids.
            iou: (N, G) IoUs as pycocotools computes them.

        Returns:
            The grouped records.
        """
        det_classes = np.asarray(det_classes, np.int64)
        gt_classes = np.asarray(gt_classes, np.int64)
        # (not np.union1d: numpy's unique imports numpy.ma on first use, 40 ms of start-up)
        classes = np.array(sorted(set(det_classes.tolist()) | set(gt_classes.tolist())), np.int64)
        # Detections by class, then decreasing score; lexsort is stable, so equal scores keep
        # the model's order as COCOeval's mergesort does. At most MAX_DETS per class.
        d = np.lexsort((-det_scores, det_classes))
        d_cls = det_classes[d]
        first = np.searchsorted(d_cls, d_cls, side="left")
        d = d[np.arange(len(d)) - first < MAX_DETS]
        g = np.argsort(gt_classes, kind="stable")
        d_cls, g_cls = det_classes[d], gt_classes[g]
        # Row-major selection of same-class pairs = each class's (D, G) block, class by class.
        ious = iou[np.ix_(d, g)][d_cls[:, None] == g_cls[None, :]]
        det_counts = np.searchsorted(d_cls, classes, side="right") - np.searchsorted(
            d_cls, classes, side="left"
        )
        gt_counts = np.searchsorted(g_cls, classes, side="right") - np.searchsorted(
            g_cls, classes, side="left"
        )
        return cls(
            classes=classes,
            det_offsets=np.concatenate(([0], np.cumsum(det_counts))).astype(np.int64),
            gt_offsets=np.concatenate(([0], np.cumsum(gt_counts))).astype(np.int64),
            det_scores=np.asarray(det_scores, np.float64)[d],
            det_areas=np.asarray(det_areas, np.float64)[d],
            gt_crowd=np.asarray(gt_crowd, bool)[g],
            gt_areas=np.asarray(gt_areas, np.float64)[g],
            gt_id_zero=np.asarray(gt_ids)[g] == 0,
            ious=ious.astype(np.float64),
        )

@dataclass
class CocoAp:
    """Accumulated COCO results (maxDets = 100 only).

    Attributes:
        precision: (T, R, K, A) as ``COCOeval.eval["precision"][..., -1]``; -1 where a class
            has no non-ignored ground truth.
        recall: (T, K, A) as ``COCOeval.eval["recall"][..., -1]``.
    """

    precision: np.ndarray
    recall: np.ndarray

    def _summarize(self, iou: float | None = None, area: str = "all") -> float:
        s = self.precision
        if iou is not None:
            s = s[np.where(iou == IOU_THRESHOLDS)[0]]
        s = s[:, :, :, AREA_NAMES.index(area)]
        return float(np.mean(s[s > -1])) if np.any(s > -1) else -1.0

    def ap(self) -> float:
        """AP (IoU 0.50:0.95, area "all") in percent, NaN where COCOeval gives -1.

        Needs only the first area range, so it also serves results matched for it alone.
        """
        value = self._summarize()
        return value * 100 if value >= 0 else math.nan

    def stats(self) -> dict[str, float]:
        """AP, AP50, AP75, APs, APm, APl in percent (NaN where COCOeval gives -1)."""
        values = {
            "AP": self._summarize(),
            "AP50": self._summarize(iou=0.5),
            "AP75": self._summarize(iou=0.75),
            "APs": self._summarize(area="small"),
            "APm": self._summarize(area="medium"),
            "APl": self._summarize(area="large"),
        }
        return {k: (v * 100 if v >= 0 else math.nan) for k, v in values.items()}

    def per_class(self) -> np.ndarray:
        """(K,) AP per class in percent, NaN for a class without ground truth."""
        out = np.full(self.precision.shape[2], math.nan)
        for k in range(len(out)):
            p = self.precision[:, :, k, 0]
            p = p[p > -1]
            if p.size:
                out[k] = float(np.mean(p)) * 100
        return out


def _group_sizes(offsets: Sequence[np.ndarray]) -> np.ndarray:
    """Every image's ``np.diff(offsets)``, concatenated: one ``diff`` over all images.

    Args:
        offsets: per image its (Q + 1,) offsets.

    Returns:
        (sum Q,) int64 sizes of the groups, image after image.
    """
    if not offsets:
        return np.zeros(0, np.int64)
    flat = np.concatenate(offsets).astype(np.int64, copy=False)
    sizes = np.diff(flat)
    # the differences across two images' offsets (last of one, first of the next) are no group
    across = np.cumsum([len(o) for o in offsets])[:-1] - 1
    keep = np.ones(len(sizes), bool)
    keep[across] = False
    return sizes[keep]


def concat_ap_images(images: Sequence[ApImage]) -> dict[str, np.ndarray]:
    """Every image's groups concatenated, in :func:`match_groups`' form (:func:`group_data`).

    Computed once, it serves :func:`match_detections` and :func:`ground_truth_counts` (their
    ``data`` argument) and the gap accounting.

    Args:
        images: per-image records.

    Returns:
        The groups of all images, image after image (``classes``, ``n_det``, ``n_gt``, the
        starts, the detections' and ground truth's arrays, ``ious``).
    """
    def cat(name: str, dtype: type) -> np.ndarray:
        parts = [getattr(im, name) for im in images]
        return np.concatenate(parts).astype(dtype, copy=False) if parts else np.zeros(0, dtype)

    n_det = _group_sizes([im.det_offsets for im in images])
    n_gt = _group_sizes([im.gt_offsets for im in images])
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


@dataclass
class MatchedDetections:
    """Detections after COCO's per-image matching, ready for accumulation.

    Attributes:
        classes: (D,) class of each detection.
        scores: (D,) its score.
        keys: (D,) int64 order among equal scores: COCOeval's (image, position in its group).
        groups: (D,) int64 ``image * K + class`` of each detection (to replace groups).
        tp: (D, A, T) bool true positive per area range and IoU threshold.
        fp: (D, A, T) bool false positive (ignored detections are neither).
    """

    classes: np.ndarray
    scores: np.ndarray
    keys: np.ndarray
    groups: np.ndarray
    tp: np.ndarray
    fp: np.ndarray

    @staticmethod
    def concat(parts: Sequence[MatchedDetections]) -> MatchedDetections:
        """One set from several (their order does not matter for accumulation)."""
        return MatchedDetections(*(np.concatenate([getattr(p, f) for p in parts])
                                   for f in ("classes", "scores", "keys", "groups", "tp", "fp")))

    def without_groups(self, groups: np.ndarray) -> MatchedDetections:
        """The detections outside the given ``image * K + class`` groups."""
        keep = ~np.isin(self.groups, groups)
        return MatchedDetections(self.classes[keep], self.scores[keep], self.keys[keep],
                                 self.groups[keep], self.tp[keep], self.fp[keep])


def _gt_ignore(data: dict[str, np.ndarray], areas: np.ndarray = AREA_RANGES) -> np.ndarray:
    lo, hi = areas[:, 0], areas[:, 1]
    gt_area = data["gt_areas"][:, None]
    return data["gt_crowd"][:, None] | (gt_area < lo) | (gt_area > hi)  # (NG, A)


def match_detections(images: Sequence[ApImage], num_classes: int,
                     ranks: Sequence[int] | None = None,
                     areas: np.ndarray = AREA_RANGES,
                     data: dict[str, np.ndarray] | None = None) -> MatchedDetections:
    """COCO's evaluate step (greedy matching per image, class, area range and threshold).

    Args:
        images: per-image records.
        num_classes: K.
        ranks: each record's position in COCOeval's image order (default: list order).
        areas: the area ranges (default COCO's four; ``AREA_RANGES[:1]`` for AP alone).
        data: ``concat_ap_images(images)`` when the caller has it already.

    Returns:
        The matched detections.
    """
    group_image = np.repeat(
        np.asarray(ranks if ranks is not None else range(len(images)), np.int64),
        [len(im.classes) for im in images],
    ) if images else np.zeros(0, np.int64)
    if data is None:
        data = concat_ap_images(images)
    return match_groups(data, group_image, num_classes, areas)


def group_data(classes: np.ndarray, n_det: np.ndarray, n_gt: np.ndarray,
               det_scores: np.ndarray, det_areas: np.ndarray, gt_crowd: np.ndarray,
               gt_areas: np.ndarray, gt_id_zero: np.ndarray,
               ious: np.ndarray) -> dict[str, np.ndarray]:
    """(image, class) groups given as concatenated arrays, in :func:`match_groups`' form.

    Args:
        classes: (Q,) class of each group.
        n_det: (Q,) detections per group; ``det_scores``, ``det_areas`` concatenated.
        n_gt: (Q,) ground truth per group; ``gt_crowd``, ``gt_areas``, ``gt_id_zero``
            concatenated.
        det_scores: detection scores, per group as :class:`ApImage` orders them.
        det_areas: their areas.
        gt_crowd: ground-truth crowd flags.
        gt_areas: their annotation areas.
        gt_id_zero: their annotation id is 0.
        ious: per group its (D, G) IoUs, flattened and concatenated.

    Returns:
        The dict :func:`match_groups` takes.
    """
    n_det = np.asarray(n_det, np.int64)
    n_gt = np.asarray(n_gt, np.int64)
    return {
        "classes": np.asarray(classes, np.int64),
        "n_det": n_det,
        "n_gt": n_gt,
        "det_start": np.concatenate(([0], np.cumsum(n_det)))[:-1],
        "gt_start": np.concatenate(([0], np.cumsum(n_gt)))[:-1],
        "iou_start": np.concatenate(([0], np.cumsum(n_det * n_gt)))[:-1],
        "det_scores": np.asarray(det_scores, np.float64),
        "det_areas": np.asarray(det_areas, np.float64),
        "gt_crowd": np.asarray(gt_crowd, bool),
        "gt_areas": np.asarray(gt_areas, np.float64),
        "gt_id_zero": np.asarray(gt_id_zero, bool),
        "ious": np.asarray(ious, np.float64),
    }


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
    lo, hi = areas[:, 0], areas[:, 1]
    gt_ignore = _gt_ignore(data, areas)
    det_area = data["det_areas"][:, None]
    det_outside = (det_area < lo) | (det_area > hi)  # (ND, A)

    n_total = len(data["det_scores"])
    matched, matched_ignored = kernels.coco_match(
        data["n_det"], data["n_gt"], data["det_start"], data["gt_start"], data["iou_start"],
        data["ious"], np.ascontiguousarray(gt_ignore), data["gt_crowd"], data["gt_id_zero"],
        _THRESHOLDS, n_total)
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


def ground_truth_counts(images: Sequence[ApImage], num_classes: int,
                        areas: np.ndarray = AREA_RANGES,
                        data: dict[str, np.ndarray] | None = None) -> np.ndarray:
    """(K, A) ground truth that is not ignored, per class and area range (COCO's npig).

    ``data``: ``concat_ap_images(images)`` when the caller has it already.
    """
    if data is None:
        data = concat_ap_images(images)
    gt_class = np.repeat(data["classes"], data["n_gt"])
    keep = ~_gt_ignore(data, areas)
    out = np.zeros((num_classes, len(areas)), np.int64)
    for a in range(len(areas)):
        out[:, a] = np.bincount(gt_class[keep[:, a]], minlength=num_classes)[:num_classes]
    return out


def accumulate(dets: MatchedDetections, npig: np.ndarray, num_classes: int) -> CocoAp:
    """COCO's accumulate step: precision and recall over all images, per class and area.

    Args:
        dets: the matched detections of every image.
        npig: (K, A) non-ignored ground truth counts (A: the area ranges matched).
        num_classes: K.

    Returns:
        Precision and recall arrays (over the A area ranges matched).
    """
    # the compiled kernel sorts (class, decreasing score, COCOeval's concatenation order)
    # and runs COCOeval's arithmetic; tests/evaluation/reference_impl.accumulate is numpy's
    precision, recall = kernels.coco_accumulate(
        np.asarray(dets.classes, np.int64), np.asarray(dets.scores, np.float64),
        np.asarray(dets.keys, np.int64), dets.tp, dets.fp, np.asarray(npig, np.int64),
        np.asarray(RECALL_THRESHOLDS, np.float64), int(num_classes))
    return CocoAp(precision=precision, recall=recall)


def coco_segm_ap(images: Sequence[ApImage], num_classes: int) -> CocoAp:
    """Run COCO's evaluate + accumulate (maxDets 100) on stored records.

    Args:
        images: per-image records in increasing image-id order (COCOeval's order).
        num_classes: K; class k of the records is the k-th category in id order.

    Returns:
        Precision and recall arrays.
    """
    return accumulate(match_detections(images, num_classes),
                      ground_truth_counts(images, num_classes), num_classes)


@dataclass
class ApMatches:
    """COCO's matching of every detection, with each detection's and ground truth's image.

    What a bootstrap over images needs: matching depends on one image alone, so resampling
    images reuses it and only repeats the accumulation (:func:`weighted_ap`).

    Attributes:
        det_image: (ND,) index of each detection's image (position in the records).
        det_class: (ND,) class of each detection.
        det_scores: (ND,) float64 scores.
        tp: (ND, A, T) bool, a true positive per area range and IoU threshold.
        fp: (ND, A, T) bool, a false positive (neither a match nor ignored).
        gt_image: (NG,) index of each ground truth's image.
        gt_class: (NG,) class of each ground truth.
        gt_ignore: (NG, A) bool, ignored per area range (crowd, or area outside the range).
    """

    det_image: np.ndarray
    det_class: np.ndarray
    det_scores: np.ndarray
    tp: np.ndarray
    fp: np.ndarray
    gt_image: np.ndarray
    gt_class: np.ndarray
    gt_ignore: np.ndarray


def coco_ap_matches(images: Sequence[ApImage], num_classes: int) -> ApMatches:
    """:func:`match_detections` of the records, plus the images of detections and ground truth.

    Args:
        images: per-image records in increasing image-id order (COCOeval's order).
        num_classes: K.

    Returns:
        The outcome of every detection and the ignore flags of every ground truth.
    """
    data = concat_ap_images(images)
    dets = match_detections(images, num_classes, data=data)
    group_image = np.repeat(np.arange(len(images)), [len(im.classes) for im in images])
    return ApMatches(
        det_image=dets.keys // (MAX_DETS + 1),
        det_class=dets.classes,
        det_scores=dets.scores,
        tp=dets.tp,
        fp=dets.fp,
        gt_image=np.repeat(group_image, data["n_gt"]),
        gt_class=np.repeat(data["classes"], data["n_gt"]),
        gt_ignore=_gt_ignore(data),
    )


def weighted_ap(matches: ApMatches, num_classes: int, weights: np.ndarray) -> dict[str, np.ndarray]:
    """AP and AP50 (area "all") when each image counts ``weights[b, i]`` times.

    An image counted twice adds its detections and ground truth twice, as if it were in the
    dataset twice (a bootstrap resample). With all weights 1 this is :func:`coco_segm_ap`'s AP
    and AP50 (to float rounding of the final mean); with other weights it equals
    ``coco_segm_ap`` on the repeated images up to the order of detections of equal score.

    COCO's interpolated precision at recall r is the largest precision at any detection whose
    recall is at least r; with ``idx_j`` the last recall threshold at or below detection j's
    recall, that is a suffix maximum over r of the per-threshold maxima, which ``reduceat``
    gives for all resamples and IoU thresholds at once.

    Args:
        matches: from :func:`coco_ap_matches`.
        num_classes: K.
        weights: (B, images) non-negative integer counts.

    Returns:
        ``{"AP": (B,), "AP50": (B,)}`` in percent, NaN where no class has ground truth.
    """
    weights = np.asarray(weights, np.float64)
    b_count = weights.shape[0]
    t_count, r_count = len(IOU_THRESHOLDS), len(RECALL_THRESHOLDS)
    sums = np.zeros((b_count, t_count))  # sum over classes and recall thresholds
    classes_with_gt = np.zeros(b_count)
    eps = np.spacing(1)
    for k in range(num_classes):
        gts = (matches.gt_class == k) & ~matches.gt_ignore[:, 0]
        npig = weights[:, matches.gt_image[gts]].sum(axis=1)  # (B,)
        has_gt = np.flatnonzero(npig > 0)
        classes_with_gt[has_gt] += 1
        dets = np.flatnonzero(matches.det_class == k)
        dets = dets[np.argsort(-matches.det_scores[dets], kind="mergesort")]
        tp = matches.tp[dets, 0, :]
        counted = tp | matches.fp[dets, 0, :]
        keep = counted.any(axis=1)  # ignored at every threshold: no effect on the curve
        dets, tp, counted = dets[keep], tp[keep].astype(np.float64), counted[keep]
        nd = len(dets)
        if nd == 0 or not len(has_gt):
            continue
        # Without crowd regions a detection counts (tp or fp) at every threshold or at none:
        # the running count of counted detections is then one row for all thresholds.
        same = bool(np.all(counted == counted[:, :1]))
        counted = (counted[:, :1] if same else counted).astype(np.float64)
        step = max(1, _WEIGHTED_ELEMENTS // (nd * t_count))
        for start in range(0, len(has_gt), step):
            rows = has_gt[start : start + step]
            b = len(rows)
            # (b, T, nd): detections last, so that each (resample, threshold) is contiguous
            w = weights[np.ix_(rows, matches.det_image[dets])][:, None, :]
            tp_sum = np.cumsum(w * tp.T[None], axis=2)
            total = np.cumsum(w * counted.T[None], axis=2)
            total += eps
            pr = np.divide(tp_sum, total)
            # Recall is tp / npig with tp an integer <= npig: look the threshold index up in a
            # table of every possible tp (the same division as COCOeval's, so the same floats).
            most = int(npig[rows].max())
            table = np.searchsorted(
                RECALL_THRESHOLDS, np.arange(most + 1)[None, :] / npig[rows, None], side="right"
            ) - 1
            lookup = np.minimum(tp_sum, most, out=tp_sum).astype(np.int64)
            lookup += np.arange(b)[:, None, None] * (most + 1)
            # key: (resample, threshold, recall-threshold index), non-decreasing along memory
            key = table.ravel()[lookup]
            key += np.arange(b * t_count).reshape(b, t_count, 1) * r_count
            key = key.ravel()
            starts = np.concatenate(([0], np.flatnonzero(np.diff(key)) + 1))
            best = np.zeros(b * t_count * r_count)
            best[key[starts]] = np.maximum.reduceat(pr.ravel(), starts)
            best = best.reshape(b, t_count, r_count)
            q = np.maximum.accumulate(best[:, :, ::-1], axis=2)
            sums[rows] += q.sum(axis=2)
    out = {"AP": np.full(b_count, math.nan), "AP50": np.full(b_count, math.nan)}
    valid = classes_with_gt > 0
    out["AP"][valid] = sums[valid].sum(axis=1) / (classes_with_gt[valid] * t_count * r_count) * 100
    out["AP50"][valid] = sums[valid, 0] / (classes_with_gt[valid] * r_count) * 100
    return out

"""The gap accounting, part 4: the dataset-level deltas of every fixed variant.

Each variant's four headline metrics are recomputed by the same code as the originals, from
the image statistics with the fixed ones substituted for the images where its error occurs;
the delta is the fixed value minus the original (percent points). A variant whose error
occurs nowhere is the original, so its delta is exactly 0. The low-score row has no AP delta
(NaN): AP ranks predictions below the score threshold, so removing them fixes no error of AP.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..catalog import ACCOUNTED
from ..metrics.coco_ap import (
    AREA_RANGES,
    CocoAp,
    MatchedDetections,
    accumulate,
    concat_ap_images,
    ground_truth_counts,
    group_data,
    match_detections,
    match_groups,
)
from ..metrics.panoptic import panoptic_scores
from ..metrics.semantic import semantic_scores
from ..records import EvalState, ImageRecord
from .assignment import ALL, ERROR_TYPES, LOW_SCORE

# AP alone is over the area range "all": the other three are not matched for the variants
_ALL_AREAS = AREA_RANGES[:1]

__all__ = ["HEADLINES", "VARIANT_NAMES", "accounting_results", "panoptic_matrix"]

VARIANT_NAMES = (*ERROR_TYPES, "all")
# the accounting group's headline keys, in order (labels: the catalog's)
HEADLINES = tuple(key for key, _ in ACCOUNTED)


def panoptic_matrix(images: Sequence[ImageRecord], num_categories: int) -> np.ndarray:
    """(images, K + 1, 4) the images' PQ statistics (zeros for an image without them)."""
    out = np.zeros((len(images), num_categories, 4), np.float64)
    present = [i for i, r in enumerate(images) if r.panoptic is not None]
    if present:
        out[present] = np.stack([images[i].panoptic for i in present])
    return out


def _mean(values: np.ndarray) -> float:
    return float(np.mean(values)) if values.size else math.nan


class _Variants:
    """Every variant's substitutions, gathered from the image records in one pass.

    Attributes:
        iou_index, iou_values: per variant the positions in the concatenated per-object IoUs
            and their fixed values.
        pq_index, pq_values: per variant (image, category) and its fixed PQ statistics.
        replaced: per variant the ``image * K + class`` AP groups it replaces.
        fresh: per variant its AP groups, matched (all variants in one call).

    ``ap_data``: the images' AP records concatenated (``coco_ap.concat_ap_images``), when the
    caller has them already.
    """

    def __init__(self, images: Sequence[ImageRecord], num_classes: int,
                 offsets: np.ndarray, areas: np.ndarray,
                 ap_data: dict[str, np.ndarray] | None = None) -> None:
        if ap_data is None:
            ap_data = concat_ap_images([r.ap for r in images])
        # every image's records concatenated once, then split by variant (image order kept)
        with_acc = [(i, r.accounting) for i, r in enumerate(images) if r.accounting is not None]
        accs = [a for _, a in with_acc]
        image_of = np.array([i for i, _ in with_acc], np.int64)
        self.iou_index, self.iou_values = self._iou_substitutions(accs, image_of, offsets)
        self.pq_index, self.pq_values = self._pq_substitutions(accs, image_of)
        with_groups = [i for i, a in with_acc if len(a.ap_groups)]
        self.replaced, self.fresh = self._ap_groups(images, with_groups, num_classes, areas,
                                                    ap_data)

    @staticmethod
    def _iou_substitutions(accs: list, image_of: np.ndarray, offsets: np.ndarray
                           ) -> tuple[dict[int, np.ndarray], dict[int, np.ndarray]]:
        """Per variant the positions of its images' objects and their fixed IoUs."""
        if not accs:
            return {}, {}
        variant = np.concatenate([a.iou_variants for a in accs]).astype(np.int64)
        image = np.repeat(image_of, [len(a.iou_variants) for a in accs])
        length = offsets[image + 1] - offsets[image]  # one fixed row per (image, variant)
        values = np.concatenate([a.gt_iou.ravel() for a in accs]).astype(np.float64)
        start = np.cumsum(length) - length
        index = (np.repeat(offsets[image], length)
                 + np.arange(int(length.sum()), dtype=np.int64) - np.repeat(start, length))
        of_row = np.repeat(variant, length)
        iou_index, iou_values = {}, {}
        for v in sorted(set(variant.tolist())):
            at = of_row == v
            iou_index[v], iou_values[v] = index[at], values[at]
        return iou_index, iou_values

    @staticmethod
    def _pq_substitutions(accs: list, image_of: np.ndarray
                          ) -> tuple[dict[int, tuple[np.ndarray, np.ndarray]],
                                     dict[int, np.ndarray]]:
        """Per variant its (image, category) pairs and their fixed PQ statistics."""
        if not accs:
            return {}, {}
        rows = np.concatenate([a.pq_rows for a in accs]).reshape(-1, 5)
        if not len(rows):
            return {}, {}
        image = np.repeat(image_of, [len(a.pq_rows) for a in accs])
        values = np.column_stack([rows[:, 2:].astype(np.float64),
                                  np.concatenate([a.pq_iou for a in accs]).astype(np.float64)])
        pq_index, pq_values = {}, {}
        for v in sorted(set(rows[:, 0].tolist())):
            at = rows[:, 0] == v
            pq_index[v] = (image[at], rows[at, 1].astype(np.int64))
            pq_values[v] = values[at]
        return pq_index, pq_values

    @staticmethod
    def _ap_groups(images: Sequence[ImageRecord], with_groups: list[int], num_classes: int,
                   areas: np.ndarray, ap_data: dict[str, np.ndarray]
                   ) -> tuple[dict[int, np.ndarray], dict[int, MatchedDetections]]:
        """Per variant the ``image * K + class`` AP groups it replaces, and its groups matched.

        A variant's group of an image has that image's ground truth of the class (found by
        its key among the image records' groups, ``ap_data``: :func:`concat_ap_images`) and
        the variant's detections.
        """
        if not with_groups:
            return {}, {}
        accs = [images[i].accounting for i in with_groups]
        groups = np.concatenate([a.ap_groups for a in accs]).astype(np.int64)
        image = np.repeat(np.array(with_groups, np.int64), [len(a.ap_groups) for a in accs])
        variant, cls, n_det = groups[:, 0], groups[:, 1], groups[:, 2]
        keys = image * num_classes + cls
        # the images' own groups (of every image: the keys are increasing)
        own_image = np.repeat(np.arange(len(images), dtype=np.int64),
                              [len(r.ap.classes) for r in images])
        own_keys = own_image * num_classes + ap_data["classes"]
        own_gt, own_start = ap_data["n_gt"], ap_data["gt_start"]
        at = np.minimum(np.searchsorted(own_keys, keys), max(len(own_keys) - 1, 0))
        found = (own_keys[at] == keys) if len(own_keys) else np.zeros(len(keys), bool)
        n_gt = np.where(found, own_gt[at] if len(own_gt) else 0, 0)
        g0 = np.where(found, own_start[at] if len(own_start) else 0, 0)
        replaced = {v: keys[variant == v] for v in sorted(set(variant.tolist()))}
        piece = (n_det > 0) | (n_gt > 0)
        if not piece.any():
            return replaced, {}
        gt_index = np.repeat(g0[piece], n_gt[piece]) + (
            np.arange(int(n_gt[piece].sum()))
            - np.repeat(np.cumsum(n_gt[piece]) - n_gt[piece], n_gt[piece]))

        dets = np.concatenate([a.ap_dets for a in accs]).astype(np.float64).reshape(-1, 2)
        data = group_data(
            classes=cls[piece], n_det=n_det[piece], n_gt=n_gt[piece], det_scores=dets[:, 0],
            det_areas=dets[:, 1], gt_crowd=ap_data["gt_crowd"][gt_index],
            gt_areas=ap_data["gt_areas"][gt_index],
            gt_id_zero=ap_data["gt_id_zero"][gt_index],
            ious=np.concatenate([a.ap_ious for a in accs]).astype(np.float64),
        )
        matched = match_groups(data, image[piece], num_classes, areas)
        variant_of = np.repeat(variant[piece], n_det[piece])
        fresh = {}
        for v in sorted(set(variant_of.tolist())):
            keep = variant_of == v
            fresh[v] = MatchedDetections(matched.classes[keep], matched.scores[keep],
                                         matched.keys[keep], matched.groups[keep],
                                         matched.tp[keep], matched.fp[keep])
        return replaced, fresh


class _Headlines:
    """The four headline metrics of the original predictions and of each variant."""

    def __init__(self, state: EvalState, num_classes: int, with_pq: bool,
                 matched: MatchedDetections | None = None,
                 ap_data: dict[str, np.ndarray] | None = None) -> None:
        self.images = state.images
        self.num_classes = num_classes
        self.confusion = (state.confusion_from_instances
                          if state.confusion_from_instances is not None else state.confusion)
        self.deltas = state.accounting_confusion
        sizes = [len(r.gt_iou) for r in self.images]
        offsets = np.concatenate(([0], np.cumsum(sizes))).astype(np.int64)
        self.gt_iou = (np.concatenate([r.gt_iou for r in self.images]).astype(np.float64)
                       if self.images else np.zeros(0))
        self.pq = panoptic_matrix(self.images, num_classes + 1) if with_pq else None
        ap_images = [r.ap for r in self.images]
        if ap_data is None:
            ap_data = concat_ap_images(ap_images)
        if matched is None:
            matched = match_detections(ap_images, num_classes, areas=_ALL_AREAS, data=ap_data)
        else:  # COCO's four area ranges matched already: AP needs the first
            matched = MatchedDetections(matched.classes, matched.scores, matched.keys,
                                        matched.groups, matched.tp[:, :1], matched.fp[:, :1])
        self.matched = matched
        self.npig = ground_truth_counts(ap_images, num_classes, areas=_ALL_AREAS, data=ap_data)
        self.variants = _Variants(self.images, num_classes, offsets, _ALL_AREAS, ap_data)

    def _ap(self, variant: int | None) -> CocoAp:
        """AP with the variant's detections: only the replaced groups are matched again."""
        dets = self.matched
        replaced = None if variant is None else self.variants.replaced.get(variant)
        if replaced is not None and replaced.size:
            fresh = self.variants.fresh.get(variant)
            parts = [self.matched.without_groups(replaced)]
            dets = MatchedDetections.concat(parts + ([fresh] if fresh is not None else []))
        return accumulate(dets, self.npig, self.num_classes)

    def values(self, variant: int | None, *, with_ap: bool = True) -> dict[str, float]:
        confusion = self.confusion
        gt_iou, pq = self.gt_iou, self.pq
        if variant is not None:
            if self.deltas is not None:
                confusion = confusion + self.deltas[variant]
            if variant in self.variants.iou_index:
                gt_iou = gt_iou.copy()
                gt_iou[self.variants.iou_index[variant]] = self.variants.iou_values[variant]
            if pq is not None and variant in self.variants.pq_index:
                pq = pq.copy()
                pq[self.variants.pq_index[variant]] = self.variants.pq_values[variant]
        out = {
            "semantic_mIoU": semantic_scores(confusion).miou * 100,
            "instance_mIoU": _mean(gt_iou) * 100,
            "AP": self._ap(variant).ap() if with_ap else math.nan,
        }
        if pq is not None:
            out["PQ"] = panoptic_scores(pq.sum(axis=0)).things[0] * 100
        return out


def accounting_results(
    state: EvalState, class_names: Sequence[str], *, with_pq: bool,
    matched: MatchedDetections | None = None, ap_data: dict[str, np.ndarray] | None = None,
) -> tuple[OrderedDict, dict[str, Any]]:
    """The "accounting" group and its details.

    Args:
        state: merged statistics (images in id order) with accounting records.
        class_names: K names.
        with_pq: whether PQ was computed (else no PQ deltas).
        matched: the images' detections already matched for COCO's area ranges (saves
            matching them again).
        ap_data: the images' COCO AP records concatenated (``coco_ap.concat_ap_images``), when
            the caller has them already.

    Returns:
        The group (floats: the original headline metrics, then per row ``count-<row>`` and
        ``delta_<metric>-<row>``, ``all`` last) and the details (one dict per row).
    """
    headlines = _Headlines(state, len(class_names), with_pq, matched, ap_data)
    base = headlines.values(None)
    keys = [k for k in HEADLINES if k in base]
    counts = np.zeros(len(ERROR_TYPES), np.int64)
    for r in state.images:
        if r.accounting is not None:
            counts += r.accounting.counts
    group: OrderedDict[str, float] = OrderedDict((k, float(base[k])) for k in keys)
    rows = []
    for variant, name in enumerate(VARIANT_NAMES):
        count = int(counts.sum() if variant == ALL else counts[variant])
        occurs = count > 0
        with_ap = variant != LOW_SCORE
        fixed = headlines.values(variant, with_ap=with_ap) if occurs else base
        group[f"count-{name}"] = float(count)
        row: dict[str, Any] = {"error": name, "count": count}
        for k in keys:
            if k == "AP" and not with_ap:
                fixed = {**fixed, k: math.nan}
                delta = math.nan
            else:
                delta = float(fixed[k] - base[k]) if occurs else 0.0
            group[f"delta_{k}-{name}"] = delta
            row[f"delta_{k}"] = delta
            row[f"fixed_{k}"] = float(fixed[k])
        rows.append(row)
    details = {
        "rows": rows,
        # with a semantic head too, the accounting's semantic side is the painted instances
        "semantic_group": "semantic_from_instances" if state.confusion_from_instances
        is not None else "semantic",
    }
    return group, details

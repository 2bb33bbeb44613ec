"""The gap accounting, part 3: the dataset-level deltas of every fixed variant.

Each variant's four headline metrics are recomputed by the same code as the originals, from
the image statistics with the fixed ones substituted for the images where its error occurs;
the delta is the fixed value minus the original (percent points). A variant whose error
occurs nowhere is the original, so its delta is exactly 0.
"""

from __future__ import annotations

import math
from collections import OrderedDict, defaultdict
from collections.abc import Sequence
from typing import Any

import numpy as np

from .accounting import ALL, ERROR_TYPES
from .coco_ap import (
    AREA_RANGES,
    CocoAp,
    MatchedDetections,
    accumulate,
    ground_truth_counts,
    group_data,
    match_detections,
    match_groups,
)
from .panoptic import panoptic_scores
from .records import EvalState, ImageRecord
from .semantic import semantic_scores

# AP alone is over the area range "all": the other three are not matched for the variants
_ALL_AREAS = AREA_RANGES[:1]

__all__ = ["HEADLINES", "VARIANT_NAMES", "accounting_results", "panoptic_matrix"]

VARIANT_NAMES = (*ERROR_TYPES, "all")
# (key in the group, what it is)
HEADLINES = (
    ("semantic_mIoU", "semantic mIoU (painted instances)"),
    ("instance_mIoU", "instance mIoU"),
    ("PQ", "PQ"),
    ("AP", "mask AP"),
)


def panoptic_matrix(images: Sequence[ImageRecord], num_categories: int) -> np.ndarray:
    """(images, K + 1, 4) the images' PQ statistics (zeros for an image without them)."""
    out = np.zeros((len(images), num_categories, 4), np.float64)
    for i, r in enumerate(images):
        if r.panoptic is not None:
            out[i] = r.panoptic
    return out


def _mean(values: np.ndarray) -> float:
    return float(np.mean(values)) if values.size else math.nan


class _ApPatches:
    """Every variant's replaced AP groups of every image, gathered in one pass."""

    def __init__(self, images: Sequence[ImageRecord], num_classes: int) -> None:
        self.num_classes = num_classes
        pieces: dict[int, list[tuple]] = defaultdict(list)
        replaced: dict[int, list[int]] = defaultdict(list)
        for i, r in enumerate(images):
            acc = r.accounting
            if acc is None or not len(acc.ap_groups):
                continue
            ap = r.ap
            own = {int(c): q for q, c in enumerate(ap.classes.tolist())}
            groups = acc.ap_groups
            d_end = np.cumsum(groups[:, 2]).tolist()
            i_end = np.cumsum(groups[:, 2] * groups[:, 3]).tolist()
            d0 = i0 = 0
            for (variant, cls, n_det, _), d1, i1 in zip(groups.tolist(), d_end, i_end,
                                                           strict=True):
                q = own.get(cls)
                g0, g1 = (int(ap.gt_offsets[q]), int(ap.gt_offsets[q + 1])) if q is not None \
                    else (0, 0)
                replaced[variant].append(i * num_classes + cls)
                if n_det or g1 > g0:
                    pieces[variant].append((i, cls, n_det, g1 - g0, acc.ap_dets[d0:d1],
                                            acc.ap_ious[i0:i1], ap, g0, g1))
                d0, i0 = d1, i1
        self.pieces = pieces
        self.replaced = {v: np.array(r, np.int64) for v, r in replaced.items()}

    def matched(self, variant: int, areas: np.ndarray) -> tuple[MatchedDetections, np.ndarray]:
        """The variant's groups matched, and the ``image * K + class`` groups they replace."""
        pieces = self.pieces.get(variant, [])
        replaced = self.replaced.get(variant, np.zeros(0, np.int64))
        if not pieces:
            return None, replaced

        def cat(parts: list[np.ndarray], dtype: type) -> np.ndarray:
            return np.concatenate(parts).astype(dtype) if parts else np.zeros(0, dtype)

        dets = cat([p[4] for p in pieces], np.float64).reshape(-1, 2)
        data = group_data(
            classes=[p[1] for p in pieces], n_det=[p[2] for p in pieces],
            n_gt=[p[3] for p in pieces], det_scores=dets[:, 0], det_areas=dets[:, 1],
            gt_crowd=cat([p[6].gt_crowd[p[7]:p[8]] for p in pieces], bool),
            gt_areas=cat([p[6].gt_areas[p[7]:p[8]] for p in pieces], np.float64),
            gt_id_zero=cat([p[6].gt_id_zero[p[7]:p[8]] for p in pieces], bool),
            ious=cat([p[5] for p in pieces], np.float64),
        )
        group_image = np.array([p[0] for p in pieces], np.int64)
        return match_groups(data, group_image, self.num_classes, areas), replaced


class _Headlines:
    """The four headline metrics of the original predictions and of each variant."""

    def __init__(self, state: EvalState, num_classes: int, with_pq: bool) -> None:
        self.images = state.images
        self.num_classes = num_classes
        self.confusion = (state.confusion_from_instances
                          if state.confusion_from_instances is not None else state.confusion)
        self.deltas = state.accounting_confusion
        sizes = [len(r.gt_iou) for r in self.images]
        self.offsets = np.concatenate(([0], np.cumsum(sizes))).astype(np.int64)
        self.gt_iou = (np.concatenate([r.gt_iou for r in self.images]).astype(np.float64)
                       if self.images else np.zeros(0))
        self.pq = panoptic_matrix(self.images, num_classes + 1) if with_pq else None
        ap_images = [r.ap for r in self.images]
        self.matched = match_detections(ap_images, num_classes, areas=_ALL_AREAS)
        self.npig = ground_truth_counts(ap_images, num_classes, areas=_ALL_AREAS)
        self.patches = _ApPatches(self.images, num_classes)

    def _ap(self, variant: int | None) -> CocoAp:
        """AP with the variant's detections: only the replaced groups are matched again."""
        fresh, replaced = (None, None) if variant is None else self.patches.matched(
            variant, _ALL_AREAS)
        dets = self.matched
        if replaced is not None and replaced.size:
            parts = [self.matched.without_groups(replaced)]
            dets = MatchedDetections.concat(parts + ([fresh] if fresh is not None else []))
        return accumulate(dets, self.npig, self.num_classes)

    def values(self, variant: int | None) -> dict[str, float]:
        confusion = self.confusion
        gt_iou, pq = self.gt_iou, self.pq
        if variant is not None:
            if self.deltas is not None:
                confusion = confusion + self.deltas[variant]
            gt_iou = gt_iou.copy()
            pq = pq.copy() if pq is not None else None
            for i, r in enumerate(self.images):
                acc = r.accounting
                if acc is None:
                    continue
                where = np.flatnonzero(acc.iou_variants == variant)
                if where.size:
                    gt_iou[self.offsets[i] : self.offsets[i + 1]] = acc.gt_iou[where[0]]
                if pq is not None and len(acc.pq_rows):
                    for row in acc.pq_rows[acc.pq_rows[:, 0] == variant]:
                        pq[i, int(row[1])] = row[2:]
        out = {
            "semantic_mIoU": semantic_scores(confusion).miou * 100,
            "instance_mIoU": _mean(gt_iou) * 100,
            "AP": self._ap(variant).ap(),
        }
        if pq is not None:
            out["PQ"] = panoptic_scores(pq.sum(axis=0)).things[0] * 100
        return out


def accounting_results(
    state: EvalState, class_names: Sequence[str], *, with_pq: bool
) -> tuple[OrderedDict, dict[str, Any]]:
    """The "accounting" group and its details.

    Args:
        state: merged statistics (images in id order) with accounting records.
        class_names: K names.
        with_pq: whether PQ was computed (else no PQ deltas).

    Returns:
        The group (floats: the original headline metrics, then per row ``count-<row>`` and
        ``delta_<metric>-<row>``, ``all`` last) and the details (one dict per row).
    """
    headlines = _Headlines(state, len(class_names), with_pq)
    base = headlines.values(None)
    keys = [k for k, _ in HEADLINES if k in base]
    counts = np.zeros(len(ERROR_TYPES), np.int64)
    for r in state.images:
        if r.accounting is not None:
            counts += r.accounting.counts
    group: OrderedDict[str, float] = OrderedDict((k, float(base[k])) for k in keys)
    rows = []
    for variant, name in enumerate(VARIANT_NAMES):
        count = int(counts.sum() if variant == ALL else counts[variant])
        occurs = count > 0
        fixed = headlines.values(variant) if occurs else base
        group[f"count-{name}"] = float(count)
        row: dict[str, Any] = {"error": name, "count": count}
        for k in keys:
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

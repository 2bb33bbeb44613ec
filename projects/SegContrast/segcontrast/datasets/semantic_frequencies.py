"""How many pixels of each semantic label a registered dataset holds.

The counts are those of the training targets: a record's ``sem_seg_file_name`` label PNG when it
has one, else the labels painted from its instance annotations by the evaluator's rule
(:func:`~segcontrast.data.semantic_gt.semantic_gt_from_record`), at the record's original size.
A semantic head with per-label weights from pixel frequencies reads them once per process.
"""

from __future__ import annotations

import logging

import numpy as np

from ..data.semantic_gt import IGNORE_LABEL, semantic_gt_from_record
from .image_reader import read_image

__all__ = ["semantic_pixel_counts"]

logger = logging.getLogger(__name__)

# (dataset names, K) -> counts: decoding a training set's masks takes seconds, and every model
# built in a process (or rebuilt by a test) would repeat it.
_CACHE: dict[tuple[tuple[str, ...], int], np.ndarray] = {}


def _record_labels(record: dict, num_classes: int) -> np.ndarray:
    path = record.get("sem_seg_file_name")
    if path:
        labels = read_image(path, "L").squeeze(2)
        bad = np.unique(labels[(labels > num_classes) & (labels != IGNORE_LABEL)])
        if bad.size:
            raise ValueError(
                f"{path} (image {record.get('image_id')!r}): labels {bad.tolist()} outside "
                f"0..{num_classes} and {IGNORE_LABEL} (background 0, class k as k + 1)"
            )
        return labels
    return semantic_gt_from_record(record, num_classes)


def semantic_pixel_counts(dataset_names: tuple[str, ...] | list[str], num_classes: int
                          ) -> np.ndarray:
    """Pixels of each label over the registered datasets, ignored pixels left out.

    Args:
        dataset_names: registered Detectron2 datasets (e.g. ``cfg.DATASETS.TRAIN``).
        num_classes: K thing classes.

    Returns:
        (K + 1,) int64 counts: background first, then class k at k + 1. Cached per process.

    Raises:
        ValueError: no dataset named, or a label PNG with labels outside the K + 1 and 255.
    """
    from detectron2.data import DatasetCatalog  # the data layer imports detectron2 lazily

    key = (tuple(dataset_names), int(num_classes))
    if not key[0]:
        raise ValueError("no dataset to count semantic pixels of (DATASETS.TRAIN is empty)")
    if key not in _CACHE:
        counts = np.zeros(IGNORE_LABEL + 1, np.int64)
        images = 0
        for name in key[0]:
            for record in DatasetCatalog.get(name):
                labels = _record_labels(record, num_classes)
                counts += np.bincount(labels.ravel(), minlength=IGNORE_LABEL + 1)
                images += 1
        _CACHE[key] = counts[: num_classes + 1].copy()
        logger.info("Semantic pixel counts of %s (%d images), background first: %s",
                    ", ".join(key[0]), images, _CACHE[key].tolist())
    return _CACHE[key].copy()

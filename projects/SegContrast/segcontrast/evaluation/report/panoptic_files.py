"""COCO panoptic files of the evaluated segments: PNGs and JSON for ground truth and predictions.

Layout under the output folder (what panopticapi's ``pq_compute(gt_json, pred_json)`` finds
by default, the folders being the JSON paths without ``.json``)::

    panoptic_gt.json    panoptic_gt/<image>.png
    panoptic_pred.json  panoptic_pred/<image>.png

A PNG stores segment id ``R + 256 G + 256^2 B``; id 0 is VOID (ground truth only). The
segments are exactly the ones the evaluator scores (:mod:`.panoptic`). PNGs are written while
images are processed (each process writes its own images), the JSON files once at the end;
every file atomically.
"""

from __future__ import annotations

import io
import json
import os
import re
from collections.abc import Sequence
from typing import Any

import numpy as np

from ...utils import atomic_write
from ..metrics.panoptic import GtPanoptic, PredPanoptic

__all__ = [
    "GT_NAME",
    "PRED_NAME",
    "category_ids",
    "png_name",
    "write_panoptic_json",
    "write_panoptic_pngs",
]

GT_NAME = "panoptic_gt"
PRED_NAME = "panoptic_pred"


def category_ids(num_classes: int, dataset_to_contiguous: dict | None) -> list[int]:
    """COCO category ids: the dataset's for the K thing classes, then one more for background.

    Args:
        num_classes: K.
        dataset_to_contiguous: the metadata's ``thing_dataset_id_to_contiguous_id`` (or None:
            ids ``k + 1``).

    Returns:
        K + 1 ids, background last.
    """
    ids = [k + 1 for k in range(num_classes)]
    if dataset_to_contiguous:
        inverse = {int(v): int(k) for k, v in dataset_to_contiguous.items()}
        if sorted(inverse) == list(range(num_classes)):
            ids = [inverse[k] for k in range(num_classes)]
    return [*ids, max(ids) + 1]


def png_name(image_id: Any) -> str:
    """A file name for an image id; ids with other characters get a short hash (no clashes)."""
    text = str(image_id)
    safe = re.sub(r"[^A-Za-z0-9_-]", "_", text)[:80]
    if safe != text:
        import hashlib

        safe += "-" + hashlib.sha1(repr(image_id).encode()).hexdigest()[:8]
    return safe + ".png"


def _bbox(mask: np.ndarray) -> list[int]:
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    return [int(cols[0]), int(rows[0]), int(cols[-1] - cols[0] + 1), int(rows[-1] - rows[0] + 1)]


def _write_png(path: str, ids: np.ndarray) -> None:
    from PIL import Image  # only with --panoptic-out: a default run never loads Pillow

    rgb = np.stack([ids % 256, ids // 256 % 256, ids // 65536 % 256], axis=-1).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format="PNG")
    atomic_write(path, lambda f: f.write(buffer.getvalue()))


def write_panoptic_pngs(
    folder: str,
    image_id: Any,
    gt: GtPanoptic,
    pred: PredPanoptic,
    boxes: np.ndarray,
    pred_classes: np.ndarray,
    categories: Sequence[int],
) -> dict[str, Any]:
    """Write one image's two PNGs; return what the JSON files need about it.

    Args:
        folder: the output folder.
        image_id: the image.
        gt: its ground-truth segments.
        pred: its predicted segments.
        boxes: (N, 4) boxes of the predictions' crops.
        pred_classes: (N,) contiguous classes of the predictions.
        categories: K + 1 COCO category ids (:func:`category_ids`).

    Returns:
        ``{"file_name", "gt": segments_info, "pred": segments_info}``.
    """
    name = png_name(image_id)
    gt_ids = gt.labels.astype(np.int64) + 1
    gt_ids[gt.labels == gt.void] = 0
    gt_info = []
    for label in np.flatnonzero(gt.areas > 0):
        if label == gt.void:
            continue
        category = int(gt.categories[label])
        gt_info.append({
            "id": int(label) + 1,
            "category_id": categories[category - 1] if category > 0 else categories[-1],
            "iscrowd": int(gt.crowd[label]),
            "area": int(gt.areas[label]),
            "bbox": _bbox(gt_ids == label + 1),
        })
    pred_ids = np.ones(gt.labels.shape, np.int64)
    pred_info = []
    next_id = 2
    for i in np.flatnonzero(pred.kept):
        x0, y0, x1, y1 = boxes[i]
        pred_ids[y0:y1, x0:x1][pred.crops[i]] = next_id
        pred_info.append({"id": next_id, "category_id": categories[int(pred_classes[i])],
                          "iscrowd": 0, "area": int(pred.areas[i])})
        next_id += 1
    background = int(np.count_nonzero(pred_ids == 1))
    if background:
        pred_info.append({"id": 1, "category_id": categories[-1], "iscrowd": 0,
                          "area": background})
    for entry in pred_info:
        entry["bbox"] = _bbox(pred_ids == entry["id"])
    _write_png(os.path.join(folder, GT_NAME, name), gt_ids)
    _write_png(os.path.join(folder, PRED_NAME, name), pred_ids)
    return {"file_name": name, "gt": gt_info, "pred": pred_info}


def write_panoptic_json(
    folder: str,
    images: Sequence[dict[str, Any]],
    class_names: Sequence[str],
    categories: Sequence[int],
) -> None:
    """Write ``panoptic_gt.json`` and ``panoptic_pred.json``.

    Args:
        folder: the output folder.
        images: per image ``{"image_id", "file_name" (the image), "height", "width",
            "panoptic": write_panoptic_pngs' result}``, in image order.
        class_names: K names.
        categories: K + 1 COCO category ids.
    """
    cats = [{"id": int(categories[k]), "name": name, "isthing": 1, "supercategory": "thing"}
            for k, name in enumerate(class_names)]
    cats.append({"id": int(categories[-1]), "name": "background", "isthing": 0,
                 "supercategory": "background"})
    image_entries, gt_annotations, pred_annotations = [], [], []
    for im in images:
        image_id = im["image_id"]
        image_id = int(image_id) if isinstance(image_id, (int, np.integer)) else image_id
        image_entries.append({"id": image_id, "file_name": os.path.basename(im["file_name"]),
                              "height": int(im["height"]), "width": int(im["width"])})
        png = im["panoptic"]["file_name"]
        gt_annotations.append({"image_id": image_id, "file_name": png,
                               "segments_info": im["panoptic"]["gt"]})
        pred_annotations.append({"image_id": image_id, "file_name": png,
                                 "segments_info": im["panoptic"]["pred"]})
    for name, entries in ((GT_NAME, gt_annotations), (PRED_NAME, pred_annotations)):
        text = json.dumps({"images": image_entries, "annotations": entries,
                           "categories": cats})
        atomic_write(os.path.join(folder, name + ".json"), lambda f, t=text: f.write(t), mode="w")

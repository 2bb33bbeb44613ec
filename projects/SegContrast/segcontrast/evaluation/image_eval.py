"""Everything computed for one image.

From its annotations and the model's output to an :class:`~.records.ImageRecord` plus its
confusion matrix.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pycocotools.mask as mask_util
import torch

from .boundary import boundary_iou_pairs
from .coco_ap import ApImage
from .instance import iou_matrix, match_image
from .masks import (
    MaskCrops,
    annotation_to_rle,
    crops_from_dense,
    crops_from_rles,
    pairwise_intersections,
)
from .records import ImageRecord
from .semantic import confusion_matrix, paint_semantic_from_crops, paint_semantic_gt, thing_miou

__all__ = ["GroundTruth", "Predictions", "describe_image", "evaluate_image"]


def describe_image(record: dict) -> str:
    """``"image 3 (cells/a.png)"``: how messages name an image (its id and its file)."""
    name = record.get("file_name")
    return f"image {record.get('image_id')!r}" + (f" ({name})" if name else "")


@dataclass
class GroundTruth:
    """One image's annotations, decoded to crops.

    Attributes:
        masks: G masks (crowd regions included), annotation order.
        classes: (G,) contiguous class ids.
        crowd: (G,) bool.
        areas: (G,) float64 annotation ``area`` (COCO's area ranges use it).
        ids: (G,) annotation ids.
    """

    masks: MaskCrops
    classes: np.ndarray
    crowd: np.ndarray
    areas: np.ndarray
    ids: np.ndarray

    @classmethod
    def from_dataset_dict(cls, record: dict, num_classes: int) -> GroundTruth:
        """Decode a Detectron2 dataset dict's annotations.

        Args:
            record: ``{"height", "width", "image_id", "annotations": [...]}`` with
                ``category_id`` contiguous, ``segmentation`` polygons or RLE, ``iscrowd``,
                ``area`` and ``id``.
            num_classes: K, to check the class ids.

        Returns:
            The ground truth.

        Raises:
            ValueError: an annotation without a segmentation or with a class outside [0, K).
        """
        height, width = int(record["height"]), int(record["width"])
        annotations = record.get("annotations", [])
        rles: list = [None] * len(annotations)
        single_polygons, single_index = [], []
        classes, crowd, areas, ids = [], [], [], []
        for index, ann in enumerate(annotations):
            category = int(ann["category_id"])
            if "segmentation" not in ann or not 0 <= category < num_classes:
                where = (f"{describe_image(record)}, annotation "
                         f"{ann.get('id', index)!r}")
                if "segmentation" not in ann:
                    raise ValueError(f"{where}: no 'segmentation'; the evaluator scores masks")
                raise ValueError(
                    f"{where}: category_id {category} outside [0, {num_classes}) (expected "
                    "contiguous ids, as Detectron2's dataset dicts have)"
                )
            segmentation = ann["segmentation"]
            if (
                isinstance(segmentation, list)
                and len(segmentation) == 1
                and len(segmentation[0]) >= 6
            ):
                # One polygon: its RLE is what merge() would return; rasterise all at once.
                single_polygons.append(segmentation[0])
                single_index.append(index)
            else:
                rles[index] = annotation_to_rle(segmentation, height, width)
            classes.append(category)
            crowd.append(bool(ann.get("iscrowd", 0)))
            areas.append(ann.get("area"))
            ids.append(ann.get("id", index + 1))
        if single_polygons:
            rasterised = mask_util.frPyObjects(single_polygons, height, width)
            for index, rle in zip(single_index, rasterised, strict=True):
                rles[index] = rle
        masks = crops_from_rles(rles, height, width)
        area_values = np.array(
            [
                float(a) if a is not None else float(m)
                for a, m in zip(areas, masks.areas, strict=True)
            ],
            np.float64,
        )
        return cls(
            masks=masks,
            classes=np.array(classes, np.int64),
            crowd=np.array(crowd, bool),
            areas=area_values,
            ids=np.array([i if isinstance(i, (int, np.integer)) else -1 for i in ids], np.int64),
        )


@dataclass
class Predictions:
    """One image's predicted instances.

    Attributes:
        masks: N binarised masks.
        classes: (N,) contiguous class ids.
        scores: (N,) float64 (the float32 scores, exactly).
        ap_areas: (N,) float64 area of each detection for COCO's area ranges: its box
            ``w * h`` when boxes are given (what pycocotools uses for Detectron2's results),
            else its mask area.
        semantic: optional (H, W) uint8 labels from a ``sem_seg`` output.
    """

    masks: MaskCrops
    classes: np.ndarray
    scores: np.ndarray
    ap_areas: np.ndarray
    semantic: np.ndarray | None = None

    @classmethod
    def from_output(
        cls, output: dict, height: int, width: int, mask_threshold: float, num_classes: int
    ) -> Predictions:
        """Read a model output dict (``"instances"`` and/or ``"sem_seg"``).

        Args:
            output: Detectron2 model output for one image.
            height: image height.
            width: image width.
            mask_threshold: float masks are foreground where ``>= mask_threshold``.
            num_classes: K.

        Returns:
            The predictions.

        Raises:
            ValueError: masks or ``sem_seg`` of the wrong size, or classes outside [0, K).
        """
        semantic = None
        if "sem_seg" in output:
            logits = output["sem_seg"]
            if logits.shape[0] != num_classes + 1 or tuple(logits.shape[1:]) != (height, width):
                raise ValueError(
                    f"sem_seg of shape {tuple(logits.shape)}: expected ({num_classes + 1}, "
                    f"{height}, {width}) (background first, then the thing classes)"
                )
            semantic = logits.argmax(dim=0).to(torch.uint8).cpu().numpy()
        instances = output.get("instances")
        if instances is None or len(instances) == 0 or not instances.has("pred_masks"):
            empty = np.zeros(0)
            return cls(
                MaskCrops.empty(height, width), empty.astype(np.int64), empty, empty, semantic
            )
        instances = instances.to("cpu")
        masks = crops_from_dense(instances.pred_masks, mask_threshold)
        if (masks.height, masks.width) != (height, width):
            raise ValueError(
                f"pred_masks are {masks.height}x{masks.width} but the image is "
                f"{height}x{width}: the evaluator needs masks at the original image size"
            )
        classes = instances.pred_classes.numpy().astype(np.int64)
        if classes.size and (classes.min() < 0 or classes.max() >= num_classes):
            raise ValueError(f"pred_classes outside [0, {num_classes})")
        scores = np.asarray(instances.scores.float().numpy(), np.float64)
        if instances.has("pred_boxes"):
            boxes = instances.pred_boxes.tensor.float().numpy()
            # float32 w, h as Detectron2's BoxMode.convert computes them, product in float64.
            w = (boxes[:, 2] - boxes[:, 0]).astype(np.float64)
            h = (boxes[:, 3] - boxes[:, 1]).astype(np.float64)
            ap_areas = w * h
        else:
            ap_areas = masks.areas.astype(np.float64)
        return cls(masks, classes, scores, ap_areas, semantic)


def _mean(values: np.ndarray) -> float:
    return float(np.mean(values)) if values.size else math.nan


def evaluate_image(
    image: dict,
    gt: GroundTruth,
    pred: Predictions,
    *,
    num_classes: int,
    iou_threshold: float,
    score_threshold: float,
    boundary_dilation: int | None,
) -> tuple[ImageRecord, np.ndarray, np.ndarray]:
    """Score one image.

    Args:
        image: ``{"image_id", "file_name", "height", "width"}``.
        gt: its ground truth.
        pred: its predictions.
        num_classes: K.
        iou_threshold: smallest IoU of a match.
        score_threshold: predictions below it are left out of the semantic painting and the
            instance metrics (COCO AP always uses every prediction).
        boundary_dilation: boundary band width in pixels, or None to skip boundary IoU.

    Returns:
        The record, the image's (K + 1, K + 1) confusion matrix, and the indices of the
        predictions kept by ``score_threshold``.
    """
    keep = np.flatnonzero(pred.scores >= score_threshold)
    kept = pred.masks.subset(keep)
    gt_labels = paint_semantic_gt(gt.masks, gt.classes, gt.crowd)
    if pred.semantic is not None:
        pred_labels = pred.semantic
    else:
        pred_labels = paint_semantic_from_crops(kept, pred.classes[keep], pred.scores[keep])
    conf = confusion_matrix(gt_labels, pred_labels, num_classes + 1)

    inter = pairwise_intersections(pred.masks, gt.masks)
    iou = iou_matrix(inter, pred.masks.areas, gt.masks.areas, gt.crowd)
    ap = ApImage.build(
        pred.classes, pred.scores, pred.ap_areas, gt.classes, gt.crowd, gt.areas, gt.ids, iou
    )

    regular = np.flatnonzero(~gt.crowd)
    crowd = np.flatnonzero(gt.crowd)
    gt_regular = gt.masks.subset(regular)
    match = match_image(
        kept,
        pred.classes[keep],
        gt_regular,
        gt.classes[regular],
        inter[np.ix_(keep, regular)],
        iou[np.ix_(keep, regular)],
        iou[np.ix_(keep, crowd)],
        gt.classes[crowd],
        iou_threshold,
    )
    boundary = np.full(len(regular), math.nan)
    if boundary_dilation is not None and len(match.pred_index):
        pairs = np.stack([match.pred_index, match.gt_index], axis=1)
        boundary[match.gt_index] = boundary_iou_pairs(kept, gt_regular, pairs, boundary_dilation)
    counts = {
        "n_gt": len(regular),
        "n_crowd": len(crowd),
        "n_pred": len(keep),
        "matched": len(match.pred_index),
        "missed": match.missed,
        "false_positives": match.false_positives,
        "ignored": int(np.count_nonzero(match.pred_ignored)),
        "merged": match.merged,
        "split": match.split,
        "duplicates": match.duplicates,
        "class_confusions": match.class_confusions,
    }
    record = ImageRecord(
        image_id=image["image_id"],
        file_name=str(image.get("file_name", "")),
        height=gt.masks.height,
        width=gt.masks.width,
        semantic_miou=thing_miou(conf),
        instance_miou=_mean(match.gt_iou),
        counts=counts,
        gt_classes=gt.classes[regular].astype(np.int16),
        gt_iou=match.gt_iou,
        gt_boundary_iou=boundary,
        pred_classes=pred.classes[keep].astype(np.int16),
        pred_matched=match.pred_matched,
        pred_ignored=match.pred_ignored,
        ap=ap,
    )
    return record, conf, keep

"""Semantic side: label maps painted from instances, the confusion matrix and its metrics.

Label convention: 0 background, thing class k (contiguous) -> k + 1, 255 ignore.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from ...data.masks import MaskCrops, crops_from_dense
from ...data.semantic_gt import IGNORE_LABEL
from ...utils.native import kernels

__all__ = [
    "IGNORE_LABEL",
    "check_num_classes",
    "SemanticScores",
    "confusion_matrix",
    "label_counts",
    "paint_semantic_prediction",
    "paint_semantic_from_crops",
    "semantic_scores",
    "thing_miou",
    "thing_miou_of_counts",
]

def check_num_classes(num_classes: int) -> None:
    """Raise ValueError unless K fits the uint8 label maps (1 <= K <= 253)."""
    if not 0 < num_classes < IGNORE_LABEL - 1:
        raise ValueError(
            f"{num_classes} thing classes: the semantic label maps hold 1..K plus background 0 "
            f"and ignore {IGNORE_LABEL}, so K must be in [1, {IGNORE_LABEL - 2}]"
        )


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
    if len(pred):
        kernels.paint(labels, pred.boxes, pred.crops, pred.areas, _label_values(classes),
                      np.argsort(scores, kind="stable"))
    return labels


def _label_values(classes: np.ndarray) -> np.ndarray:
    """(N,) uint8 labels of classes (class k is k + 1)."""
    return (np.asarray(classes, np.int64) + 1).astype(np.uint8)


def paint_semantic_prediction(
    instances: Any, image_shape: tuple[int, int], mask_threshold: float = 0.5
) -> np.ndarray:
    """Semantic labels painted from a model's predicted instances.

    Args:
        instances: Detectron2 ``Instances`` with ``pred_masks`` (N, H, W) bool or float
            probabilities at the image size, ``scores`` (N,) and ``pred_classes`` (N,).
        image_shape: (H, W) of the image.
        mask_threshold: float masks are foreground where ``>= mask_threshold``.

    Returns:
        (H, W) uint8 labels: 0 background, class k -> k + 1; ascending score order, highest
        score wins.
    """
    height, width = int(image_shape[0]), int(image_shape[1])
    if len(instances) == 0 or not instances.has("pred_masks"):
        return np.zeros((height, width), np.uint8)
    crops = crops_from_dense(instances.pred_masks, mask_threshold)
    if (crops.height, crops.width) != (height, width):
        raise ValueError(
            f"pred_masks are {crops.height}x{crops.width} but the image is {height}x{width}"
        )
    classes = instances.pred_classes.detach().cpu().numpy().astype(np.int64)
    scores = instances.scores.detach().cpu().numpy()
    return paint_semantic_from_crops(crops, classes, scores)


def confusion_matrix(gt: np.ndarray, pred: np.ndarray, num_labels: int) -> np.ndarray:
    """Confusion of two label maps; ignore-label pixels of ``gt`` are left out.

    Args:
        gt: (H, W) uint8 ground-truth labels in [0, num_labels) or 255.
        pred: (H, W) uint8 predicted labels in [0, num_labels).
        num_labels: K + 1 (background included).

    Returns:
        (num_labels, num_labels) int64, rows ground truth, columns prediction.
    """
    return kernels.confusion_matrix(np.ascontiguousarray(gt, np.uint8),
                                    np.ascontiguousarray(pred, np.uint8), num_labels)


def label_counts(conf: np.ndarray) -> np.ndarray:
    """Per label the three numbers its IoU needs: true positive, GT and predicted pixels.

    Args:
        conf: (K + 1, K + 1) confusion matrix, rows ground truth.

    Returns:
        (3, K + 1) int64: rows TP, GT pixels, predicted pixels. Summed over images they give
        the dataset's IoUs, so resampling images (a bootstrap) needs only these.
    """
    conf = np.asarray(conf)
    out = np.empty((3, len(conf)), np.int64)
    out[0] = conf.diagonal()
    out[1] = conf.sum(axis=1)
    out[2] = conf.sum(axis=0)
    return out


def thing_miou(conf: np.ndarray) -> float:
    """Mean IoU over the thing classes present (GT or prediction) in ``conf``; NaN if none."""
    return thing_miou_of_counts(label_counts(conf))


def thing_miou_of_counts(counts: np.ndarray) -> float:
    """:func:`thing_miou` of the image whose :func:`label_counts` are ``counts``.

    Args:
        counts: (3, K + 1) int64 TP, GT and predicted pixels per label.

    Returns:
        Mean IoU over the thing classes present (GT or prediction); NaN if none.
    """
    tp = counts[0, 1:].astype(np.float64)
    union = counts[2, 1:] + counts[1, 1:] - tp
    valid = union > 0
    if not valid.any():
        return math.nan
    return float(np.mean(tp[valid] / union[valid]))


@dataclass
class SemanticScores:
    """Dataset-level semantic metrics (fractions, not percent).

    Attributes:
        iou: (K + 1,) IoU per label, background first; NaN for an absent label.
        dice: (K + 1,) Dice per label; NaN for an absent label.
        accuracy: (K + 1,) TP / GT pixels; NaN without GT pixels.
        miou: mean IoU over the thing classes that are not absent.
        miou_with_background: the same with background.
        mdice: mean Dice over the thing classes that are not absent.
        fwiou: IoU weighted by each label's share of GT pixels (background included).
        pixel_accuracy: correctly labelled pixels / all non-ignored pixels.
        mean_accuracy: mean of ``accuracy`` over labels with GT pixels (background included).
        absent: thing class ids with neither GT nor predicted pixels (NaN, left out).
        only_predicted: thing class ids with predicted but no GT pixels (IoU 0, counted).
    """

    iou: np.ndarray
    dice: np.ndarray
    accuracy: np.ndarray
    miou: float
    miou_with_background: float
    mdice: float
    fwiou: float
    pixel_accuracy: float
    mean_accuracy: float
    absent: list[int]
    only_predicted: list[int]


def _nanmean(values: np.ndarray) -> float:
    values = values[~np.isnan(values)]
    return float(values.mean()) if values.size else math.nan


def semantic_scores(conf: np.ndarray) -> SemanticScores:
    """Metrics of a (K + 1, K + 1) confusion matrix.

    ``IoU_c = TP_c / (GT_c + Pred_c - TP_c)``. A label with no GT and no predicted pixels is
    NaN and left out of every mean; a label that is only predicted has IoU 0 and counts.

    Args:
        conf: rows ground truth, columns prediction, label 0 background.

    Returns:
        The scores.
    """
    conf = conf.astype(np.float64)
    tp = np.diag(conf)
    gt = conf.sum(axis=1)
    pred = conf.sum(axis=0)
    union = gt + pred - tp
    present = union > 0
    iou = np.full(len(tp), math.nan)
    iou[present] = tp[present] / union[present]
    dice = np.full(len(tp), math.nan)
    dice[present] = 2 * tp[present] / (gt[present] + pred[present])
    accuracy = np.full(len(tp), math.nan)
    has_gt = gt > 0
    accuracy[has_gt] = tp[has_gt] / gt[has_gt]
    total = gt.sum()
    fwiou = float(np.sum((gt / total)[present] * iou[present])) if total > 0 else math.nan
    things = np.arange(1, len(tp))
    return SemanticScores(
        iou=iou,
        dice=dice,
        accuracy=accuracy,
        miou=_nanmean(iou[1:]),
        miou_with_background=_nanmean(iou),
        mdice=_nanmean(dice[1:]),
        fwiou=fwiou,
        pixel_accuracy=float(tp.sum() / total) if total > 0 else math.nan,
        mean_accuracy=_nanmean(accuracy),
        absent=[int(c - 1) for c in things if not present[c]],
        only_predicted=[int(c - 1) for c in things if gt[c] == 0 and pred[c] > 0],
    )

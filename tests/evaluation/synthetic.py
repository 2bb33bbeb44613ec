"""A deterministic synthetic evaluation workload (benchmarks and tests).

Ground truth: random polygons (COCO-style, rasterised by pycocotools like real annotations),
small to large, sometimes overlapping or touching, a few crowd regions as RLE. Predictions:
Mask R-CNN-like outputs, ``pred_masks`` (N, H, W) bool tensors at image size, mostly noisy
copies of the ground truth plus duplicates, splits, merges, wrong classes and false positives.
Each image is generated from ``(seed, index)`` alone, so predictions can be made one image at
a time and memory stays flat however many images there are.
"""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np
import pycocotools.mask as mask_util
import torch
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.structures import Boxes, BoxMode, Instances

__all__ = ["register_synthetic_dataset", "synthetic_dataset", "synthetic_predictions"]


def _polygon(rng: np.random.Generator, cx: float, cy: float, radius: float) -> np.ndarray:
    n = int(rng.integers(8, 16))
    angles = np.sort(rng.uniform(0, 2 * np.pi, n))
    aspect = rng.uniform(0.5, 1.5)
    r = radius * rng.uniform(0.75, 1.0, n)
    return np.stack([cx + r * np.cos(angles) * aspect, cy + r * np.sin(angles) / aspect], 1)


def synthetic_dataset(
    num_images: int,
    *,
    height: int = 480,
    width: int = 640,
    num_classes: int = 10,
    instances_per_image: int = 15,
    crowd_fraction: float = 0.02,
    seed: int = 0,
) -> list[dict]:
    """Detectron2 dataset dicts with polygon (and crowd RLE) annotations.

    Args:
        num_images: images.
        height: image height.
        width: image width.
        num_classes: K.
        instances_per_image: mean number of annotations per image (Poisson).
        crowd_fraction: share of annotations that are crowd regions.
        seed: base seed.

    Returns:
        The dicts; ``image_id`` is ``index + 1``, ``file_name`` does not exist on disk.
    """
    dicts = []
    next_id = 1
    for index in range(num_images):
        rng = np.random.default_rng([seed, index, 1])
        annotations = []
        count = int(rng.poisson(instances_per_image))
        for _ in range(count):
            radius = float(np.exp(rng.uniform(np.log(3.0), np.log(min(height, width) / 6))))
            category = int(rng.integers(0, num_classes))
            cx = rng.uniform(0, width)
            cy = rng.uniform(0, height)
            if annotations and rng.random() < 0.15:
                # a neighbour that touches or slightly overlaps the previous object
                x, y, w, h = annotations[-1]["bbox"]
                cx = float(x + w + radius * 0.8)
                cy = float(y + h / 2)
                category = annotations[-1]["category_id"]
            poly = _polygon(rng, cx, cy, radius)
            poly[:, 0] = poly[:, 0].clip(0, width)
            poly[:, 1] = poly[:, 1].clip(0, height)
            crowd = bool(rng.random() < crowd_fraction)
            segmentation: Any = [poly.ravel().round(2).tolist()]
            rle = mask_util.merge(mask_util.frPyObjects(segmentation, height, width))
            area = float(mask_util.area(rle))
            if area == 0:
                continue
            if crowd:
                segmentation = {"size": [height, width], "counts": rle["counts"].decode()}
            x, y, w, h = mask_util.toBbox(rle).tolist()
            annotations.append(
                {
                    "bbox": [x, y, w, h],
                    "bbox_mode": BoxMode.XYWH_ABS,
                    "category_id": category,
                    "iscrowd": int(crowd),
                    "segmentation": segmentation,
                    "area": area,
                    "id": next_id,
                }
            )
            next_id += 1
        dicts.append(
            {
                "file_name": f"/nonexistent/synthetic/{index:06d}.png",
                "height": height,
                "width": width,
                "image_id": index + 1,
                "annotations": annotations,
            }
        )
    return dicts


def synthetic_predictions(record: dict, *, num_classes: int = 10, seed: int = 0) -> Instances:
    """Mask R-CNN-like predictions for one synthetic image.

    Args:
        record: one dict of :func:`synthetic_dataset`.
        num_classes: K.
        seed: base seed.

    Returns:
        ``Instances`` with ``pred_masks`` (N, H, W) bool, ``scores`` (N,) float32,
        ``pred_classes`` (N,) int64 and ``pred_boxes`` (XYXY, the polygons' bounds) on the
        CPU; N is ~1.15x the number of annotations.
    """
    height, width = record["height"], record["width"]
    rng = np.random.default_rng([seed, int(record["image_id"]), 2])
    shapes: list[list[np.ndarray]] = []  # polygons of each prediction
    classes, scores = [], []
    regular = [a for a in record["annotations"] if isinstance(a["segmentation"], list)]
    polys = [np.array(a["segmentation"][0]).reshape(-1, 2) for a in regular]
    cats = [a["category_id"] for a in regular]
    for poly, cat in zip(polys, cats, strict=True):
        if rng.random() < 0.12:
            continue  # missed
        center = poly.mean(0)
        size = float(np.linalg.norm(poly - center, axis=1).mean()) + 1.0
        noisy = (poly - center) * rng.normal(1.0, 0.05) + center + rng.normal(0, 0.05 * size, 2)
        noisy = noisy + rng.normal(0, 0.03 * size, noisy.shape)
        roll = rng.random()
        if roll < 0.05 and len(poly) >= 8:  # split in two halves
            half = len(noisy) // 2
            for part in (noisy[: half + 1], np.vstack([noisy[half:], noisy[:1]])):
                shapes.append([np.vstack([part, center[None]])])
                classes.append(cat)
                scores.append(rng.uniform(0.3, 0.9))
            continue
        shapes.append([noisy])
        classes.append(cat if rng.random() < 0.94 else int(rng.integers(0, num_classes)))
        scores.append(rng.uniform(0.4, 1.0))
        if roll > 0.93:  # duplicate
            shapes.append([noisy + rng.normal(0, 1.0, 2)])
            classes.append(classes[-1])
            scores.append(rng.uniform(0.05, 0.5))
    if len(polys) >= 2 and rng.random() < 0.5:  # a merge of two neighbours
        i = int(rng.integers(0, len(polys) - 1))
        shapes.append([polys[i], polys[i + 1]])
        classes.append(cats[i])
        scores.append(rng.uniform(0.3, 0.8))
    for _ in range(int(rng.poisson(2.5))):  # false positives
        radius = float(np.exp(rng.uniform(np.log(3.0), np.log(min(height, width) / 8))))
        shapes.append([_polygon(rng, rng.uniform(0, width), rng.uniform(0, height), radius)])
        classes.append(int(rng.integers(0, num_classes)))
        scores.append(rng.uniform(0.05, 0.6))
    n = len(shapes)
    stack = np.zeros((n, height, width), np.uint8)
    boxes = np.zeros((n, 4), np.float32)
    for i, polygons in enumerate(shapes):
        points = [np.round(p).astype(np.int32) for p in polygons]
        cv2.fillPoly(stack[i], points, 1)
        allp = np.concatenate(points)
        boxes[i] = (allp[:, 0].min(), allp[:, 1].min(), allp[:, 0].max() + 1, allp[:, 1].max() + 1)
    boxes[:, 0::2] = boxes[:, 0::2].clip(0, width)
    boxes[:, 1::2] = boxes[:, 1::2].clip(0, height)
    instances = Instances((height, width))
    instances.pred_masks = torch.from_numpy(stack.view(bool))
    instances.scores = torch.tensor(scores, dtype=torch.float32)
    instances.pred_classes = torch.tensor(classes, dtype=torch.int64)
    instances.pred_boxes = Boxes(torch.from_numpy(boxes))
    return instances


def register_synthetic_dataset(name: str, dicts: list[dict], num_classes: int) -> None:
    """Register ``dicts`` under ``name`` (replacing an earlier registration of that name)."""
    if name in DatasetCatalog.list():
        DatasetCatalog.remove(name)
        MetadataCatalog.remove(name)
    DatasetCatalog.register(name, lambda: dicts)
    MetadataCatalog.get(name).set(
        thing_classes=[f"class{k}" for k in range(num_classes)],
        thing_dataset_id_to_contiguous_id={k + 1: k for k in range(num_classes)},
        evaluator_type="coco",
    )

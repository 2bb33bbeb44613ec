"""A dense results file, as Detectron2's COCOEvaluator writes one for a Mask R-CNN on COCO.

Detectron2 keeps up to 100 detections per image at scores down to 0.05
(``TEST.DETECTIONS_PER_IMAGE`` and ``MODEL.ROI_HEADS.SCORE_THRESH_TEST``), so a results file
holds many low-score, overlapping, partly wrong predictions per image besides the good ones.
This workload has the same shape on the synthetic ground truth of
:mod:`tests.evaluation.synthetic`: per object a good prediction (usually), a few shifted and
rescaled near-duplicates, sometimes a wrong-class copy or a partial mask, merges of neighbours,
then low-score false positives until the image's budget (60 to 130, capped at 100) is used.

Masks are made from polygons straight to compressed RLE (pycocotools' ``frPyObjects``), never
rasterised at image size: 1,000 images take about ten seconds. Each image depends on ``(seed,
image_id)`` alone.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pycocotools.mask as mask_util

from .results_files import coco_gt_json
from .synthetic import synthetic_dataset

__all__ = ["MAX_DETECTIONS", "MIN_SCORE", "dense_results_of_image", "write_dense_files"]

MAX_DETECTIONS = 100  # Detectron2's TEST.DETECTIONS_PER_IMAGE
MIN_SCORE = 0.05  # Detectron2's MODEL.ROI_HEADS.SCORE_THRESH_TEST


def _jitter(rng: np.random.Generator, poly: np.ndarray, scale: float, shift: float,
            noise: float) -> np.ndarray:
    """``poly`` (P, 2) rescaled about its centre, moved and with noisy vertices."""
    center = poly.mean(0)
    size = float(np.linalg.norm(poly - center, axis=1).mean()) + 1.0
    out = (poly - center) * rng.normal(1.0, scale) + center + rng.normal(0, shift * size, 2)
    return out + rng.normal(0, noise * size, out.shape)


def _random_polygon(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    radius = float(np.exp(rng.uniform(np.log(3.0), np.log(min(height, width) / 6))))
    cx, cy = rng.uniform(0, width), rng.uniform(0, height)
    n = int(rng.integers(8, 16))
    angles = np.sort(rng.uniform(0, 2 * np.pi, n))
    r = radius * rng.uniform(0.7, 1.0, n)
    aspect = rng.uniform(0.5, 1.5)
    return np.stack([cx + r * np.cos(angles) * aspect, cy + r * np.sin(angles) / aspect], 1)


def _low_score(rng: np.random.Generator, high: float) -> float:
    """A score in [MIN_SCORE, high), most of them near MIN_SCORE (as a detector's tail is)."""
    return float(min(MIN_SCORE + rng.exponential(0.08), high - 1e-3))


def _candidates(record: dict, num_classes: int, rng: np.random.Generator
                ) -> list[tuple[list[np.ndarray], int, float]]:
    """(polygons, contiguous class, score) of every prediction before the per-image cap."""
    height, width = record["height"], record["width"]
    regular = [a for a in record["annotations"] if isinstance(a["segmentation"], list)]
    polys = [np.array(a["segmentation"][0]).reshape(-1, 2) for a in regular]
    cats = [int(a["category_id"]) for a in regular]
    out: list[tuple[list[np.ndarray], int, float]] = []

    def other_class(cat: int) -> int:
        return int((cat + rng.integers(1, num_classes)) % num_classes)

    for poly, cat in zip(polys, cats, strict=True):
        if rng.random() < 0.85:  # the good prediction (sometimes of the wrong class)
            cls = cat if rng.random() < 0.94 else other_class(cat)
            out.append(([_jitter(rng, poly, 0.05, 0.04, 0.03)], cls, rng.uniform(0.5, 1.0)))
        for _ in range(int(rng.poisson(2.0))):  # near-duplicates, shifted or rescaled
            out.append(([_jitter(rng, poly, 0.2, 0.25, 0.05)], cat, _low_score(rng, 0.6)))
        if rng.random() < 0.5:  # the same object called something else
            out.append(([_jitter(rng, poly, 0.05, 0.05, 0.03)], other_class(cat),
                        _low_score(rng, 0.45)))
        if rng.random() < 0.2 and len(poly) >= 8:  # a part of it
            half = len(poly) // 2
            part = np.vstack([poly[: half + 1], poly.mean(0, keepdims=True)])
            out.append(([_jitter(rng, part, 0.03, 0.02, 0.02)], cat, _low_score(rng, 0.5)))
    for i in range(len(polys) - 1):  # two neighbours as one
        if rng.random() < 0.1:
            out.append(([polys[i], polys[i + 1]], cats[i], _low_score(rng, 0.7)))
    budget = int(rng.integers(60, 131))
    for _ in range(max(int(rng.poisson(3.0)), budget - len(out))):  # false positives
        out.append(([_random_polygon(rng, height, width)], int(rng.integers(0, num_classes)),
                    _low_score(rng, 0.4)))
    return out


def dense_results_of_image(record: dict, category_ids: Sequence[int], *,
                           seed: int = 0) -> list[dict]:
    """The dense predictions of one synthetic image as COCO results, best score first.

    Args:
        record: one dict of :func:`~tests.evaluation.synthetic.synthetic_dataset`.
        category_ids: contiguous class k -> the ground truth's category id.
        seed: base seed.

    Returns:
        At most :data:`MAX_DETECTIONS` results, scores >= :data:`MIN_SCORE`, each with a
        compressed RLE (str counts), an XYWH box and a float score, as Detectron2's
        ``instances_to_coco_json`` writes them.
    """
    height, width = record["height"], record["width"]
    rng = np.random.default_rng([seed, int(record["image_id"]), 3])
    candidates = _candidates(record, len(category_ids), rng)
    order = sorted(range(len(candidates)), key=lambda i: -candidates[i][2])
    results = []
    for i in order:
        polygons, cls, score = candidates[i]
        clipped = []
        for poly in polygons:
            p = poly.copy()
            p[:, 0] = p[:, 0].clip(0, width)
            p[:, 1] = p[:, 1].clip(0, height)
            clipped.append(p.ravel().round(2).tolist())
        rle = mask_util.merge(mask_util.frPyObjects(clipped, height, width))
        if mask_util.area(rle) == 0:
            continue
        box = [round(float(v), 2) for v in mask_util.toBbox(rle)]
        results.append({
            "image_id": record["image_id"],
            "category_id": int(category_ids[cls]),
            "bbox": box,
            # a float32 score, as Detectron2's tensors hold it
            "score": float(np.float32(score)),
            "segmentation": {"size": [height, width], "counts": rle["counts"].decode()},
        })
        if len(results) == MAX_DETECTIONS:
            break
    return results


def write_dense_files(folder: Path, num_images: int, *, num_classes: int = 10,
                      seed: int = 0) -> tuple[Path, Path, list[dict]]:
    """Write ``gt.json`` (the synthetic ground truth) and ``results.json`` (dense results).

    Returns:
        ``(gt_path, results_path, dicts)``; the dicts have contiguous classes.
    """
    category_ids = list(range(1, num_classes + 1))
    dicts = synthetic_dataset(num_images, num_classes=num_classes, seed=seed)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    gt_path, results_path = folder / "gt.json", folder / "results.json"
    gt_path.write_text(json.dumps(coco_gt_json(dicts, category_ids)))
    results = [r for d in dicts for r in dense_results_of_image(d, category_ids, seed=seed)]
    results_path.write_text(json.dumps(results))
    return gt_path, results_path, dicts

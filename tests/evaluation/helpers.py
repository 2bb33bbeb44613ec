"""Helpers for the evaluator tests: hand-made datasets, predictions, and COCOeval references."""

from __future__ import annotations

import contextlib
import io
import itertools
import math

import numpy as np
import pycocotools.mask as mask_util
import torch
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.evaluation.coco_evaluation import instances_to_coco_json
from detectron2.structures import Boxes, BoxMode, Instances
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval
from segcontrast.engine.evaluator import SegContrastEvaluator

_names = itertools.count()


def rle(mask: np.ndarray) -> dict:
    encoded = mask_util.encode(np.asfortranarray(mask.astype(np.uint8)))
    encoded["counts"] = encoded["counts"].decode("ascii")
    return encoded


def box_mask(h: int, w: int, y0: int, x0: int, y1: int, x1: int) -> np.ndarray:
    mask = np.zeros((h, w), bool)
    mask[y0:y1, x0:x1] = True
    return mask


def image_dict(
    image_id, masks, classes, crowd=None, *, height=None, width=None, areas=None, first_id=1
) -> dict:
    """A Detectron2 dataset dict whose annotations are RLEs of ``masks``."""
    height = height if height is not None else masks[0].shape[0]
    width = width if width is not None else masks[0].shape[1]
    crowd = crowd if crowd is not None else [0] * len(masks)
    annotations = []
    for i, (m, c, cr) in enumerate(zip(masks, classes, crowd, strict=True)):
        r = rle(m)
        annotations.append(
            {
                "bbox": mask_util.toBbox(r).tolist(),
                "bbox_mode": BoxMode.XYWH_ABS,
                "category_id": int(c),
                "iscrowd": int(cr),
                "segmentation": r,
                "area": float(m.sum()) if areas is None else float(areas[i]),
                "id": first_id + i,
            }
        )
    return {
        "file_name": f"/nonexistent/{image_id}.png",
        "height": height,
        "width": width,
        "image_id": image_id,
        "annotations": annotations,
    }


def register(dicts: list[dict], class_names: list[str]) -> str:
    name = f"segcontrast_test_{next(_names)}"
    DatasetCatalog.register(name, lambda: dicts)
    MetadataCatalog.get(name).set(
        thing_classes=list(class_names),
        thing_dataset_id_to_contiguous_id={k + 1: k for k in range(len(class_names))},
    )
    return name


def instances(masks, classes, scores, *, boxes: bool = True, height=None, width=None):
    masks = [np.asarray(m, bool) for m in masks]
    if masks:
        height, width = masks[0].shape
    inst = Instances((height, width))
    stack = np.stack(masks) if masks else np.zeros((0, height, width), bool)
    inst.pred_masks = torch.from_numpy(stack)
    inst.scores = torch.tensor(np.asarray(scores, np.float32).reshape(-1))
    inst.pred_classes = torch.tensor(np.asarray(classes, np.int64).reshape(-1))
    if boxes:
        b = np.zeros((len(masks), 4), np.float32)
        for i, m in enumerate(masks):
            ys, xs = np.nonzero(m)
            if len(ys):
                b[i] = (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)
        inst.pred_boxes = Boxes(torch.from_numpy(b))
    return inst


def evaluate(name: str, predictions: dict, output_dir=None, **kwargs):
    """Run the evaluator over ``predictions`` (image_id -> Instances or output dict)."""
    # every prediction scored unless a test says otherwise (the tests' references paint all)
    kwargs.setdefault("score_threshold", 0.0)
    evaluator = SegContrastEvaluator(name, output_dir, distributed=False, **kwargs)
    evaluator.reset()
    for image_id, pred in predictions.items():
        output = pred if isinstance(pred, dict) else {"instances": pred}
        evaluator.process([{"image_id": image_id}], [output])
    return evaluator.evaluate()


def coco_reference(dicts: list[dict], predictions: dict, num_classes: int,
                   ap_area: str = "mask"):
    """Real COCOeval (segm) on the same data, results made by Detectron2's own converter.

    ``ap_area="mask"`` removes each result's bbox before ``loadRes``, as Detectron2's
    COCOEvaluator does (detection areas are then mask areas); "box" keeps them (pycocotools
    then takes box areas).

    Returns:
        (stats dict in percent like Detectron2, per-class AP list, COCOeval object) or None
        when there are no predictions (pycocotools cannot load empty results).
    """
    images = [{"id": d["image_id"], "height": d["height"], "width": d["width"]} for d in dicts]
    annotations = []
    for d in dicts:
        for a in d["annotations"]:
            annotations.append(
                {
                    "id": a["id"],
                    "image_id": d["image_id"],
                    "category_id": a["category_id"] + 1,
                    "segmentation": a["segmentation"],
                    "area": a["area"],
                    "iscrowd": a["iscrowd"],
                    "bbox": a["bbox"],
                }
            )
    results = []
    for image_id, inst in predictions.items():
        if inst.has("pred_boxes"):
            converted = instances_to_coco_json(inst, image_id)
        else:  # no "bbox" in the results: loadRes then takes the mask area
            converted = []
            for m, s, c in zip(
                inst.pred_masks, inst.scores.tolist(), inst.pred_classes.tolist(), strict=True
            ):
                r = mask_util.encode(np.asfortranarray(m.numpy().astype(np.uint8)))
                converted.append(
                    {"image_id": image_id, "category_id": c, "score": s, "segmentation": r}
                )
        for r in converted:
            r["category_id"] += 1
            if ap_area == "mask":
                r.pop("bbox", None)
            results.append(r)
    if not results:
        return None
    gt = {
        "images": images,
        "annotations": annotations,
        "categories": [{"id": k + 1, "name": f"c{k}"} for k in range(num_classes)],
    }
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO()
        coco_gt.dataset = gt
        coco_gt.createIndex()
        coco_dt = coco_gt.loadRes(results)
        ev = COCOeval(coco_gt, coco_dt, "segm")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    names = ["AP", "AP50", "AP75", "APs", "APm", "APl"]
    stats = {n: (ev.stats[i] * 100 if ev.stats[i] >= 0 else math.nan) for i, n in enumerate(names)}
    per_class = []
    for k in range(num_classes):
        p = ev.eval["precision"][:, :, k, 0, -1]
        p = p[p > -1]
        per_class.append(float(np.mean(p)) * 100 if p.size else math.nan)
    return stats, per_class, ev


def same(a: float, b: float, tol: float = 1e-9) -> bool:
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    return abs(a - b) <= tol


def random_scene(
    rng: np.random.Generator,
    height: int,
    width: int,
    num_classes: int,
    image_id,
    *,
    max_gt: int = 6,
    max_pred: int = 8,
    first_id: int = 1,
):
    """Random rectangles/blobs: GT (some crowd, some overlapping) and noisy predictions."""

    def blob():
        m = np.zeros((height, width), bool)
        y, x = rng.integers(0, height), rng.integers(0, width)
        h, w = rng.integers(1, max(2, height // 2)), rng.integers(1, max(2, width // 2))
        m[y : y + h, x : x + w] = True
        if rng.random() < 0.3:
            m &= rng.random((height, width)) < 0.8
        return m

    n_gt = int(rng.integers(0, max_gt + 1))
    gt_masks = [blob() for _ in range(n_gt)]
    gt_masks = [m for m in gt_masks if m.any()]
    gt_cls = [int(rng.integers(0, num_classes)) for _ in gt_masks]
    crowd = [int(rng.random() < 0.1) for _ in gt_masks]
    areas = [
        float(m.sum()) if rng.random() < 0.7 else float(rng.uniform(0, 12000)) for m in gt_masks
    ]
    record = (
        image_dict(
            image_id,
            gt_masks,
            gt_cls,
            crowd,
            height=height,
            width=width,
            areas=areas,
            first_id=first_id,
        )
        if gt_masks
        else {
            "file_name": "",
            "height": height,
            "width": width,
            "image_id": image_id,
            "annotations": [],
        }
    )
    pred_masks, pred_cls, scores = [], [], []
    for _ in range(int(rng.integers(0, max_pred + 1))):
        if gt_masks and rng.random() < 0.7:
            j = int(rng.integers(len(gt_masks)))
            m = np.roll(gt_masks[j], int(rng.integers(-2, 3)), axis=int(rng.integers(0, 2)))
            c = gt_cls[j] if rng.random() < 0.85 else int(rng.integers(0, num_classes))
        else:
            m, c = blob(), int(rng.integers(0, num_classes))
        pred_masks.append(m)
        pred_cls.append(c)
        scores.append(float(rng.choice([0.5, 0.75, rng.random()])))
    pred = instances(pred_masks, pred_cls, scores, height=height, width=width)
    return record, pred



def random_dataset(seed: int, n_images: int, num_classes: int, height: int = 24, width: int = 30,
                   *, max_gt: int = 7, max_pred: int = 9, id_stride: int = 100):
    """``n_images`` scenes of :func:`random_scene` with dataset-wide unique annotation ids.

    Returns:
        (dataset dicts, {image_id: predictions}); image ids are ``id_stride * seed + i``.
    """
    rng = np.random.default_rng(seed)
    dicts, preds, next_id = [], {}, 1
    for i in range(n_images):
        record, pred = random_scene(rng, height, width, num_classes, id_stride * seed + i,
                                    first_id=next_id, max_gt=max_gt, max_pred=max_pred)
        next_id += len(record["annotations"])
        dicts.append(record)
        preds[record["image_id"]] = pred
    return dicts, preds

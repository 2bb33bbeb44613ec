"""The synthetic workload as files: a COCO ground-truth JSON and a COCO results JSON.

Used by the tests of ``tools/evaluate.py`` and by ``bench/bench_whole_process.py``. Results are
what Detectron2's COCOEvaluator writes (``instances_to_coco_json``: compressed RLE with str
counts, XYWH boxes, float scores), with category ids mapped to the ground truth's own ids.
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import math
from collections.abc import Sequence
from pathlib import Path

from detectron2.evaluation.coco_evaluation import instances_to_coco_json
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from .synthetic import synthetic_dataset, synthetic_predictions

__all__ = ["STAT_NAMES", "coco_gt_json", "cocoeval_stats", "results_of_image",
           "write_synthetic_files"]

STAT_NAMES = ("AP", "AP50", "AP75", "APs", "APm", "APl")


def coco_gt_json(dicts: list[dict], category_ids: Sequence[int]) -> dict:
    """A COCO instances file of Detectron2 dicts (contiguous class k -> ``category_ids[k]``)."""
    images, annotations = [], []
    for d in dicts:
        images.append({"id": d["image_id"], "file_name": Path(d["file_name"]).name,
                       "height": d["height"], "width": d["width"]})
        for a in d["annotations"]:
            annotations.append({
                "id": a["id"], "image_id": d["image_id"],
                "category_id": category_ids[a["category_id"]],
                "segmentation": a["segmentation"], "area": a["area"],
                "iscrowd": a["iscrowd"], "bbox": a["bbox"],
            })
    categories = [{"id": c, "name": f"class{k}"} for k, c in enumerate(category_ids)]
    return {"images": images, "annotations": annotations, "categories": categories}


def results_of_image(record: dict, category_ids: Sequence[int], *, seed: int = 0) -> list[dict]:
    """The synthetic predictions of one image as COCO results."""
    instances = synthetic_predictions(record, num_classes=len(category_ids), seed=seed)
    results = instances_to_coco_json(instances, record["image_id"])
    for r in results:
        r["category_id"] = category_ids[r["category_id"]]
    return results


def write_synthetic_files(folder: Path, num_images: int, *, num_classes: int = 10,
                          category_ids: Sequence[int] | None = None, seed: int = 0,
                          **dataset_kwargs) -> tuple[Path, Path, list[dict]]:
    """Write ``gt.json`` and ``results.json`` of the synthetic workload.

    Returns:
        ``(gt_path, results_path, dicts)``; the dicts have contiguous classes.
    """
    category_ids = list(category_ids or range(1, num_classes + 1))
    dicts = synthetic_dataset(num_images, num_classes=num_classes, seed=seed, **dataset_kwargs)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    gt_path, results_path = folder / "gt.json", folder / "results.json"
    gt_path.write_text(json.dumps(coco_gt_json(dicts, category_ids)))
    results = [r for d in dicts for r in results_of_image(d, category_ids, seed=seed)]
    results_path.write_text(json.dumps(results))
    return gt_path, results_path, dicts


def cocoeval_stats(gt: dict | Path, results: list, ap_area: str = "mask") -> dict[str, float]:
    """pycocotools' COCOeval (segm) in percent, NaN where it gives -1: the reference.

    Args:
        gt: a COCO instances dict, or the path of one.
        results: a COCO results list (not changed).
        ap_area: "mask" removes each result's ``bbox`` before ``loadRes``, as Detectron2's
            COCOEvaluator does; "box" loads the results as they are.
    """
    results = copy.deepcopy(results)
    if ap_area == "mask":
        for r in results:
            r.pop("bbox", None)
    data = json.loads(Path(gt).read_text()) if isinstance(gt, (str, Path)) else copy.deepcopy(gt)
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO()
        coco.dataset = data
        coco.createIndex()
        ev = COCOeval(coco, coco.loadRes(results), "segm")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return {n: (ev.stats[i] * 100 if ev.stats[i] >= 0 else math.nan)
            for i, n in enumerate(STAT_NAMES)}

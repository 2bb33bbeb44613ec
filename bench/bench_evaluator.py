#!/usr/bin/env python
"""Benchmark the contrast evaluator against pycocotools, faster-coco-eval and torchmetrics.

Workload (generated deterministically here, via tests/evaluation/synthetic.py): 200 images of
480x640, 10 classes, ~15 ground-truth polygons and ~17 predicted masks per image, predictions as
Mask R-CNN gives them ((N, H, W) bool tensors, scores, classes, boxes).

Measured side by side in one run, per image in turn (predictions are generated untimed, then
each contender consumes the same outputs):
  * ours: SegContrastEvaluator.process + evaluate (semantic + instance + COCO AP), boundary IoU
    off and on; then with PQ, and with PQ and the gap accounting (the default), four
    evaluators, so each part's cost is the difference of two rows;
  * pycocotools: Detectron2's instances_to_coco_json (RLE encoding) + COCOeval segm;
  * faster-coco-eval: the same encoding + its COCOeval_faster segm;
  * semantic part: our painting + confusion matrix vs torchmetrics' MulticlassJaccardIndex
    update/compute on the same label maps.

    python bench/bench_evaluator.py                          # 200 images, print the table
    python bench/bench_evaluator.py --write-docs             # also update docs/BENCHMARKS.md
    python bench/bench_evaluator.py --scaling [--write-docs] # 100..2000 images, time + memory
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import io
import json
import os
import pickle
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DOCS = REPO / "docs" / "BENCHMARKS.md"
# The synthetic workload generator lives with the tests (tests/evaluation/synthetic.py).
sys.path.insert(0, str(REPO))
NUM_CLASSES = 10
SEED = 0


def _setup_torch() -> None:
    import torch

    # The machines this runs on are small and shared; one thread makes torch's timings stable.
    torch.set_num_threads(1)


def _versions() -> str:
    from importlib import metadata

    parts = [f"Python {platform.python_version()}"]
    for dist in (
        "numpy",
        "torch",
        "detectron2",
        "pb1-detectron2",
        "pycocotools",
        "faster-coco-eval",
        "torchmetrics",
        "opencv-python-headless",
        "scipy",
    ):
        try:
            parts.append(f"{dist} {metadata.version(dist)}")
        except metadata.PackageNotFoundError:
            continue
    return ", ".join(parts)


def _machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"{os.cpu_count()} CPU cores ({cpu}), {platform.system()}"


def _coco_gt(dicts: list[dict]) -> dict:
    """COCO ground truth of the dataset dicts (areas, ids and segmentations as given)."""
    images, annotations = [], []
    for d in dicts:
        images.append({"id": d["image_id"], "height": d["height"], "width": d["width"]})
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
    categories = [{"id": k + 1, "name": f"class{k}"} for k in range(NUM_CLASSES)]
    return {"images": images, "annotations": annotations, "categories": categories}


def compare(num_images: int) -> dict:
    """One side-by-side run; returns timings (s) and AP agreement."""
    _setup_torch()
    import numpy as np
    import segcontrast.engine  # noqa: F401  (makes detectron2 usable; registers the heads)
    import torch
    from detectron2.evaluation.coco_evaluation import instances_to_coco_json
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval
    from segcontrast.data.masks import GroundTruth
    from segcontrast.data.semantic_gt import paint_semantic_gt
    from segcontrast.engine.evaluator import SegContrastEvaluator, predictions_from_output
    from segcontrast.evaluation.metrics.semantic import confusion_matrix, paint_semantic_from_crops
    from segcontrast.evaluation.settings import EvalSettings

    from tests.evaluation.synthetic import (
        register_synthetic_dataset,
        synthetic_dataset,
        synthetic_predictions,
    )

    try:
        from torchmetrics.classification import MulticlassJaccardIndex
    except ImportError:
        MulticlassJaccardIndex = None  # noqa: N806
    try:
        from faster_coco_eval import COCO as FCOCO
        from faster_coco_eval import COCOeval_faster
    except ImportError:
        FCOCO = COCOeval_faster = None  # noqa: N806

    dicts = synthetic_dataset(num_images, num_classes=NUM_CLASSES, seed=SEED)
    name = "bench_evaluator_synthetic"
    register_synthetic_dataset(name, dicts, NUM_CLASSES)
    def evaluator(**kwargs):
        # the boxes' areas for APs/APm/APl, as COCOeval takes them from the results below
        return SegContrastEvaluator(name, None, distributed=False, ap_area="box", **kwargs)

    evaluators = {
        "ours": evaluator(boundary_iou=False, panoptic=False, accounting=False),
        "ours_boundary": evaluator(boundary_iou=True, panoptic=False, accounting=False),
        "ours_pq": evaluator(boundary_iou=False, panoptic=True, accounting=False),
        "ours_full": evaluator(boundary_iou=False, panoptic=True, accounting=True),
    }
    jaccard = (
        MulticlassJaccardIndex(num_classes=NUM_CLASSES + 1, ignore_index=255, average="none")
        if MulticlassJaccardIndex
        else None
    )
    t = dict.fromkeys(
        (*evaluators, "encode", "cocoeval", "faster", "sem_ours", "sem_torchmetrics"), 0.0
    )
    for ev in evaluators.values():
        ev.reset()
    results, n_gt, n_pred = [], 0, 0
    for index, d in enumerate(dicts):
        inst = synthetic_predictions(d, num_classes=NUM_CLASSES, seed=SEED)
        inp = [{"image_id": d["image_id"], "file_name": d["file_name"]}]
        out = [{"instances": inst}]
        n_gt += len(d["annotations"])
        n_pred += len(inst)
        # alternate who goes first, so that neither always finds the masks in cache
        steps = ["ours", "encode", "ours_full", "ours_boundary", "semantic", "ours_pq"]
        for step in steps if index % 2 == 0 else steps[::-1]:
            if step in evaluators:
                s = time.perf_counter()
                evaluators[step].process(inp, out)
                t[step] += time.perf_counter() - s
            elif step == "encode":
                s = time.perf_counter()
                converted = instances_to_coco_json(inst, d["image_id"])
                t["encode"] += time.perf_counter() - s
                for r in converted:
                    r["category_id"] += 1
                results.extend(converted)
            elif step == "semantic":
                s = time.perf_counter()
                gt = GroundTruth.from_dataset_dict(d, NUM_CLASSES)
                settings = EvalSettings()
                pred = predictions_from_output(out[0], d["height"], d["width"], settings,
                                               NUM_CLASSES)
                # the semantic side paints the predictions the score threshold keeps
                keep = np.flatnonzero(pred.scores >= settings.score_threshold)
                gt_labels = paint_semantic_gt(gt.masks, gt.classes, gt.crowd)
                pred_labels = paint_semantic_from_crops(pred.masks.subset(keep),
                                                        pred.classes[keep], pred.scores[keep])
                confusion_matrix(gt_labels, pred_labels, NUM_CLASSES + 1)
                t["sem_ours"] += time.perf_counter() - s
                if jaccard is not None:
                    p, g = torch.from_numpy(pred_labels), torch.from_numpy(gt_labels)
                    s = time.perf_counter()
                    jaccard.update(p.long(), g.long())
                    t["sem_torchmetrics"] += time.perf_counter() - s
    ours_results = {}
    for key, ev in evaluators.items():
        s = time.perf_counter()
        ours_results[key] = ev.evaluate()
        t[f"{key}_evaluate"] = time.perf_counter() - s
        t[key] += t[f"{key}_evaluate"]
    res = ours_results["ours"]
    if ours_results["ours_full"]["segm"] != res["segm"]:
        raise AssertionError("PQ and the accounting changed the AP results")
    if jaccard is not None:
        s = time.perf_counter()
        tm_iou = jaccard.compute()
        t["sem_torchmetrics"] += time.perf_counter() - s
    gt_json = _coco_gt(dicts)
    with contextlib.redirect_stdout(io.StringIO()):
        s = time.perf_counter()
        coco_gt = COCO()
        coco_gt.dataset = json.loads(json.dumps(gt_json))
        coco_gt.createIndex()
        ev = COCOeval(coco_gt, coco_gt.loadRes(json.loads(json.dumps(results))), "segm")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
        t["cocoeval"] = time.perf_counter() - s
        if COCOeval_faster is not None:
            s = time.perf_counter()
            f_gt = FCOCO(json.loads(json.dumps(gt_json)))
            f_ev = COCOeval_faster(f_gt, f_gt.loadRes(json.loads(json.dumps(results))), "segm")
            f_ev.evaluate()
            f_ev.accumulate()
            f_ev.summarize()
            t["faster"] = time.perf_counter() - s
    ap_diff = max(
        abs(res["segm"][k] - ev.stats[i] * 100)
        for i, k in enumerate(("AP", "AP50", "AP75", "APs", "APm", "APl"))
    )
    sem_diff = float("nan")
    if jaccard is not None:
        ours_iou = np.array(
            [res["semantic"]["IoU-background"]]
            + [res["semantic"][f"IoU-class{k}"] for k in range(NUM_CLASSES)]
        )
        sem_diff = float(np.nanmax(np.abs(ours_iou - tm_iou.numpy() * 100)))
    return {
        "images": num_images,
        "gt": n_gt,
        "pred": n_pred,
        "times": t,
        "ap_diff": ap_diff,
        "sem_diff": sem_diff,
        "faster": COCOeval_faster is not None,
        "torchmetrics": jaccard is not None,
    }


def compare_table(r: dict) -> str:
    t = r["times"]
    pyco = t["encode"] + t["cocoeval"]
    rows = [
        ("ours: semantic + instance + AP, boundary IoU off", t["ours"], pyco / t["ours"]),
        (
            "  of which evaluate() (gather, COCO matching and accumulation, report)",
            t["ours_evaluate"],
            None,
        ),
        ("ours: the same + PQ", t["ours_pq"], pyco / t["ours_pq"]),
        ("  of which PQ (the row above minus the first)", t["ours_pq"] - t["ours"], None),
        ("ours: the same + PQ + gap accounting (the default)", t["ours_full"],
         pyco / t["ours_full"]),
        ("  of which the accounting (the row above minus the PQ row)",
         t["ours_full"] - t["ours_pq"], None),
        ("  of which evaluate()", t["ours_full_evaluate"], None),
        ("ours: semantic + instance + AP with boundary IoU", t["ours_boundary"],
         pyco / t["ours_boundary"]),
        ("pycocotools: RLE encode + COCOeval segm", pyco, 1.0),
        ("  of which RLE encoding (Detectron2's instances_to_coco_json)", t["encode"], None),
        ("  of which COCOeval evaluate + accumulate + summarize", t["cocoeval"], None),
    ]
    if r["faster"]:
        rows.append(
            (
                "faster-coco-eval: RLE encode + COCOeval_faster segm",
                t["encode"] + t["faster"],
                pyco / (t["encode"] + t["faster"]),
            )
        )
        rows.append(("  of which faster-coco-eval's evaluation", t["faster"], None))
    lines = ["| what | seconds | pycocotools time / this |", "|---|---:|---:|"]
    for label, seconds, ratio in rows:
        lines.append(f"| {label} | {seconds:.3f} | {'' if ratio is None else f'{ratio:.2f}x'} |")
    lines.append("")
    lines.append("| semantic part | seconds | torchmetrics time / this |")
    lines.append("|---|---:|---:|")
    lines.append(
        f"| ours: decode GT + crop predictions + paint both + confusion matrix | "
        f"{t['sem_ours']:.3f} | "
        f"{(t['sem_torchmetrics'] / t['sem_ours']) if r['torchmetrics'] else 0:.2f}x |"
    )
    if r["torchmetrics"]:
        lines.append(
            "| torchmetrics MulticlassJaccardIndex update + compute (given the label "
            f"maps) | {t['sem_torchmetrics']:.3f} | 1.00x |"
        )
    lines.append("")
    met = "met" if t["ours_full"] <= pyco else "NOT met"
    lines.append(
        f"Target (the default evaluation, with PQ and the accounting, no slower than "
        f"pycocotools' RLE encode + COCOeval segm): {met}, {pyco / t['ours_full']:.2f}x."
    )
    lines.append("")
    lines.append(
        f"{r['images']} images of 480x640, {NUM_CLASSES} classes, {r['gt']} ground-truth "
        f"instances, {r['pred']} predictions. Largest |AP difference| to pycocotools over AP, "
        f"AP50, AP75, APs, APm, APl: {r['ap_diff']:.1e}; largest per-class semantic IoU "
        f"difference to torchmetrics: {r['sem_diff']:.1e} (percent points)."
    )
    return "\n".join(lines)


def _scaling_child(num_images: int) -> dict:
    """Run in a fresh process: time, then (second pass, traced) memory of ours."""
    _setup_torch()
    import tracemalloc

    import segcontrast.engine  # noqa: F401  (makes detectron2 usable; registers the heads)
    from segcontrast.engine.evaluator import SegContrastEvaluator

    from tests.evaluation.synthetic import (
        register_synthetic_dataset,
        synthetic_dataset,
        synthetic_predictions,
    )

    dicts = synthetic_dataset(num_images, num_classes=NUM_CLASSES, seed=SEED)
    register_synthetic_dataset("bench_scaling", dicts, NUM_CLASSES)

    def run(traced: bool) -> dict:
        # the default evaluation: PQ and the gap accounting on
        ev = SegContrastEvaluator("bench_scaling", None, distributed=False, boundary_iou=False)
        ev.reset()
        seconds, held, peak = 0.0, 0, 0
        if traced:
            tracemalloc.start()
        for d in dicts:
            out = [{"instances": synthetic_predictions(d, num_classes=NUM_CLASSES, seed=SEED)}]
            if traced:
                base = tracemalloc.get_traced_memory()[0]
                tracemalloc.reset_peak()
            s = time.perf_counter()
            ev.process([{"image_id": d["image_id"]}], out)
            seconds += time.perf_counter() - s
            if traced:
                peak = max(peak, tracemalloc.get_traced_memory()[1] - base)
            del out
        if traced:
            held = tracemalloc.get_traced_memory()[0]
            tracemalloc.reset_peak()
        s = time.perf_counter()
        ev.evaluate()
        evaluate_seconds = time.perf_counter() - s
        seconds += evaluate_seconds
        result = {
            "seconds": seconds,
            "evaluate_seconds": evaluate_seconds,
            "state_bytes": len(pickle.dumps(ev.state)),
        }
        if traced:
            result.update(
                held=held,
                process_peak=peak,
                evaluate_peak=tracemalloc.get_traced_memory()[1] - held,
            )
            tracemalloc.stop()
        return result

    timed = run(traced=False)
    traced = run(traced=True)
    return {
        "images": num_images,
        "seconds": timed["seconds"],
        "evaluate_seconds": timed["evaluate_seconds"],
        "state_bytes": timed["state_bytes"],
        "held_bytes": traced["held"],
        "process_peak_bytes": traced["process_peak"],
        "evaluate_peak_bytes": traced["evaluate_peak"],
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def scaling(sizes: list[int]) -> list[dict]:
    rows = []
    for n in sizes:
        proc = subprocess.run(
            [sys.executable, __file__, "--child", str(n)],
            capture_output=True,
            text=True,
            check=True,
            cwd=REPO,
        )
        row = json.loads(proc.stdout.strip().splitlines()[-1])
        rows.append(row)
        print(
            f"  {n} images: {row['seconds']:.2f} s, held {row['held_bytes'] / 1e6:.2f} MB, "
            f"peak RSS {row['peak_rss_mb']:.0f} MB",
            flush=True,
        )
    return rows


def scaling_table(rows: list[dict]) -> str:
    lines = [
        "| images | seconds (process + evaluate) | of which evaluate() | ms per image | "
        "statistics held (MB) | "
        "gathered, pickled (MB) | peak extra in process() (MB) | peak extra in evaluate() "
        "(MB) | peak RSS of the process (MB) |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['images']} | {r['seconds']:.2f} | {r['evaluate_seconds']:.2f} | "
            f"{1000 * r['seconds'] / r['images']:.2f} | "
            f"{r['held_bytes'] / 1e6:.2f} | {r['state_bytes'] / 1e6:.2f} | "
            f"{r['process_peak_bytes'] / 1e6:.1f} | {r['evaluate_peak_bytes'] / 1e6:.1f} | "
            f"{r['peak_rss_mb']:.0f} |"
        )
    first, last = rows[0], rows[-1]
    lines.append("")
    lines.append(
        f"Time per image: {1000 * first['seconds'] / first['images']:.2f} ms at "
        f"{first['images']} images, {1000 * last['seconds'] / last['images']:.2f} ms at "
        f"{last['images']} (linear time), PQ and the gap accounting on. Memory (Python's "
        "tracemalloc, which sees numpy): the evaluator holds only its statistics, "
        f"~{last['held_bytes'] / last['images'] / 1e3:.1f} kB per image (confusion matrices, "
        "per-instance records, COCO IoU matrices, PQ counts, and per accounting variant the "
        "fixed per-object IoUs, PQ counts and COCO records of the classes it touched); the working "
        "memory of one process() call stays flat (one image's crops and label maps); "
        "evaluate() concatenates the records (a few kB per image more) and runs the COCO "
        "matching in chunks of bounded size. Peak RSS is mostly torch and Detectron2 themselves "
        "plus "
        "the dataset dicts; each size runs in its own process. Predictions are generated per "
        "image (3 ms, untimed)."
    )
    return "\n".join(lines)


def write_docs(marker: str, body: str) -> None:
    start, end = f"<!-- bench:{marker}:start -->", f"<!-- bench:{marker}:end -->"
    text = DOCS.read_text()
    i, j = text.index(start), text.index(end)
    DOCS.write_text(text[: i + len(start)] + "\n" + body + "\n" + text[j:])
    print(f"wrote {DOCS} ({marker})")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--scaling", action="store_true", help="100 to 2,000 images")
    parser.add_argument("--sizes", default="100,250,500,1000,2000")
    parser.add_argument("--write-docs", action="store_true")
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(_scaling_child(args.child)))
        return 0
    today = datetime.date.today().isoformat()
    if args.scaling:
        sizes = [int(s) for s in args.sizes.split(",")]
        table = scaling_table(scaling(sizes))
        command = "python bench/bench_evaluator.py --scaling --write-docs"
        marker = "evaluator_scaling"
    else:
        table = compare_table(compare(args.images))
        command = "python bench/bench_evaluator.py --write-docs"
        marker = "evaluator"
    body = (
        f"`{command}` on {today}, {_machine()}; {_versions()}; torch limited to one "
        f"thread.\n\n{table}"
    )
    print(body)
    if args.write_docs:
        write_docs(marker, body)
    return 0


if __name__ == "__main__":
    sys.exit(main())

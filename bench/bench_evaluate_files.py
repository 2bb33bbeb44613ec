#!/usr/bin/env python
"""Benchmark tools/evaluate.py's scoring of a results file against pycocotools and its peers.

The peers are pycocotools, faster-coco-eval and hotcoco, on the same files.

Workload: the synthetic workload of bench/bench_evaluator.py (tests/evaluation/synthetic.py:
480x640 images, 10 classes, ~15 ground-truth polygons and ~17 predictions per image) written to
a COCO ground-truth file and a COCO results file (compressed RLE and boxes, as Detectron2's
COCOEvaluator writes them). Writing the files is not timed. Each contender runs in its own
process and is timed from reading the files to its final numbers (imports excluded):

  * ours: GT validation (no image files), reading and checking the results, scoring every image
    (semantic + instance + COCO AP), evaluate(); boundary IoU, PQ and the accounting off, then
    everything on (one process, then --workers); nothing written;
  * ours, the whole tools/evaluate.py main(): everything on and every output (metrics.json,
    per_image.csv, plots, worst-image overlays, report.html);
  * pycocotools: COCO(gt) + loadRes(results) + COCOeval segm evaluate/accumulate/summarize;
  * faster-coco-eval and hotcoco: the same with theirs.

    python bench/bench_evaluate_files.py                          # 200 images, print the table
    python bench/bench_evaluate_files.py --write-docs             # also update docs/BENCHMARKS.md
    python bench/bench_evaluate_files.py --scaling [--write-docs] # 100..2000 images, time + memory
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import gc
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # the synthetic workload lives with the tests
sys.path.insert(0, str(REPO / "bench"))

from bench_evaluator import _machine, _setup_torch, _versions, write_docs  # noqa: E402

NUM_CLASSES = 10
SEED = 0
REPEATS = 5  # rounds of every contender, interleaved: the median round is reported
STATS = ("AP", "AP50", "AP75", "APs", "APm", "APl")
CONTENDERS = ("ours", "ours_workers", "ours_all", "ours_parallel", "ours_cli", "pycocotools",
              "faster_coco_eval", "hotcoco")
LABELS = {
    "ours": "ours: tools/evaluate.py scoring (semantic + instance + AP), boundary IoU, PQ and "
            "the accounting off, one process",
    "ours_workers": "ours: the same, --workers default ({workers}, the tool's default)",
    "ours_all": "ours: everything on (also boundary IoU, PQ and the gap accounting), one process",
    "ours_parallel": "ours: everything on, --workers default ({workers})",
    "ours_cli": "ours: tools/evaluate.py main(), everything on and every output written "
                "(plots, 6 overlays, report.html), --workers default",
    "pycocotools": "pycocotools: COCO + loadRes + COCOeval segm",
    "faster_coco_eval": "faster-coco-eval: COCO + loadRes + COCOeval_faster segm",
    "hotcoco": "hotcoco: COCO + load_res + COCOeval segm",
}


def write_files(folder: Path, num_images: int) -> dict:
    """The workload's GT and results files (untimed)."""
    import segcontrast.engine  # noqa: F401  (makes detectron2 usable; registers the heads)

    from tests.evaluation.results_files import write_synthetic_files

    gt, results, dicts = write_synthetic_files(folder, num_images, num_classes=NUM_CLASSES,
                                               seed=SEED)
    n_results = len(json.loads(results.read_text()))
    return {"gt": str(gt), "results": str(results), "images": num_images,
            "gt_instances": sum(len(d["annotations"]) for d in dicts), "results_count": n_results,
            "results_mb": results.stat().st_size / 1e6}


def _rss_mb(field: str) -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    return float("nan")


def _reset_peak() -> None:
    # Linux: writing 5 to clear_refs resets the peak RSS (VmHWM) to the current RSS.
    with contextlib.suppress(OSError), open("/proc/self/clear_refs", "w") as f:
        f.write("5")


@contextlib.contextmanager
def _quiet():
    """Silence stdout, also of C and Rust code that writes to the file descriptor."""
    sys.stdout.flush()
    saved = os.dup(1)
    with open(os.devnull, "w") as null:
        os.dup2(null.fileno(), 1)
        try:
            with contextlib.redirect_stdout(io.StringIO()):
                yield
        finally:
            sys.stdout.flush()
            os.dup2(saved, 1)
            os.close(saved)


def _ours(gt: str, results: str, everything: bool, workers: int = 1) -> dict:
    from segcontrast.datasets.coco import unregister_coco_dataset
    from segcontrast.engine.evaluate_files import load_ground_truth
    from segcontrast.engine.evaluator import SegContrastEvaluator
    from segcontrast.evaluation.results_file import read_results
    from segcontrast.evaluation.score_files import score_results

    start = time.perf_counter()
    files = load_ground_truth(gt)
    # --ap-area box: pycocotools' area rule on a file with boxes, the other contenders' rule
    loaded = read_results(results, files.images, files.id_map, ap_area="box")
    def make() -> SegContrastEvaluator:
        return SegContrastEvaluator(files.name, None, distributed=False, boundary_iou=everything,
                                    panoptic=everything, accounting=everything,
                                    score_threshold=0.5, ap_area="box")

    evaluator = make()
    score_results(evaluator, loaded, files.images, files.id_map, progress=False,
                  workers=workers, make_evaluator=make)
    res = evaluator.evaluate()
    seconds = time.perf_counter() - start
    unregister_coco_dataset(files.name)
    return {"seconds": seconds, "stats": [res["segm"][k] for k in STATS]}


def _ours_cli(gt: str, results: str) -> dict:
    from segcontrast.engine.evaluate_files import main

    out = tempfile.mkdtemp(prefix="bench_evaluate_files_")
    start = time.perf_counter()
    code = main(["--gt", gt, "--results", results, "--output", os.path.join(out, "ev"),
                 "--ap-area", "box"])
    seconds = time.perf_counter() - start
    metrics = json.loads(Path(out, "ev", "metrics.json").read_text())
    shutil.rmtree(out, ignore_errors=True)
    assert code == 0
    return {"seconds": seconds, "stats": [metrics["segm"][k] for k in STATS]}


def _cocoeval(kind: str, gt: str, results: str) -> dict:
    if kind == "pycocotools":
        from pycocotools.coco import COCO
        from pycocotools.cocoeval import COCOeval as Eval
    elif kind == "faster_coco_eval":
        from faster_coco_eval import COCO
        from faster_coco_eval import COCOeval_faster as Eval
    else:
        from hotcoco import COCO
        from hotcoco import COCOeval as Eval
    start = time.perf_counter()
    coco_gt = COCO(gt)
    coco_dt = coco_gt.load_res(results) if kind == "hotcoco" else coco_gt.loadRes(results)
    ev = Eval(coco_gt, coco_dt, "segm")
    ev.evaluate()
    ev.accumulate()
    ev.summarize()
    seconds = time.perf_counter() - start
    # percent, as ours (Detectron2 multiplies COCOeval's stats by 100 the same way)
    return {"seconds": seconds, "stats": [float(v) * 100 for v in list(ev.stats)[:6]]}


def _contender(name: str, gt: str, results: str) -> dict:
    if name == "ours":
        return _ours(gt, results, everything=False)
    if name == "ours_workers":
        from segcontrast.evaluation.score_files import default_workers

        return _ours(gt, results, everything=False, workers=default_workers())
    if name == "ours_all":
        return _ours(gt, results, everything=True)
    if name == "ours_parallel":
        from segcontrast.evaluation.score_files import default_workers

        return _ours(gt, results, everything=True, workers=default_workers())
    if name == "ours_cli":
        return _ours_cli(gt, results)
    return _cocoeval(name, gt, results)


def run_child(name: str, gt: str, results: str, warm_gt: str, warm_results: str) -> dict:
    """One contender in this process: its time, peak memory and AP numbers.

    It first runs once on a 2-image file, untimed, so that lazy imports and first-call set-up
    (torchvision behind detectron2.structures, pycocotools' C extension, ...) are not timed.
    """
    _setup_torch()
    import segcontrast.engine  # noqa: F401  (makes detectron2 usable; registers the heads)

    with _quiet():
        _contender(name, warm_gt, warm_results)
    # As tools/evaluate.py does at its start, for every contender: the objects of the imports
    # (torch and Detectron2 are imported here for all) are left out of garbage collections.
    gc.freeze()
    base = _rss_mb("VmRSS")
    _reset_peak()
    cpu = time.process_time()
    with _quiet():
        out = _contender(name, gt, results)
    out.update(name=name, base_rss_mb=base, peak_rss_mb=_rss_mb("VmHWM"),
               cpu_seconds=time.process_time() - cpu)
    return out


def _spawn(*args: str) -> dict | None:
    proc = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True,
                          cwd=REPO)
    if proc.returncode != 0:
        print(f"  {' '.join(args[:2])} failed: {proc.stderr.strip().splitlines()[-1:]}",
              flush=True)
        return None
    return json.loads(proc.stdout.strip().splitlines()[-1])


def compare(num_images: int, repeats: int = REPEATS) -> dict:
    """Every contender on the same files, each in its own process, in interleaved rounds.

    Per contender the round with the median time is kept.
    """
    with tempfile.TemporaryDirectory(prefix="bench_evaluate_files_") as folder:
        files = write_files(Path(folder), num_images)
        warm = write_files(Path(folder) / "warm", 2)
        runs: dict[str, list[dict]] = {name: [] for name in CONTENDERS}
        for round_index in range(repeats):
            for name in CONTENDERS:
                row = _spawn("--child", name, files["gt"], files["results"], warm["gt"],
                             warm["results"])
                if row is not None:
                    runs[name].append(row)
                    print(f"  round {round_index + 1}, {name}: {row['seconds']:.2f} s",
                          flush=True)
        rows = {}
        for name, done in runs.items():
            if done:
                done.sort(key=lambda row: row["seconds"])
                rows[name] = done[len(done) // 2]
    return {"files": files, "rows": rows, "repeats": repeats}


def compare_table(r: dict) -> str:
    rows, files = r["rows"], r["files"]
    reference = rows.get("pycocotools")
    from segcontrast.evaluation.score_files import default_workers

    lines = ["| what | seconds | pycocotools time / this | CPU seconds of the main process "
             "| peak RSS above start (MB) |", "|---|---:|---:|---:|---:|"]
    for name in CONTENDERS:
        label = LABELS[name].format(workers=default_workers())
        if name not in rows:
            lines.append(f"| {label} | not available | | | |")
            continue
        row = rows[name]
        ratio = f"{reference['seconds'] / row['seconds']:.2f}x" if reference else ""
        extra = row["peak_rss_mb"] - row["base_rss_mb"]
        lines.append(f"| {label} | {row['seconds']:.3f} | {ratio} | {row['cpu_seconds']:.3f} | "
                     f"{extra:.0f} |")
    diffs = []
    if reference:
        for name, row in rows.items():
            if name != "pycocotools":
                worst = max(abs(a - b) for a, b in
                            zip(row["stats"], reference["stats"], strict=True))
                diffs.append(f"{name} {worst:.1e}")
    if reference:
        verdicts = []
        for name, what in (("ours", "in one process"),
                           ("ours_workers", "with the tool's default --workers")):
            if name in rows:
                ratio = reference["seconds"] / rows[name]["seconds"]
                verdicts.append(f"{what} {ratio:.2f}x ({'met' if ratio >= 1 else 'not met'})")
        lines += ["", "Target (semantic + instance + AP, boundary IoU off: no slower than "
                  "pycocotools' loadRes + COCOeval segm on the same file): " + "; ".join(verdicts)
                  + "."]
    lines += ["", f"{files['images']} images of 480x640, {NUM_CLASSES} classes, "
              f"{files['gt_instances']} ground-truth instances, {files['results_count']} results "
              f"({files['results_mb']:.1f} MB of JSON, compressed RLE with boxes; ours with "
              "--ap-area box, the contenders' area rule for APs/APm/APl). Median of "
              f"{r['repeats']} interleaved rounds. Every time runs "
              "from the files to the final numbers in a fresh process, after an untimed run on a "
              "2-image file (imports and first-call set-up excluded for every contender), the "
              "objects of the imports left out of garbage collections for every contender "
              "(gc.freeze, as tools/evaluate.py does); the peak "
              "RSS is the main process's (--workers forks share its pages copy-on-write and hold "
              "one image at a time plus their chunk's statistics). Largest "
              "|difference| to pycocotools over AP, AP50, AP75, APs, APm, APl (percent points): "
              + ", ".join(diffs) + "."]
    return "\n".join(lines)


def scaling_child(gt: str, results: str, warm_gt: str, warm_results: str) -> dict:
    """Time (untraced), then where the memory goes (traced), for ours at one size."""
    _setup_torch()
    import pickle
    import tracemalloc

    import segcontrast.engine  # noqa: F401  (makes detectron2 usable; registers the heads)
    from segcontrast.datasets.coco import unregister_coco_dataset
    from segcontrast.engine.evaluate_files import load_ground_truth
    from segcontrast.engine.evaluator import SegContrastEvaluator
    from segcontrast.evaluation.results_file import read_results

    with _quiet():
        _ours(warm_gt, warm_results, everything=True)
    base = _rss_mb("VmRSS")
    _reset_peak()
    with _quiet():
        timed = _ours(gt, results, everything=True)
    peak_rss = _rss_mb("VmHWM")

    tracemalloc.start()
    files = load_ground_truth(gt)
    after_gt = tracemalloc.get_traced_memory()[0]
    loaded = read_results(results, files.images, files.id_map, ap_area="box")
    after_results = tracemalloc.get_traced_memory()[0]
    evaluator = SegContrastEvaluator(files.name, None, distributed=False, boundary_iou=True,
                                     score_threshold=0.5, ap_area="box")
    image_peak = 0
    for image_id in sorted(files.images):
        before = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()
        height, width = files.images[image_id]
        pred = loaded.predictions(image_id, height, width, files.id_map)
        evaluator.add_predictions(image_id, pred)
        del pred
        image_peak = max(image_peak, tracemalloc.get_traced_memory()[1] - before)
    held_end = tracemalloc.get_traced_memory()[0]
    tracemalloc.reset_peak()
    with _quiet():
        evaluator.evaluate()
    evaluate_peak = tracemalloc.get_traced_memory()[1] - held_end
    tracemalloc.stop()
    state_bytes = len(pickle.dumps(evaluator.state))
    unregister_coco_dataset(files.name)
    return {
        "seconds": timed["seconds"],
        "gt_mb": after_gt / 1e6,
        "results_mb": (after_results - after_gt) / 1e6,
        "statistics_mb": state_bytes / 1e6,
        "image_peak_mb": image_peak / 1e6,
        "evaluate_peak_mb": evaluate_peak / 1e6,
        "peak_rss_above_start_mb": peak_rss - base,
    }


def scaling(sizes: list[int]) -> list[dict]:
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench_evaluate_files_") as folder:
        warm = write_files(Path(folder) / "warm", 2)
        for n in sizes:
            files = write_files(Path(folder) / str(n), n)
            row = _spawn("--scaling-child", files["gt"], files["results"], warm["gt"],
                         warm["results"])
            if row is None:
                continue
            row.update(images=n, results_count=files["results_count"],
                       file_mb=files["results_mb"])
            rows.append(row)
            print(f"  {n} images: {row['seconds']:.2f} s, per-image peak "
                  f"{row['image_peak_mb']:.1f} MB", flush=True)
    return rows


def scaling_table(rows: list[dict]) -> str:
    lines = [
        "| images | results | seconds | ms per image | results list held (MB) | GT dicts held "
        "(MB) | statistics (MB, pickled) | peak extra per image (MB) | peak extra in "
        "evaluate() (MB) | peak RSS above start (MB) |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['images']} | {r['results_count']} | {r['seconds']:.2f} | "
            f"{1000 * r['seconds'] / r['images']:.2f} | {r['results_mb']:.1f} | {r['gt_mb']:.1f} | "
            f"{r['statistics_mb']:.2f} | {r['image_peak_mb']:.1f} | {r['evaluate_peak_mb']:.1f} | "
            f"{r['peak_rss_above_start_mb']:.0f} |")
    first, last = rows[0], rows[-1]
    lines += ["", (
        f"Time per image: {1000 * first['seconds'] / first['images']:.2f} ms at "
        f"{first['images']} images, {1000 * last['seconds'] / last['images']:.2f} ms at "
        f"{last['images']}. Memory (tracemalloc, which sees numpy): the working memory of one "
        "image (decoding its results, scoring it) stays flat; what grows with the number of "
        "images is what is held: the parsed results list (read once, as json.load gives it: "
        f"~{1000 * last['results_mb'] / last['results_count']:.1f} kB per result), the "
        "validated ground-truth dicts, and the evaluator's per-image statistics. Everything on "
        "(boundary IoU, PQ, the accounting), one process; each size runs in its own process.")]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--scaling", action="store_true", help="100 to 2,000 images")
    parser.add_argument("--sizes", default="100,250,500,1000,2000")
    parser.add_argument("--write-docs", action="store_true")
    parser.add_argument("--child", nargs=5, help=argparse.SUPPRESS)
    parser.add_argument("--scaling-child", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(run_child(*args.child)))
        return 0
    if args.scaling_child:
        print(json.dumps(scaling_child(*args.scaling_child)))
        return 0
    today = datetime.date.today().isoformat()
    if args.scaling:
        table = scaling_table(scaling([int(s) for s in args.sizes.split(",")]))
        command = "python bench/bench_evaluate_files.py --scaling --write-docs"
        marker = "evaluate_files_scaling"
    else:
        table = compare_table(compare(args.images))
        command = "python bench/bench_evaluate_files.py --write-docs"
        marker = "evaluate_files"
    body = (f"`{command}` on {today}, {_machine()}; {_versions()}, hotcoco; torch limited to one "
            f"thread.\n\n{table}")
    print(body)
    if args.write_docs:
        write_docs(marker, body)
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python
"""Where ``segcontrast.evaluate`` spends its time, in process, one worker, per part.

The workloads of bench/bench_whole_process.py (made and cached there). Each workload runs in a
fresh process: ``segcontrast.evaluate(gt, results, workers=1)`` then ``result.save(folder)``,
with the functions of :data:`PARTS` wrapped by the whole-process bench's clock (a part's own
time excludes the parts timed inside it; a part that is not a container takes everything called
inside it). The per-image parts are also given per image, in milliseconds.

    python bench/profile_scoring.py                    # 200 and 5000
    python bench/profile_scoring.py --workloads 200,dense
    python bench/profile_scoring.py --whole --rounds 3 [--baseline /path/to/other/checkout]

``--whole``: fresh processes side by side instead, rounds interleaved, medians (min-max):
``segcontrast.evaluate(gt, results, workers=2).save(tmp)`` as a one-line ``python -c`` (this
checkout; with ``--baseline``, also another checkout's package), and pycocotools,
faster-coco-eval and hotcoco computing mask AP alone (bench/bench_whole_process.py's peers).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))

from bench_whole_process import (  # noqa: E402
    PEER_SCRIPT,
    PEERS,
    WORKLOADS,
    Part,
    PartClock,
    import_part_modules,
    install,
    prepare,
    run_process,
)

PACKAGE = "segcontrast"
PER_IMAGE = "per image: "
PARTS = (
    Part("GT: read and check (GroundTruthSet.from_coco)",
         ("ground_truth:GroundTruthSet.from_coco",)),
    Part("results: read and check", ("api:read_results_for",)),
    Part("per image: decode results (RLE to crops)", ("results_file:ResultsFile.predictions",)),
    Part("per image: decode GT", ("masks:GroundTruth.from_dataset_dict",)),
    Part("per image: semantic (painting, confusion)",
         ("semantic_gt:paint_semantic_gt", "semantic:paint_semantic_from_crops",
          "semantic:confusion_matrix")),
    Part("per image: instance matching", ("image_eval:_InstanceSide.compute",)),
    Part("per image: COCO AP records", ("coco_ap:ApImage.build",)),
    Part("per image: boundary IoU", ("boundary:boundary_iou_pairs",)),
    Part("per image: PQ", ("panoptic:gt_segments", "panoptic:pred_segments",
                           "panoptic:panoptic_stats")),
    Part("per image: the accounting", ("image_variants:account_image",
                                       "fixes:PredList.original",
                                       "image_eval:_InstanceSide.errors")),
    Part("per image: the rest (records, state, worst images, loop)",
         ("accumulator:Accumulator.add_predictions", "score_files:score_results"),
         container=True),
    Part("compute: the accounting (AP of the fixed variants)",
         ("dataset_deltas:accounting_results",)),
    Part("compute: summarize (semantic, instance, COCO AP, PQ)", ("summary:summarize",),
         container=True),
    Part("compute: the rest (merging states)", ("accumulator:Accumulator.compute",),
         container=True),
    Part("save: every output", ("result:EvaluationResult.save",)),
)


def child(gt: str, results: str) -> dict:
    """One run in this process, timed by part."""
    start = time.perf_counter()
    import segcontrast

    segcontrast.evaluate  # noqa: B018  (the evaluator's imports)
    import_part_modules(PACKAGE, PARTS)  # never the training side
    imports = time.perf_counter() - start
    clock = PartClock()
    unmatched = install(clock, PARTS, PACKAGE)
    with tempfile.TemporaryDirectory(prefix="profile_scoring_") as folder:
        start = time.perf_counter()
        result = segcontrast.evaluate(gt, results, workers=1)
        evaluate = time.perf_counter() - start
        start = time.perf_counter()
        result.save(folder)
        save = time.perf_counter() - start
    import resource

    return {"imports": imports, "evaluate": evaluate, "save": save, "seconds": clock.seconds,
            "unmatched": unmatched, "AP": result.metrics["segm"]["AP"],
            "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


OURS = ("import segcontrast, sys, tempfile; "
        "segcontrast.evaluate(sys.argv[1], sys.argv[2], workers=2).save(tempfile.mkdtemp())")


def whole(names: list[str], rounds: int, baseline: str | None) -> None:
    """Fresh processes, interleaved rounds: seconds and peak MB, median (min-max)."""
    import os
    import shutil
    import statistics

    package = str(REPO / "projects" / "SegContrast")
    contenders = {"ours": (package, OURS)}
    if baseline:
        contenders["ours (baseline)"] = (str(Path(baseline) / "projects" / "SegContrast"), OURS)
    for peer, (imports, load) in PEERS.items():
        contenders[peer] = (None, PEER_SCRIPT.format(imports=imports, load=load))
    print("| workload | " + " | ".join(contenders) + " |")
    print("|---|" + "---:|" * len(contenders))
    for name in names:
        w = prepare(WORKLOADS[name])
        runs: dict[str, list] = {c: [] for c in contenders}
        for r in range(rounds):
            order = list(contenders)[r % len(contenders):] + list(contenders)[:r % len(contenders)]
            for c in order:
                path, script = contenders[c]
                scratch = Path(tempfile.mkdtemp(prefix="whole_"))
                env_path = os.environ.get("PYTHONPATH")
                try:
                    if path:
                        os.environ["PYTHONPATH"] = path
                    else:
                        os.environ.pop("PYTHONPATH", None)
                    runs[c].append(run_process([sys.executable, "-c", script, w.gt, w.results],
                                               scratch))
                finally:
                    if env_path is None:
                        os.environ.pop("PYTHONPATH", None)
                    else:
                        os.environ["PYTHONPATH"] = env_path
                    shutil.rmtree(scratch, ignore_errors=True)
                if runs[c][-1].returncode:
                    raise SystemExit(f"{c} on {name} failed: {runs[c][-1].error}")

        def cell(rs: list) -> str:
            s = [r.seconds for r in rs]
            m = [r.peak_mb for r in rs]
            return (f"{statistics.median(s):.2f} s ({min(s):.2f}-{max(s):.2f}), "
                    f"{statistics.median(m):.0f} MB")

        print(f"| {name} | " + " | ".join(cell(runs[c]) for c in contenders) + " |", flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workloads", default="200,5000")
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    parser.add_argument("--whole", action="store_true", help="whole processes, with peers")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--baseline", help="another checkout to run as well (--whole)")
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(*args.child)))
        return 0
    names = args.workloads.split(",")
    if args.whole:
        whole(names, args.rounds, args.baseline)
        return 0
    found = {}
    for name in names:
        w = prepare(WORKLOADS[name])
        proc = subprocess.run([sys.executable, __file__, "--child", w.gt, w.results], cwd=REPO,
                              capture_output=True, text=True)
        if proc.returncode:
            raise SystemExit(proc.stderr[-3000:])
        found[name] = (w, json.loads(proc.stdout.strip().splitlines()[-1]))
    print("| part | " + " | ".join(f"{n}: s (ms/image)" for n in names) + " |")
    print("|---|" + "---:|" * len(names))
    for part in PARTS:
        cells = []
        for name in names:
            w, r = found[name]
            s = r["seconds"].get(part.label, 0.0)
            cell = f"{s:.3f}"
            if part.label.startswith(PER_IMAGE):
                cell += f" ({1000 * s / w.images:.2f})"
            if part.label in r["unmatched"]:
                cell += " NOT FOUND: " + ", ".join(r["unmatched"][part.label])
            cells.append(cell)
        print(f"| {part.label} | " + " | ".join(cells) + " |")
    for key in ("imports", "evaluate", "save", "peak_mb", "AP"):
        print(f"| {key} | " + " | ".join(f"{found[n][1][key]:.3f}" for n in names) + " |")
    per_image = [sum(v for k, v in found[n][1]["seconds"].items() if k.startswith(PER_IMAGE))
                 / found[n][0].images * 1000 for n in names]
    print("| per image in all, ms | " + " | ".join(f"{v:.2f}" for v in per_image) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())

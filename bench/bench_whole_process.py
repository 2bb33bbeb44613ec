#!/usr/bin/env python
"""Scoring a results file as a user runs it: the whole process, ours next to its peers.

Every contender is a fresh process started from here (interpreter start and imports included),
timed from its start to its exit (the last file written), its peak memory taken from
``os.wait4``'s ``ru_maxrss``: the largest resident set of the process or of any descendant it
waited for (a maximum over them, not a sum: --workers forks share the parent's pages):

  * ours: ``OURS_CMD`` (``python -m segcontrast evaluate``) with its default settings (every metric:
    semantic, instance, COCO AP, boundary IoU, PQ, the gap accounting) and every output
    (metrics.json, per_image.csv, plots, worst-image overlays, report.html) into a fresh folder;
  * pycocotools, faster-coco-eval, hotcoco: ``python -c`` of COCO(gt) + loadRes(results) +
    COCOeval segm evaluate/accumulate/summarize, mask AP alone.

Rounds are interleaved (every contender once per round, the order rotating); medians are
reported with min and max. Workloads (generated once, cached under output/bench_workloads/):
"200" (the synthetic files of tests/evaluation/results_files.py), "5000" (the same generator) and
"dense" (1,000 images, up to 100 results per image at scores down to 0.05, as Detectron2's
COCOEvaluator writes them for a Mask R-CNN on COCO: tests/evaluation/dense_results.py).

    python bench/bench_whole_process.py                     # the three workloads + start-up
    python bench/bench_whole_process.py --quick             # smoke run: 1 round, 200 images
    python bench/bench_whole_process.py --scaling           # + ours from 100 to 5,000 images
    python bench/bench_whole_process.py --breakdown         # + where the time goes, in process
    python bench/bench_whole_process.py --write-docs --scaling --breakdown   # make bench
    python bench/bench_whole_process.py --ours-cmd "segcontrast evaluate"    # another command
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import functools
import hashlib
import importlib
import io
import json
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # the workload generators live with the tests
sys.path.insert(0, str(REPO / "bench"))

from bench_evaluator import _machine, _versions, write_docs  # noqa: E402

# Ours, as a user types it. One line to change when the tool becomes `segcontrast evaluate`
# (e.g. ["segcontrast", "evaluate"]); --ours-cmd overrides it for one run.
OURS_CMD = [sys.executable, "-m", "segcontrast", "evaluate"]
# The in-process breakdown loads the tool's script and calls its main().
TOOL_MODULE = "segcontrast.cli.evaluate"  # what `segcontrast evaluate` runs
PACKAGE = "segcontrast"

WORKLOAD_DIR = REPO / "output" / "bench_workloads"
RUNS_DIR = REPO / "output" / "bench_whole_process_runs"
NUM_CLASSES = 10
SEED = 0
# What decides a workload's bytes, per generator: a cached workload made from other sources
# is remade.
_SYNTHETIC_SOURCES = ("tests/evaluation/synthetic.py", "tests/evaluation/results_files.py")
GENERATOR_SOURCES = {"synthetic": _SYNTHETIC_SOURCES,
                     "dense": (*_SYNTHETIC_SOURCES, "tests/evaluation/dense_results.py")}
ROUNDS = 5
SCALING_ROUNDS = 3
SCALING_SIZES = (100, 200, 500, 1000, 2000, 5000)
# "well under a second", taken as at most half of one
STARTUP_TARGET_S = 0.5
STATS = ("AP", "AP50", "AP75", "APs", "APm", "APl")



@contextlib.contextmanager
def _quiet():
    """Silence stdout, also of compiled code that writes to the file descriptor."""
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

@dataclass(frozen=True)
class WorkloadSpec:
    """How a workload is made.

    Attributes:
        name: its name on the command line and in the tables.
        generator: "synthetic" (tests/evaluation/results_files.py), "dense"
            (tests/evaluation/dense_results.py) or "subset" (the first ``images`` of ``parent``).
        images: number of images.
        title: how the tables describe it.
        parent: the workload a subset is cut from.
    """

    name: str
    generator: str
    images: int
    title: str
    parent: str = ""


WORKLOADS = {
    "200": WorkloadSpec("200", "synthetic", 200, "200 images (the bench's synthetic files)"),
    "5000": WorkloadSpec("5000", "synthetic", 5000, "5,000 images (the same generator)"),
    "dense": WorkloadSpec("dense", "dense", 1000,
                          "dense: 1,000 images, up to 100 results per image at scores down to "
                          "0.05 (as Detectron2 writes on COCO)"),
}
STARTUP_WORKLOAD = WorkloadSpec("2", "subset", 2, "2 images", parent="200")


def scaling_spec(images: int) -> WorkloadSpec:
    """The first ``images`` of the 5,000-image workload.

    Each image depends on its index alone, so this is the generator's output for that many.
    """
    if images == WORKLOADS["5000"].images:
        return WORKLOADS["5000"]
    return WorkloadSpec(f"5000_first_{images}", "subset", images, f"{images} images",
                        parent="5000")


@dataclass
class Workload:
    """A workload's files on disk and what they hold."""

    name: str
    title: str
    gt: str
    results: str
    images: int
    gt_objects: int
    results_count: int
    results_mb: float


# ---------------------------------------------------------------------------------------------
# Workloads


def _sources_digest(generator: str) -> str:
    digest = hashlib.sha1()
    for source in GENERATOR_SOURCES.get(generator, ()):
        digest.update((REPO / source).read_bytes())
    return digest.hexdigest()[:16]


def workload_key(spec: WorkloadSpec) -> dict:
    """Everything that decides a workload's files; a cache with another key is remade."""
    key = {"generator": spec.generator, "images": spec.images, "seed": SEED,
           "num_classes": NUM_CLASSES, "sources": _sources_digest(spec.generator)}
    if spec.parent:
        key["parent"] = workload_key(WORKLOADS[spec.parent])
    return key


def cached(folder: Path, key: dict) -> dict | None:
    """The description of a cached workload made with ``key``, or None when it must be made."""
    try:
        meta = json.loads((folder / "workload.json").read_text())
    except (OSError, ValueError):
        return None
    if meta.get("key") != key or not all((folder / f).is_file() for f in ("gt.json",
                                                                          "results.json")):
        return None
    return meta


def _describe(folder: Path, key: dict) -> dict:
    gt = json.loads((folder / "gt.json").read_text())
    results = json.loads((folder / "results.json").read_text())
    return {"key": key, "images": len(gt["images"]), "gt_objects": len(gt["annotations"]),
            "results_count": len(results),
            "results_mb": (folder / "results.json").stat().st_size / 1e6}


def _subset(source: Path, folder: Path, images: int) -> None:
    gt = json.loads((source / "gt.json").read_text())
    keep = {img["id"] for img in sorted(gt["images"], key=lambda img: img["id"])[:images]}
    gt["images"] = [img for img in gt["images"] if img["id"] in keep]
    gt["annotations"] = [a for a in gt["annotations"] if a["image_id"] in keep]
    results = json.loads((source / "results.json").read_text())
    (folder / "gt.json").write_text(json.dumps(gt))
    (folder / "results.json").write_text(json.dumps([r for r in results
                                                     if r["image_id"] in keep]))


def make_workload(name: str) -> None:
    """Write one workload's files (in a process of its own: it imports Detectron2)."""
    spec = WORKLOADS.get(name) or _spec_by_name(name)
    folder = WORKLOAD_DIR / spec.name
    key = workload_key(spec)
    WORKLOAD_DIR.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{spec.name}.", dir=WORKLOAD_DIR))
    try:
        if spec.generator == "subset":
            _subset(prepare(WORKLOADS[spec.parent]).folder, tmp, spec.images)
        else:
            import segcontrast.engine  # noqa: F401  (makes detectron2 importable)

            if spec.generator == "dense":
                from tests.evaluation.dense_results import write_dense_files as write
            else:
                from tests.evaluation.results_files import write_synthetic_files as write
            write(tmp, spec.images, num_classes=NUM_CLASSES, seed=SEED)
        (tmp / "workload.json").write_text(json.dumps(_describe(tmp, key), indent=1))
        shutil.rmtree(folder, ignore_errors=True)
        tmp.rename(folder)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _spec_by_name(name: str) -> WorkloadSpec:
    if name == STARTUP_WORKLOAD.name:
        return STARTUP_WORKLOAD
    if name.startswith("5000_first_"):
        return scaling_spec(int(name.rsplit("_", 1)[1]))
    raise KeyError(f"unknown workload {name!r}")


@dataclass
class _Prepared(Workload):
    folder: Path = field(default=Path())


def prepare(spec: WorkloadSpec) -> _Prepared:
    """The workload's files, made (in a child process) only when the cache is stale."""
    folder = WORKLOAD_DIR / spec.name
    key = workload_key(spec)
    meta = cached(folder, key)
    if meta is None:
        print(f"  making workload {spec.name} ({spec.images} images) in {folder}", flush=True)
        start = time.perf_counter()
        proc = subprocess.run([sys.executable, __file__, "--make-workload", spec.name], cwd=REPO,
                              capture_output=True, text=True)
        if proc.returncode != 0:
            raise SystemExit(f"making workload {spec.name} failed:\n{proc.stderr[-3000:]}")
        meta = cached(folder, key)
        assert meta is not None, f"workload {spec.name} was not written"
        print(f"  made in {time.perf_counter() - start:.0f} s", flush=True)
    return _Prepared(name=spec.name, title=spec.title, gt=str(folder / "gt.json"),
                     results=str(folder / "results.json"), images=meta["images"],
                     gt_objects=meta["gt_objects"], results_count=meta["results_count"],
                     results_mb=meta["results_mb"], folder=folder)


# ---------------------------------------------------------------------------------------------
# Contenders: whole processes


PEER_SCRIPT = """\
import json, sys
{imports}
gt = COCO(sys.argv[1])
dt = gt.{load}(sys.argv[2])
ev = Eval(gt, dt, "segm")
ev.evaluate()
ev.accumulate()
ev.summarize()
print(json.dumps([float(v) * 100 for v in list(ev.stats)[:6]]))
"""
PEERS = {
    "pycocotools": ("from pycocotools.coco import COCO\n"
                    "from pycocotools.cocoeval import COCOeval as Eval", "loadRes"),
    "faster_coco_eval": ("from faster_coco_eval import COCO\n"
                         "from faster_coco_eval import COCOeval_faster as Eval", "loadRes"),
    "hotcoco": ("from hotcoco import COCO\nfrom hotcoco import COCOeval as Eval", "load_res"),
}
CONTENDERS = ("pycocotools", "faster_coco_eval", "hotcoco", "ours")
LABELS = {
    "pycocotools": "pycocotools",
    "faster_coco_eval": "faster-coco-eval",
    "hotcoco": "hotcoco",
    "ours": "SegContrast (default: every metric and output)",
}


def contender_command(name: str, workload: Workload, output: str,
                      ours_cmd: Sequence[str], extra: Sequence[str] = ()) -> list[str]:
    """The command line of one contender on one workload (``output``: ours' fresh folder).

    ``extra``: more arguments of ours (e.g. ``--ap-area box``).
    """
    if name == "ours":
        return [*ours_cmd, "--gt", workload.gt, "--results", workload.results,
                "--output", output, *extra]
    imports, load = PEERS[name]
    return [sys.executable, "-c", PEER_SCRIPT.format(imports=imports, load=load), workload.gt,
            workload.results]


@dataclass
class Run:
    """One process's measurements.

    Wall seconds, peak RSS, CPU seconds (user + system, waited-for descendants included), the
    exit code and, when it printed them, its AP numbers (percent).
    """

    seconds: float
    peak_mb: float
    cpu_seconds: float
    returncode: int
    stats: list[float] | None = None
    error: str = ""


# As on a user's machine: Python may read and write its bytecode cache (pip writes it at
# install; an environment that forbids it would compile every module at every start).
CONTENDER_ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


def warm_up(two: Workload, ours_cmd: Sequence[str]) -> None:
    """Each contender once on the 2-image file, untimed: bytecode cached, files read once."""
    for name in CONTENDERS:
        run_contender(name, two, ours_cmd)


def run_process(cmd: Sequence[str], scratch: Path) -> Run:
    """Start ``cmd`` from the repository root and wait for it; stdout and stderr go to files."""
    out_path, err_path = scratch / "stdout.txt", scratch / "stderr.txt"
    with open(out_path, "wb") as out, open(err_path, "wb") as err:
        start = time.perf_counter()
        proc = subprocess.Popen(list(cmd), cwd=REPO, stdout=out, stderr=err, env=CONTENDER_ENV)
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here, not by Popen
    run = Run(seconds=seconds, peak_mb=usage.ru_maxrss / 1024,
              cpu_seconds=usage.ru_utime + usage.ru_stime, returncode=proc.returncode)
    if run.returncode != 0:
        lines = err_path.read_text(errors="replace").strip().splitlines()
        run.error = lines[-1] if lines else f"exit code {run.returncode}"
    return run


def _peer_stats(scratch: Path) -> list[float] | None:
    lines = (scratch / "stdout.txt").read_text(errors="replace").strip().splitlines()
    with contextlib.suppress(IndexError, ValueError):
        return [float(v) for v in json.loads(lines[-1])]
    return None


def _ours_stats(output: Path) -> list[float] | None:
    with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
        segm = json.loads((output / "metrics.json").read_text())["segm"]
        return [float(segm[k]) for k in STATS]
    return None


def run_contender(name: str, workload: Workload, ours_cmd: Sequence[str],
                  extra: Sequence[str] = ()) -> Run:
    """One timed process of a contender; ours writes into a fresh folder, removed after."""
    RUNS_DIR.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=f"{name}_", dir=RUNS_DIR))
    try:
        output = scratch / "evaluation"
        run = run_process(contender_command(name, workload, str(output), ours_cmd, extra),
                          scratch)
        if run.returncode == 0:
            run.stats = _ours_stats(output) if name == "ours" else _peer_stats(scratch)
        return run
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def rotated(items: Sequence[str], shift: int) -> list[str]:
    """``items`` starting at position ``shift`` (so no contender always goes first)."""
    shift %= max(1, len(items))
    return [*items[shift:], *items[:shift]]


def interleaved(jobs: dict[str, Callable[[], Run]], rounds: int,
                log: Callable[[str], None]) -> dict[str, list[Run]]:
    """Every job once per round, the order rotating; the runs of each."""
    runs: dict[str, list[Run]] = {name: [] for name in jobs}
    for r in range(rounds):
        for name in rotated(list(jobs), r):
            run = jobs[name]()
            runs[name].append(run)
            status = f"{run.seconds:.2f} s, {run.peak_mb:.0f} MB"
            log(f"  round {r + 1}/{rounds}, {name}: "
                + (status if run.returncode == 0 else f"FAILED ({run.error})"))
    return runs


@dataclass
class Summary:
    """Median, min and max of a contender's successful runs."""

    seconds: float
    seconds_min: float
    seconds_max: float
    peak_mb: float
    peak_mb_min: float
    peak_mb_max: float
    cpu_seconds: float
    rounds: int
    stats: list[float] | None = None


def summarize_runs(runs: Sequence[Run]) -> Summary | None:
    """Medians (min, max) over the runs that exited 0; None when none did."""
    done = [r for r in runs if r.returncode == 0]
    if not done:
        return None
    seconds = [r.seconds for r in done]
    peaks = [r.peak_mb for r in done]
    stats = next((r.stats for r in done if r.stats is not None), None)
    return Summary(statistics.median(seconds), min(seconds), max(seconds),
                   statistics.median(peaks), min(peaks), max(peaks),
                   statistics.median(r.cpu_seconds for r in done), len(done), stats)


def _failure(runs: Sequence[Run]) -> str:
    errors = [r.error for r in runs if r.returncode != 0]
    return f"failed: {errors[0]}" if errors else "not run"


# ---------------------------------------------------------------------------------------------
# Verdicts and tables


def _secs(value: float) -> str:
    return f"{value:.2f} s" if value < 10 else f"{value:.1f} s"


def compare_times(ours: float, other: float) -> str:
    """'8.7x slower' / '1.4x faster' of ours against another time."""
    ratio = ours / other
    if ratio > 1:
        return f"{ratio:.1f}x slower" if ratio >= 2 else f"{ratio:.2f}x slower"
    return f"{1 / ratio:.2f}x faster"


def verdict(what: str, ours: Summary | None, other: Summary | None, other_name: str,
            kind: str = "time", required: bool = True) -> str:
    """One target's verdict from measured medians.

    Args:
        what: the workload, as the line starts.
        ours: our summary (None: it failed).
        other: the reference's summary.
        other_name: the reference, as the line names it.
        kind: "time" (no slower than the reference) or "memory" (peak RSS no higher).
        required: False for targets that are reported, not required (the line still says
            whether ours is within).

    Returns:
        e.g. "200 images: ours 14.3 s vs pycocotools 1.65 s: 8.7x slower: NOT MET".
    """
    if ours is None or other is None:
        missing = "ours" if ours is None else other_name
        return f"{what}: {missing} did not run: NO VERDICT"
    if kind == "time":
        met = ours.seconds <= other.seconds
        detail = (f"ours {_secs(ours.seconds)} vs {other_name} {_secs(other.seconds)}: "
                  f"{compare_times(ours.seconds, other.seconds)}")
    else:
        met = ours.peak_mb <= other.peak_mb
        ratio = ours.peak_mb / other.peak_mb
        detail = (f"ours peak {ours.peak_mb:,.0f} MB vs {other_name} {other.peak_mb:,.0f} MB: "
                  + (f"{ratio:.2f}x as much" if ratio > 1 else f"{1 / ratio:.2f}x less"))
    if required:
        outcome = "MET" if met else "NOT MET"
    else:
        outcome = "within (reported)" if met else "outside (reported)"
    return f"{what}: {detail}: {outcome}"


@dataclass(frozen=True)
class Target:
    """A target of the issue, checked against the measured medians."""

    workload: str
    kind: str
    reference: str
    text: str
    required: bool = True


TARGETS = (
    Target("200", "time", "pycocotools", "default tool no slower than pycocotools (AP alone)"),
    Target("5000", "time", "faster_coco_eval",
           "default tool no slower than faster-coco-eval (AP alone)"),
    Target("5000", "memory", "pycocotools", "peak memory no higher than pycocotools'"),
    Target("dense", "time", "faster_coco_eval", "time vs faster-coco-eval", required=False),
    Target("dense", "memory", "pycocotools", "peak memory vs pycocotools'", required=False),
)


def workload_line(w: Workload) -> str:
    return (f"{w.name}: {w.images:,} images of 480x640, {NUM_CLASSES} classes, "
            f"{w.gt_objects:,} GT objects, {w.results_count:,} results "
            f"({w.results_mb:.1f} MB of JSON, compressed RLE with boxes)")


def _cell(summary: Summary | None, runs: Sequence[Run]) -> str:
    if summary is None:
        return _failure(runs)
    return f"{_secs(summary.seconds)} / {summary.peak_mb:,.0f} MB"


# AP, AP50 and AP75 do not depend on the area rule; APs, APm and APl do.
AREA_FREE = 3


def _largest_difference(stats: Sequence[float], ref: Sequence[float], count: int) -> float:
    return max(abs(a - b) for a, b in zip(stats[:count], ref[:count], strict=True))


def ap_agreement(summaries: dict[str, Summary | None], box_stats: list[float] | None) -> str:
    """The largest |AP difference| of each contender to pycocotools, in points.

    Ours by default takes mask areas for APs, APm and APl (Detectron2's rule) where
    pycocotools takes a result's box when the file has one: ours is compared on AP, AP50 and
    AP75 there, and on all six with ``--ap-area box`` (``box_stats``, one untimed run).
    """
    ref = summaries.get("pycocotools")
    if ref is None or ref.stats is None:
        return "no pycocotools numbers to compare with"
    parts = []
    for name, s in summaries.items():
        if name == "pycocotools":
            continue
        if s is None or s.stats is None:
            parts.append(f"{LABELS[name]}: no numbers")
        elif name != "ours":
            parts.append(f"{LABELS[name]} {_largest_difference(s.stats, ref.stats, 6):.1e}")
        else:
            text = (f"SegContrast {_largest_difference(s.stats, ref.stats, AREA_FREE):.1e} "
                    f"over {', '.join(STATS[:AREA_FREE])} (its APs, APm, APl take mask areas, "
                    "Detectron2's rule, where pycocotools takes the results' boxes)")
            if box_stats is not None:
                text += (f" and {_largest_difference(box_stats, ref.stats, 6):.1e} over all six "
                         "with --ap-area box (pycocotools' rule; one more run, untimed)")
            parts.append(text)
    return ", ".join(parts)


def compare_tables(workloads: Sequence[Workload], runs: dict[str, dict[str, list[Run]]],
                   rounds: int, ours_cmd: Sequence[str],
                   box_stats: dict[str, list[float] | None]) -> str:
    """The whole-process tables (summary, details), the verdicts and the workloads.

    ``box_stats``: per workload, ours' six AP numbers with ``--ap-area box``.
    """
    summaries = {w.name: {c: summarize_runs(runs[w.name][c]) for c in runs[w.name]}
                 for w in workloads}
    header = "| workload | " + " | ".join(LABELS[c] for c in CONTENDERS) + \
        " | ours / hotcoco (time) |"
    lines = [header, "|---|" + "---:|" * (len(CONTENDERS) + 1)]
    for w in workloads:
        s = summaries[w.name]
        cells = [_cell(s.get(c), runs[w.name].get(c, [])) for c in CONTENDERS]
        ours, hot = s.get("ours"), s.get("hotcoco")
        ratio = f"{ours.seconds / hot.seconds:.1f}x" if ours and hot else "n/a"
        lines.append(f"| {w.title}: {w.results_count:,} results | " + " | ".join(cells)
                     + f" | {ratio} |")
    lines += ["", "Verdicts (medians):", ""]
    by_name = {w.name: w for w in workloads}
    for t in TARGETS:
        if t.workload not in by_name:
            continue
        s = summaries[t.workload]
        what = f"{by_name[t.workload].images:,} images" if t.workload != "dense" else "dense"
        lines.append(f"- {t.text}: " + verdict(what, s.get("ours"), s.get(t.reference),
                                               LABELS[t.reference], t.kind, t.required))
    lines += ["", "| workload | contender | median s | min to max s | CPU s (user + system) "
              "| peak RSS MB, median (min to max) |", "|---|---|---:|---:|---:|---:|"]
    for w in workloads:
        for c in CONTENDERS:
            s = summaries[w.name].get(c)
            if s is None:
                lines.append(f"| {w.name} | {LABELS[c]} | "
                             f"{_failure(runs[w.name].get(c, []))} | | | |")
                continue
            lines.append(f"| {w.name} | {LABELS[c]} | {s.seconds:.2f} | {s.seconds_min:.2f} to "
                         f"{s.seconds_max:.2f} | {s.cpu_seconds:.2f} | {s.peak_mb:,.0f} "
                         f"({s.peak_mb_min:,.0f} to {s.peak_mb_max:,.0f}) |")
    lines += [""] + [f"- {workload_line(w)}; largest |AP difference| to pycocotools over "
                     f"{', '.join(STATS)} (points): "
                     f"{ap_agreement(summaries[w.name], box_stats.get(w.name))}."
                     for w in workloads]
    lines += ["", (
        f"Each cell: median over {rounds} interleaved round{'s' if rounds > 1 else ''} (every "
        "contender once per round, the order rotating) of a fresh process started from the "
        "shell and waited for: "
        "interpreter start, imports, reading the files, scoring and every file written. "
        f"Ours: `{shlex.join(_shown_cmd(ours_cmd))} --gt GT --results RESULTS --output "
        "NEW_FOLDER` with its defaults (semantic, instance, COCO AP, boundary IoU, PQ, the gap "
        "accounting; metrics.json, per_image.csv, plots, report.html; no overlays, as no "
        "--images is given; --workers = the CPUs available). Every contender ran once untimed "
        "on the 2-image file first, with Python's bytecode cache allowed (as on a user's "
        "machine, where pip writes it at install). Peers: `python -c` of COCO + loadRes + "
        "COCOeval segm evaluate/accumulate/summarize, mask AP alone. Peak RSS: `ru_maxrss` of "
        "`os.wait4`, the largest resident set of the process or of a descendant it waited for "
        "(a maximum, not a sum: the --workers forks share the parent's pages). CPU: user + "
        "system seconds of the process and its waited-for descendants.")]
    return "\n".join(lines)


def _shown_cmd(cmd: Sequence[str]) -> list[str]:
    return ["python" if part == sys.executable else part for part in cmd]


# ---------------------------------------------------------------------------------------------
# Start-up


def startup_jobs(ours_cmd: Sequence[str]) -> dict[str, list[str]]:
    """The start-up rows: name -> command."""
    py = sys.executable
    jobs = {
        "python -c pass (the interpreter alone)": [py, "-c", "pass"],
        f"ours: {shlex.join(_shown_cmd(ours_cmd))} --help": [*ours_cmd, "--help"],
        "ours: a 2-image file, default (every metric and output)": None,
        'python -c "import pycocotools.cocoeval"': [py, "-c", "import pycocotools.cocoeval"],
        'python -c "import hotcoco"': [py, "-c", "import hotcoco"],
    }
    for peer in PEERS:
        jobs[f"{LABELS[peer]}: the 2-image file (AP alone)"] = None
    return jobs


def run_startup(two: Workload, ours_cmd: Sequence[str], rounds: int,
                log: Callable[[str], None]) -> dict[str, list[Run]]:
    jobs: dict[str, Callable[[], Run]] = {}
    for name, cmd in startup_jobs(ours_cmd).items():
        if cmd is not None:
            jobs[name] = functools.partial(_run_plain, cmd)
        elif name.startswith("ours"):
            jobs[name] = functools.partial(run_contender, "ours", two, ours_cmd)
        else:
            peer = next(p for p in PEERS if name.startswith(LABELS[p] + ":"))
            jobs[name] = functools.partial(run_contender, peer, two, ours_cmd)
    return interleaved(jobs, rounds, log)


def _run_plain(cmd: Sequence[str]) -> Run:
    RUNS_DIR.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix="startup_", dir=RUNS_DIR))
    try:
        return run_process(cmd, scratch)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def startup_table(runs: dict[str, list[Run]], rounds: int) -> str:
    lines = ["| start-up | median s | min to max s | peak RSS MB |", "|---|---:|---:|---:|"]
    summaries = {name: summarize_runs(r) for name, r in runs.items()}
    for name, s in summaries.items():
        if s is None:
            lines.append(f"| {name} | {_failure(runs[name])} | | |")
        else:
            lines.append(f"| {name} | {s.seconds:.2f} | {s.seconds_min:.2f} to "
                         f"{s.seconds_max:.2f} | {s.peak_mb:,.0f} |")
    lines += ["", f"Target: `--help` and a 2-image file each well under a second (taken as at "
              f"most {STARTUP_TARGET_S} s, the median of {rounds} rounds):", ""]
    for name, s in summaries.items():
        if name.startswith("ours"):
            if s is None:
                lines.append(f"- {name}: did not run: NO VERDICT")
                continue
            met = s.seconds <= STARTUP_TARGET_S
            lines.append(f"- {name}: {_secs(s.seconds)} vs {STARTUP_TARGET_S} s: "
                         f"{'MET' if met else 'NOT MET'}")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# Scaling


def scaling_table(rows: Sequence[tuple[Workload, Summary | None, list[Run]]]) -> str:
    """Ours from 100 to 5,000 images: time per image and peak memory.

    Also what each extra image costs (the difference to the row above).
    """
    lines = ["| images | results | GT objects | median s (min to max) | CPU s | ms per image | "
             "ms per extra image | peak RSS MB | MB per extra 1,000 images |",
             "|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    previous: tuple[Workload, Summary] | None = None
    for w, s, runs in rows:
        if s is None:
            lines.append(f"| {w.images:,} | {w.results_count:,} | {w.gt_objects:,} | "
                         f"{_failure(runs)} | | | | | |")
            continue
        extra_ms = extra_mb = ""
        if previous is not None and w.images > previous[0].images:
            more = w.images - previous[0].images
            extra_ms = f"{1000 * (s.seconds - previous[1].seconds) / more:.1f}"
            extra_mb = f"{1000 * (s.peak_mb - previous[1].peak_mb) / more:.0f}"
        lines.append(f"| {w.images:,} | {w.results_count:,} | {w.gt_objects:,} | "
                     f"{s.seconds:.2f} ({s.seconds_min:.2f} to {s.seconds_max:.2f}) | "
                     f"{s.cpu_seconds:.1f} | {1000 * s.seconds / w.images:.1f} | {extra_ms} | "
                     f"{s.peak_mb:,.0f} | {extra_mb} |")
        previous = (w, s)
    rounds = max((s.rounds for _, s, _ in rows if s is not None), default=0)
    lines += ["", (
        f"Ours as above (the whole process, default settings and outputs), median of {rounds} "
        f"interleaved round{'s' if rounds > 1 else ''}; the workloads are the first N images of "
        "the 5,000-image one (each image depends on its index alone, so they are what the "
        "generator makes for N). The "
        "fixed cost (interpreter, imports, set-up) is in every row: 'per extra image' is the "
        "difference to the row above.")]
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# In-process breakdown


@dataclass(frozen=True)
class Part:
    """A part of the tool's run and the functions whose time is its.

    Attributes:
        label: the row of the table.
        functions: ``"module_basename:qualname"``, e.g. ``"results_file:ResultsFile.predictions"``
            (the module is found by the last component of its name, wherever it sits in the
            package).
        container: its own time only: parts called inside it count for themselves. A part that
            is not a container takes everything called inside it.
        unless_inside: labels of parts inside which its calls are not its own (they stay with
            that part).
    """

    label: str
    functions: tuple[str, ...]
    container: bool = False
    unless_inside: tuple[str, ...] = ()


OVERLAYS = "outputs: worst-image overlays"
# THE mapping from functions to parts: update it when modules or functions move or are renamed.
# A function that matches nothing is printed as such (never a silent 0).
PARTS = (
    Part("main(): the rest (arguments, settings, logging, output folder)",
         ("evaluate:main",), container=True),
    Part("GT: JSON parse", ("coco_json:read_coco_json",)),
    Part("GT: validation", ("ground_truth:GroundTruthSet.from_coco",), container=True),
    Part("results: JSON parse", ("coco_json:read_json_file",)),
    Part("results: checking", ("results_file:check_results", "results_file:read_results"),
         container=True),
    Part("per image: decode results (RLE to crops)", ("results_file:ResultsFile.predictions",)),
    Part("per image: decode GT (polygons to crops)", ("masks:GroundTruth.from_dataset_dict",),
         unless_inside=(OVERLAYS,)),
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
         ("image_eval:evaluate_image", "accumulator:Accumulator.add_predictions",
          "score_files:score_results"), container=True),
    Part("compute(): the accounting (AP of the fixed variants)",
         ("dataset_deltas:accounting_results",)),
    Part("compute(): summarize (semantic, instance, COCO AP, PQ)", ("summary:summarize",),
         container=True),
    Part("compute(): report table (log)", ("text:format_report",)),
    Part("compute(): the rest (merging states)", ("accumulator:Accumulator.compute",),
         container=True),
    Part("outputs: metrics.json", ("text:write_metrics_json",)),
    Part("outputs: per_image.csv", ("text:write_per_image_csv",)),
    Part("outputs: plots (SVG: per-class IoU, confusion, error types)",
         ("plots:plot_class_iou", "plots:plot_confusion", "plots:plot_error_types")),
    Part(OVERLAYS, ("overlays:plot_overlay", "result:EvaluationResult._write_plots"),
         container=True),
    Part("outputs: report.html", ("html:write_html_report",)),
)


@dataclass
class _Frame:
    part: Part
    inner: float = 0.0  # time of the timed calls inside it


class PartClock:
    """Times calls by part: a part's own time excludes the parts timed inside it.

    Args:
        clock: the time source (``time.perf_counter``; tests give a fake one).
    """

    def __init__(self, clock: Callable[[], float] = time.perf_counter) -> None:
        self._clock = clock
        self._stack: list[_Frame] = []
        self.seconds: dict[str, float] = {}
        self.calls: dict[str, int] = {}

    def _absorbed(self, part: Part) -> bool:
        if self._stack and not self._stack[-1].part.container:
            return True  # inside a part that takes everything called in it
        return any(f.part.label in part.unless_inside for f in self._stack)

    def wrap(self, part: Part, fn: Callable) -> Callable:
        """``fn`` timed as ``part``."""

        @functools.wraps(fn)
        def timed(*args: Any, **kwargs: Any) -> Any:
            if self._absorbed(part):
                return fn(*args, **kwargs)
            frame = _Frame(part)
            self._stack.append(frame)
            start = self._clock()
            try:
                return fn(*args, **kwargs)
            finally:
                elapsed = self._clock() - start
                self._stack.pop()
                label = part.label
                self.seconds[label] = self.seconds.get(label, 0.0) + elapsed - frame.inner
                self.calls[label] = self.calls.get(label, 0) + 1
                if self._stack:
                    self._stack[-1].inner += elapsed

        return timed


def _package_modules(package: str) -> dict[str, list[Any]]:
    """Loaded modules of ``package`` by the last component of their name."""
    found: dict[str, list[Any]] = {}
    for name, module in list(sys.modules.items()):
        if module is not None and (name == package or name.startswith(package + ".")):
            found.setdefault(name.rsplit(".", 1)[-1], []).append(module)
    return found


# The sub-packages `segcontrast evaluate` runs in; the others are the Detectron2 side (torch).
EVALUATION_SIDE = ("cli", "data", "evaluation", "utils")


def import_part_modules(package: str, parts: Iterable[Part]) -> None:
    """Import the evaluation side's modules that the parts name (some are imported lazily).

    Found on disk, not by importing packages to walk them, so that nothing of the Detectron2
    side (and torch) is loaded into the timed process.
    """
    wanted = {f.split(":", 1)[0] for part in parts for f in part.functions}
    base = Path(importlib.import_module(package).__path__[0])
    for path in sorted(base.rglob("*.py")):
        name = path.relative_to(base).with_suffix("").parts
        if len(name) > 1 and name[0] in EVALUATION_SIDE and name[-1] in wanted:
            importlib.import_module(".".join((package, *name)))


@dataclass
class _Found:
    module: Any
    owner: Any  # the module, or the class of a method
    attr: str
    raw: Any  # as the owner holds it (a classmethod object for a classmethod)
    fn: Callable


def find_function(spec: str, modules: dict[str, list[Any]]) -> _Found | None:
    """The function ``"module_basename:qualname"`` names, defined in that module; or None."""
    basename, qualname = spec.split(":", 1)
    *owners, attr = qualname.split(".")
    for module in modules.get(basename, []):
        owner: Any = module
        for name in owners:
            owner = vars(owner).get(name) if hasattr(owner, "__dict__") else None
            if owner is None:
                break
        if owner is None:
            continue
        raw = vars(owner).get(attr)
        fn = raw.__func__ if isinstance(raw, (classmethod, staticmethod)) else raw
        if callable(fn) and getattr(fn, "__module__", None) == module.__name__:
            return _Found(module, owner, attr, raw, fn)
    return None


def unmatched_functions(parts: Iterable[Part], package: str) -> dict[str, list[str]]:
    """Part label -> the functions of it that match nothing loaded (only parts with some)."""
    modules = _package_modules(package)
    missing = {part.label: [f for f in part.functions if find_function(f, modules) is None]
               for part in parts}
    return {label: specs for label, specs in missing.items() if specs}


def install(clock: PartClock, parts: Iterable[Part], package: str) -> dict[str, list[str]]:
    """Put the clock around every function the parts name.

    A module-level function is replaced in every module of the package that holds it (``from
    x import f`` makes copies of the name); a method is replaced on its class.

    Returns:
        Part label -> the functions that matched nothing (only parts with some).
    """
    modules = _package_modules(package)
    everywhere = [m for group in modules.values() for m in group]
    unmatched: dict[str, list[str]] = {}
    for part in parts:
        for spec in part.functions:
            found = find_function(spec, modules)
            if found is None:
                unmatched.setdefault(part.label, []).append(spec)
                continue
            timed = clock.wrap(part, found.fn)
            if found.owner is not found.module:  # a method
                wrapped = type(found.raw)(timed) if found.fn is not found.raw else timed
                setattr(found.owner, found.attr, wrapped)
            else:
                for other in everywhere:
                    if vars(other).get(found.attr) is found.fn:
                        setattr(other, found.attr, timed)
    return unmatched


def breakdown_child(gt: str, results: str) -> dict:
    """Run the tool's main() once in this (fresh) process with the parts timed."""
    start = time.perf_counter()
    main_module = importlib.import_module(TOOL_MODULE)
    import_seconds = time.perf_counter() - start
    start = time.perf_counter()
    import_part_modules(PACKAGE, PARTS)
    # what main() imports as it runs (numpy, pycocotools, the kernels ...), out of the
    # parts' rows here
    lazy_seconds = time.perf_counter() - start
    clock = PartClock()
    unmatched = install(clock, PARTS, PACKAGE)
    main = main_module.main  # the timed one
    with tempfile.TemporaryDirectory(prefix="bench_breakdown_") as folder, _quiet():
        start = time.perf_counter()
        code = main(["--gt", gt, "--results", results, "--output",
                     os.path.join(folder, "evaluation"), "--workers", "1"])
        total = time.perf_counter() - start
    return {"returncode": code, "import_seconds": import_seconds,
            "lazy_import_seconds": lazy_seconds, "total_seconds": total,
            "seconds": clock.seconds, "calls": clock.calls,
            "unmatched": unmatched}


def run_breakdown(workload: Workload) -> dict:
    proc = subprocess.run([sys.executable, __file__, "--breakdown-child", workload.gt,
                           workload.results], cwd=REPO, capture_output=True, text=True)
    if proc.returncode != 0:
        return {"error": (proc.stderr.strip().splitlines() or ["?"])[-1]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def breakdown_table(results: dict[str, dict], workloads: Sequence[Workload]) -> str:
    """Rows: parts; columns: workloads ("seconds (share of main())")."""
    shown = [w for w in workloads if w.name in results]
    lines = ["| part | " + " | ".join(f"{w.name}: s (share)" for w in shown) + " |",
             "|---|" + "---:|" * len(shown)]

    def row(label: str, cells: list[str]) -> None:
        lines.append(f"| {label} | " + " | ".join(cells) + " |")

    errors = {w.name: results[w.name].get("error") for w in shown}
    row("imports: the command's module (it imports the rest as it runs)",
        [f"{results[w.name]['import_seconds']:.2f}" if not errors[w.name] else
         f"failed: {errors[w.name]}" for w in shown])
    row("imports: the modules it runs (numpy, pycocotools, the kernels ...), done "
        "first here",
        [f"{results[w.name]['lazy_import_seconds']:.2f}" if not errors[w.name] else ""
         for w in shown])
    for part in PARTS:
        cells = []
        for w in shown:
            r = results[w.name]
            if errors[w.name]:
                cells.append("")
                continue
            missing = r["unmatched"].get(part.label)
            seconds = r["seconds"].get(part.label, 0.0)
            text = f"{seconds:.3f} ({100 * seconds / r['total_seconds']:.1f}%)"
            if missing:
                text = f"NOT FOUND: {', '.join(missing)}; " + text
            cells.append(text)
        row(part.label, cells)
    row("main() in all", [f"{results[w.name]['total_seconds']:.2f}" if not errors[w.name] else ""
                          for w in shown])
    notes = []
    for w in shown:
        r = results[w.name]
        if errors[w.name]:
            continue
        if r["returncode"] != 0:
            notes.append(f"{w.name}: main() returned {r['returncode']}")
        for label, missing in r["unmatched"].items():
            notes.append(f"{w.name}: '{label}' matched nothing for {', '.join(missing)} "
                         "(update PARTS in bench/bench_whole_process.py)")
    lines += ["", (
        f"The main() of {TOOL_MODULE} (whatever --ours-cmd says) run once "
        "in a fresh process per workload, --workers 1 (so that every "
        "image is scored where it is timed), defaults otherwise, every output written. Each "
        "part's own time: functions are wrapped with a clock (PARTS in the script maps "
        "functions to parts by module basename and name); a part takes what is called inside "
        "it, except the parts marked as containers (main(), GT validation, results checking, "
        "the per-image loop, summarize, evaluate(), overlays), whose row is their time minus "
        "the parts inside. The shares are of main(); the imports come before it.")]
    if notes:
        lines += ["", "Unmatched or failed: " + "; ".join(notes) + "."]
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# Main


def _header(args: argparse.Namespace, load: tuple[float, float, float]) -> str:
    from importlib import metadata

    extra = []
    for dist in ("hotcoco",):
        with contextlib.suppress(metadata.PackageNotFoundError):
            extra.append(f"{dist} {metadata.version(dist)}")
    command = shlex.join(["python", "bench/bench_whole_process.py", *args.argv])
    return (f"`{command}` on {datetime.date.today().isoformat()}, {_machine()} (load average "
            f"{load[0]:.1f} at the start); {', '.join([_versions(), *extra])}.")


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workloads", help="comma-separated, of " + ", ".join(WORKLOADS)
                        + " (default: all; --quick: 200)")
    parser.add_argument("--rounds", type=int, help=f"interleaved rounds (default {ROUNDS}; "
                        "--quick: 1)")
    parser.add_argument("--quick", action="store_true", help="smoke run: 1 round, 200 images")
    parser.add_argument("--no-compare", action="store_true",
                        help="skip the whole-process comparison and the start-up rows")
    parser.add_argument("--scaling", action="store_true",
                        help="ours at 100 to 5,000 images: time per image and peak memory")
    parser.add_argument("--sizes", help="scaling sizes (default "
                        + ",".join(map(str, SCALING_SIZES)) + "; --quick: 100,200)")
    parser.add_argument("--scaling-rounds", type=int,
                        help=f"default {SCALING_ROUNDS} (--quick: 1)")
    parser.add_argument("--breakdown", action="store_true",
                        help="where the time goes: main() in process, per part, per workload")
    parser.add_argument("--ours-cmd", help="our command instead of "
                        f"'{shlex.join(_shown_cmd(OURS_CMD))}' (e.g. 'segcontrast evaluate')")
    parser.add_argument("--write-docs", action="store_true",
                        help="write the tables into docs/BENCHMARKS.md")
    parser.add_argument("--make-workload", help=argparse.SUPPRESS)
    parser.add_argument("--breakdown-child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.argv = list(argv)
    names = (args.workloads or ("200" if args.quick else ",".join(WORKLOADS))).split(",")
    unknown = [n for n in names if n not in WORKLOADS]
    if unknown:
        parser.error(f"--workloads: unknown {', '.join(unknown)} (known: "
                     f"{', '.join(WORKLOADS)})")
    args.workload_names = names
    args.rounds = args.rounds or (1 if args.quick else ROUNDS)
    args.scaling_rounds = args.scaling_rounds or (1 if args.quick else SCALING_ROUNDS)
    args.size_list = [int(s) for s in (args.sizes or ("100,200" if args.quick else ",".join(
        map(str, SCALING_SIZES)))).split(",")]
    if any(n < 1 or n > WORKLOADS["5000"].images for n in args.size_list):
        parser.error("--sizes: between 1 and 5000 images")
    if args.rounds < 1 or args.scaling_rounds < 1:
        parser.error("--rounds and --scaling-rounds: at least 1")
    args.ours = shlex.split(args.ours_cmd) if args.ours_cmd else list(OURS_CMD)
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if args.make_workload:
        make_workload(args.make_workload)
        return 0
    if args.breakdown_child:
        print(json.dumps(breakdown_child(*args.breakdown_child)))
        return 0

    def log(text: str) -> None:
        print(text, flush=True)

    header = _header(args, os.getloadavg())
    sections: list[tuple[str, str]] = []
    workloads = [prepare(WORKLOADS[n]) for n in args.workload_names]
    warm_up(prepare(STARTUP_WORKLOAD), args.ours)
    if not args.no_compare:
        runs: dict[str, dict[str, list[Run]]] = {}
        box_stats: dict[str, list[float] | None] = {}
        for w in workloads:
            log(f"{w.name}: {workload_line(w)}")
            jobs = {c: functools.partial(run_contender, c, w, args.ours) for c in CONTENDERS}
            runs[w.name] = interleaved(jobs, args.rounds, log)
            box_stats[w.name] = run_contender("ours", w, args.ours, ("--ap-area", "box")).stats
        two = prepare(STARTUP_WORKLOAD)
        log("start-up")
        startup = run_startup(two, args.ours, args.rounds, log)
        sections.append(("whole_process", compare_tables(workloads, runs, args.rounds, args.ours,
                                                         box_stats)
                         + "\n\n" + startup_table(startup, args.rounds)))
    if args.scaling:
        sized = [prepare(scaling_spec(n)) for n in sorted(set(args.size_list))]
        log("scaling: " + ", ".join(str(w.images) for w in sized) + " images")
        jobs = {w.name: functools.partial(run_contender, "ours", w, args.ours) for w in sized}
        runs_by_size = interleaved(jobs, args.scaling_rounds, log)
        rows = [(w, summarize_runs(runs_by_size[w.name]), runs_by_size[w.name]) for w in sized]
        sections.append(("whole_process_scaling", scaling_table(rows)))
    if args.breakdown:
        results = {}
        for w in workloads:
            log(f"breakdown: {w.name}")
            results[w.name] = run_breakdown(w)
        sections.append(("whole_process_breakdown", breakdown_table(results, workloads)))
    for marker, table in sections:
        body = f"{header}\n\n{table}"
        print(f"\n[{marker}]\n{body}")
        if args.write_docs:
            write_docs(marker, body)
    return 0


if __name__ == "__main__":
    sys.exit(main())

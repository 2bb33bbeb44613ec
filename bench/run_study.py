#!/usr/bin/env python
"""The loss study (`make study`): which mask loss, measured, with seeds and confidence intervals.

Trains Mask R-CNN with the stock BCE head, the pos-weighted BCE head (auto weight, batch and
instance scope) and the focal head (gamma 1, 2, 3) on `shapes` and `dsb2018`, several seeds
each; sweeps the mask threshold of every final model on val; and writes docs/STUDY.md with
tables (mean +- std over seeds, bootstrap 95% confidence intervals over images, paired
differences to BCE), training curves and bar charts with error bars.

The second question (bench/semantic_study.py): a semantic model (SemanticSegmentor) trained with
CE, pos-weighted CE (batch "auto", dataset frequencies) and focal loss (gamma 1, 2, 3), where the
pixel imbalance is that of whole images; and the semantic model against the instance model (the
BCE Mask R-CNN runs) on the same val images.

    python bench/run_study.py                      # everything (hours on 2 CPU cores)
    python bench/run_study.py --datasets shapes --seeds 0 --iters shapes=100   # a quick look
    python bench/run_study.py --report-only        # rebuild docs/STUDY.md from finished runs
    python bench/run_study.py --questions semantic # only the second question (and the BCE runs)

Runs are resumable: a finished run (its metrics.json exists) is skipped, an interrupted one is
resumed from its last checkpoint. Every run's log is in output/study/<dataset>/<variant>/seed<k>.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path

import numpy as np
from segcontrast.evaluation import catalog
from segcontrast.evaluation.metrics.bootstrap import bootstrap_mean_ci, paired_seed_image_ci

REPO = Path(__file__).resolve().parents[1]
DOC = REPO / "docs" / "STUDY.md"
FIGURES = REPO / "docs" / "study"

if str(Path(__file__).resolve().parent) not in sys.path:  # also when loaded from its path
    sys.path.insert(0, str(Path(__file__).resolve().parent))
import semantic_study  # noqa: E402
from semantic_study import (  # noqa: E402
    BOUNDARY_FILE,
    INSTANCE_MODEL,
    SEMANTIC_VARIANTS,
    Variant,
)

VARIANTS = (
    Variant("bce", "BCE (stock)", "mask_rcnn_bce"),
    Variant("posbce_batch", "pos-weighted BCE, auto, batch", "mask_rcnn_posbce",
            ("MODEL.ROI_MASK_HEAD.POS_WEIGHT_SCOPE", "batch")),
    Variant("posbce_instance", "pos-weighted BCE, auto, instance", "mask_rcnn_posbce",
            ("MODEL.ROI_MASK_HEAD.POS_WEIGHT_SCOPE", "instance")),
    Variant("focal_g1", "focal, gamma 1", "mask_rcnn_focal",
            ("MODEL.ROI_MASK_HEAD.FOCAL_GAMMA", "1.0")),
    Variant("focal_g2", "focal, gamma 2", "mask_rcnn_focal",
            ("MODEL.ROI_MASK_HEAD.FOCAL_GAMMA", "2.0")),
    Variant("focal_g3", "focal, gamma 3", "mask_rcnn_focal",
            ("MODEL.ROI_MASK_HEAD.FOCAL_GAMMA", "3.0")),
    Variant("focal_g2_tv", "focal, gamma 2, torchvision's alpha 0.25, weight 1",
            "mask_rcnn_focal", ("MODEL.ROI_MASK_HEAD.FOCAL_GAMMA", "2.0",
                                "MODEL.ROI_MASK_HEAD.FOCAL_ALPHA", "0.25",
                                "MODEL.ROI_MASK_HEAD.LOSS_WEIGHT", "1.0")),
)
DATASETS = ("shapes", "dsb2018")
DEFAULT_ITERS = {"shapes": 300, "dsb2018": 400}
# (group, key, label): the metrics of the tables and bar charts (the catalog's labels).
METRICS = tuple((group, key, catalog.label(group, key)) for group, key in catalog.STUDY_ROWS)
# Per-image columns of per_image.csv that get bootstrap confidence intervals.
PER_IMAGE = (("semantic_mIoU", "semantic mIoU per image"),
             ("instance_mIoU", "instance mIoU per image"))
BOOTSTRAP_SAMPLES = 2000
# A threshold other than 0.5 worth a sentence in the conclusions, in mask AP points.
THRESHOLD_GAIN_WORTH_NOTING = 1.0


def run_dir(output: Path, dataset: str, variant: Variant, seed: int) -> Path:
    return output / dataset / variant.name / f"seed{seed}"


def _metrics_file(folder: Path, dataset: str) -> Path:
    return folder / "inference" / f"{dataset}_val" / "metrics.json"


def _train_command(folder: Path, dataset: str, variant: Variant, seed: int, iters: int) -> list:
    resume = (folder / "last_checkpoint").is_file()
    return [
        sys.executable, "tools/train_net.py", "--config",
        f"configs/{dataset}/{variant.leaf}.yaml", "--resume" if resume else "--overwrite",
        *variant.overrides, "SEED", str(seed), "SOLVER.MAX_ITER", str(iters),
        "SOLVER.STEPS", f"({int(iters * 0.8)},)", "SOLVER.CHECKPOINT_PERIOD", str(iters // 4),
        "TEST.EVAL_PERIOD", "0", "OUTPUT_DIR", str(folder),
    ]


def _sweep_command(folder: Path, dataset: str, variant: Variant) -> list:
    return [
        sys.executable, "tools/tune_mask_threshold.py", "--config",
        f"configs/{dataset}/{variant.leaf}.yaml", "--weights", str(folder / "model_final.pth"),
        "--metric", "segm/AP",
        "--output", str(folder / "sweep"), *variant.overrides,
    ]


def _run_logged(cmd: list, log: Path, env: dict) -> float:
    """Run ``cmd`` with its output appended to ``log``; return the CPU seconds it used.

    The CPU time is the child's own (``os.wait4``'s resource usage), so runs side by side, or a
    busy machine, do not change it.
    """
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "a") as f:
        f.write("\n$ " + " ".join(cmd) + "\n")
        f.flush()
        process = subprocess.Popen(cmd, cwd=REPO, stdout=f, stderr=subprocess.STDOUT, env=env)
        _, status, usage = os.wait4(process.pid, 0)
        process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise SystemExit(f"study: `{' '.join(cmd)}` failed (exit {process.returncode}); "
                         f"see {log}")
    return usage.ru_utime + usage.ru_stime


def _is_semantic(variant) -> bool:
    return variant in SEMANTIC_VARIANTS


def _needs_boundary(variant) -> bool:
    # The semantic models, and the instance model they are compared with.
    return _is_semantic(variant) or variant.name == INSTANCE_MODEL


def _job_done(output: Path, dataset: str, variant, seed: int) -> bool:
    folder = run_dir(output, dataset, variant, seed)
    done = _metrics_file(folder, dataset).is_file()
    if not _is_semantic(variant):
        done = done and (folder / "sweep" / "threshold_sweep.json").is_file()
    if _needs_boundary(variant):
        done = done and (folder / BOUNDARY_FILE).is_file()
    return done


def _add_minutes(folder: Path, minutes: float) -> None:
    """Keep each run's CPU minutes (its processes' CPU time), summed over its resumptions."""
    path = folder / "study_minutes.json"
    spent = json.loads(path.read_text())["cpu_minutes"] if path.is_file() else 0.0
    path.write_text(json.dumps({"cpu_minutes": spent + minutes}))


def _run_job(args: argparse.Namespace, dataset: str, variant: Variant, seed: int) -> float:
    """Train (or resume) one run, sweep its threshold, score its label maps; return minutes."""
    folder = run_dir(args.output, dataset, variant, seed)
    t0 = time.time()
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
    cpu = 0.0
    if not _metrics_file(folder, dataset).is_file():
        cpu += _run_logged(_train_command(folder, dataset, variant, seed, args.iters[dataset]),
                           folder / "study.log", env)
    if not _is_semantic(variant) and not (folder / "sweep" / "threshold_sweep.json").is_file():
        cpu += _run_logged(_sweep_command(folder, dataset, variant), folder / "study.log", env)
    if _needs_boundary(variant) and not (folder / BOUNDARY_FILE).is_file():
        cpu += _run_logged(semantic_study.boundary_command(folder, dataset, variant.leaf,
                                                           variant.overrides),
                           folder / "study.log", env)
    _add_minutes(folder, cpu / 60)
    return (time.time() - t0) / 60


def _study_variants(questions: list[str]) -> list:
    variants = list(VARIANTS) if "mask" in questions else [
        v for v in VARIANTS if v.name == INSTANCE_MODEL]
    return variants + (list(SEMANTIC_VARIANTS) if "semantic" in questions else [])


def run_all(args: argparse.Namespace) -> None:
    # Seed by seed: a study stopped half-way still has every variant with some seeds.
    jobs = [(d, v, s) for s in args.seeds for d in args.datasets
            for v in _study_variants(args.questions)]
    todo = [job for job in jobs if not _job_done(args.output, *job)]
    print(f"study: {len(jobs)} runs, {len(jobs) - len(todo)} done earlier; {args.jobs} at a "
          f"time, {args.threads} torch thread(s) each", flush=True)
    started, minutes = time.time(), []
    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        futures = {pool.submit(_run_job, args, *job): job for job in todo}
        for done, future in enumerate(as_completed(futures), start=1):
            dataset, variant, seed = futures[future]
            minutes.append(future.result())
            elapsed = (time.time() - started) / 60
            eta = elapsed / done * (len(todo) - done)
            print(f"[{done}/{len(todo)}] {dataset} {variant.name} seed {seed}: "
                  f"{minutes[-1]:.1f} min; elapsed {elapsed:.0f} min, ETA {eta:.0f} min",
                  flush=True)


def _load_run(folder: Path, dataset: str) -> dict | None:
    path = _metrics_file(folder, dataset)
    if not path.is_file():
        return None
    run = {"metrics": json.loads(path.read_text())}
    with open(path.parent / "per_image.csv") as f:
        run["per_image"] = {row["image_id"]: row for row in csv.DictReader(f)}
    sweep = folder / "sweep" / "threshold_sweep.json"
    run["sweep"] = json.loads(sweep.read_text()) if sweep.is_file() else None
    curves = []
    if (folder / "metrics.json").is_file():
        for line in (folder / "metrics.json").read_text().splitlines():
            try:
                curves.append(json.loads(line))
            except ValueError:
                continue
    run["curves"] = curves
    return run


def _value(metrics: dict, group: str, key: str) -> float:
    value = metrics.get(group, {}).get(key)
    return float("nan") if value is None else float(value)


def _bootstrap_ci(values: np.ndarray, rng: np.random.Generator) -> tuple[float, float]:
    return bootstrap_mean_ci(values, rng, BOOTSTRAP_SAMPLES)


def _paired_seed_image_ci(variant: np.ndarray, base: np.ndarray,
                          rng: np.random.Generator) -> tuple[float, float]:
    """95% CI of the mean per-image difference, resampling seeds *and* images.

    See :func:`segcontrast.evaluation.metrics.bootstrap.paired_seed_image_ci`.

    Args:
        variant: (images, seeds) per-image scores of a variant.
        base: (images, seeds') per-image scores of the baseline, same images in the same order.
        rng: the random generator.
    """
    return paired_seed_image_ci(variant, base, rng, BOOTSTRAP_SAMPLES)


def _mean_pos_weight(runs: list[dict]) -> float:
    values = [row["mask_rcnn/pos_weight"] for run in runs for row in run["curves"]
              if row.get("mask_rcnn/pos_weight") is not None]
    return float(np.mean(values)) if values else float("nan")


def _per_image_matrix(runs: list[dict], column: str) -> np.ndarray:
    """(images, seeds) of a per-image column, images in a fixed order."""
    ids = sorted(runs[0]["per_image"], key=lambda k: (len(k), k))
    return np.array([[float(r["per_image"][i][column]) for r in runs] for i in ids])


def _fmt(mean: float, std: float) -> str:
    return "n/a" if not np.isfinite(mean) else f"{mean:.1f} ± {std:.1f}"


def _plot_bars(dataset: str, table: dict, variants: list[Variant]) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shown = [m for m in METRICS if m[0] != "contrast"]
    fig, axes = plt.subplots(1, len(shown), figsize=(3.2 * len(shown), 3.6))
    for ax, (group, key, label) in zip(axes, shown, strict=True):
        means = [table[v.name][(group, key)][0] for v in variants]
        stds = [table[v.name][(group, key)][1] for v in variants]
        ax.bar(range(len(variants)), means, yerr=stds, capsize=3,
               color=[f"C{i}" for i in range(len(variants))])
        ax.set_xticks(range(len(variants)), [v.name for v in variants], rotation=60,
                      ha="right", fontsize=7)
        ax.set_title(label, fontsize=9)
        ax.grid(axis="y", alpha=0.3)
    fig.suptitle(f"{dataset}: mean ± std over seeds")
    fig.tight_layout()
    name = f"{dataset}_metrics.png"
    fig.savefig(FIGURES / name, dpi=100)
    plt.close(fig)
    return name


def _plot_curves(dataset: str, runs: dict[str, list[dict]], variants: list[Variant]) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = (("loss_mask", "mask loss (each loss on its own scale)"),
              ("loss_cls", "classification loss"),
              ("mask_rcnn/accuracy", "mask accuracy on training ROIs"))
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 3.6))
    for ax, (key, title) in zip(axes, panels, strict=True):
        for i, variant in enumerate(variants):
            series: dict[int, list[float]] = {}
            for run in runs[variant.name]:
                for row in run["curves"]:
                    if key in row and row[key] is not None:
                        series.setdefault(int(row["iteration"]), []).append(float(row[key]))
            if series:
                xs = sorted(series)
                ax.plot(xs, [np.mean(series[x]) for x in xs], color=f"C{i}", label=variant.name,
                        markersize=3)
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("iteration")
        ax.grid(alpha=0.3)
    if axes[0].get_legend_handles_labels()[0]:  # runs without curves (a test's) draw none
        axes[0].legend(fontsize=7)
    fig.suptitle(f"{dataset}: training curves (mean over seeds)")
    fig.tight_layout()
    name = f"{dataset}_curves.png"
    fig.savefig(FIGURES / name, dpi=100)
    plt.close(fig)
    return name


def _dataset_section(dataset: str, runs: dict[str, list[dict]], rng,
                     findings: dict[str, set]) -> list[str]:
    """The report section of one dataset.

    Fills `findings`: "better"/"worse" -> labels of variants whose per-image mIoU differs from
    BCE's beyond noise, "threshold" -> labels whose best mask threshold gains mask AP.
    """
    variants = [v for v in VARIANTS if runs.get(v.name)]
    table = {
        v.name: {
            (g, k): (np.nanmean(vals) if np.isfinite(vals).any() else float("nan"),
                     np.nanstd(vals) if np.isfinite(vals).any() else float("nan"))
            for g, k, _ in METRICS
            for vals in [np.array([_value(r["metrics"], g, k) for r in runs[v.name]])]
        }
        for v in variants
    }
    seeds = sorted({len(runs[v.name]) for v in variants})
    lines = [f"## {dataset}", "",
             f"Seeds per variant: {', '.join(map(str, seeds))}. Scores on `{dataset}_val` in "
             "percent (counts for merged and split), mean ± std over seeds, mask threshold 0.5.",
             "",
             "| variant | " + " | ".join(label for _, _, label in METRICS) + " |",
             "|---|" + "---:|" * len(METRICS)]
    for v in variants:
        cells = [_fmt(*table[v.name][(g, k)]) for g, k, _ in METRICS]
        lines.append(f"| {v.label} | " + " | ".join(cells) + " |")
    lines += ["", f"![{dataset} metrics](study/{_plot_bars(dataset, table, variants)})", ""]

    weights = {v.label: _mean_pos_weight(runs[v.name]) for v in variants}
    weights = {k: w for k, w in weights.items() if np.isfinite(w)}
    if weights:
        lines += ["The pos-weight the pos-weighted heads actually used (mean of "
                  "`mask_rcnn/pos_weight` over the logged iterations): "
                  + "; ".join(f"{k}: {w:.2f}" for k, w in weights.items())
                  + ". The auto weight is num_neg/num_pos of the mask targets, which Mask "
                  "R-CNN crops to each proposal box; an object that fills more than half of its "
                  "box gives a ratio below 1, clamped to 1. A weight of 1 is the stock BCE loss, "
                  "so such a run differs from BCE only by run-to-run noise, which makes it a "
                  "useful yardstick for that noise.",
                  ""]
    lines += ["Per-image scores with bootstrap 95% confidence intervals over val images "
              f"(averaged over seeds, {BOOTSTRAP_SAMPLES} resamples), and the paired difference "
              "to BCE on the same images, whose interval resamples the seeds of both sides as "
              "well as the images (so that it includes how much a run changes with its seed):",
              "",
              "| variant | " + " | ".join(f"{label} [95% CI]" for _, label in PER_IMAGE)
              + " | " + " | ".join(f"Δ {label} vs BCE [95% CI]" for _, label in PER_IMAGE)
              + " |", "|---|" + "---:|" * (2 * len(PER_IMAGE))]
    verdicts = []
    for v in variants:
        cells, deltas = [], []
        for column, label in PER_IMAGE:
            values = _per_image_matrix(runs[v.name], column).mean(axis=1)
            low, high = _bootstrap_ci(values, rng)
            cells.append(f"{np.nanmean(values):.1f} [{low:.1f}, {high:.1f}]")
            if v.name == "bce" or "bce" not in runs:
                deltas.append("—")
                continue
            base = _per_image_matrix(runs["bce"], column)
            diff = values - base.mean(axis=1)
            dlow, dhigh = _paired_seed_image_ci(_per_image_matrix(runs[v.name], column), base,
                                                rng)
            deltas.append(f"{np.nanmean(diff):+.1f} [{dlow:+.1f}, {dhigh:+.1f}]")
            if np.isfinite(dlow) and (dlow > 0 or dhigh < 0):
                word = "better" if dlow > 0 else "worse"
                note = ""
                if abs(weights.get(v.label, float("nan")) - 1.0) < 1e-3:
                    note = (" — but this head's weight was 1, its loss BCE's own: the gap is "
                            "run-to-run noise, and a warning that gaps of this size prove nothing")
                else:
                    findings[word].add(v.label)
                verdicts.append(f"{v.label}: {label} {word} than BCE "
                                f"({np.nanmean(diff):+.1f}, 95% CI [{dlow:+.1f}, {dhigh:+.1f}])"
                                + note)
        lines.append(f"| {v.label} | " + " | ".join(cells + deltas) + " |")
    lines += ["", f"![{dataset} training curves](study/{_plot_curves(dataset, runs, variants)})",
              ""]

    threshold_notes = []
    grid = next((r["sweep"]["thresholds"] for v in variants for r in runs[v.name]
                 if r["sweep"]), [])
    lines += ["Mask threshold sweep on val with `tools/tune_mask_threshold.py` (thresholds "
              + ", ".join(f"{t:g}" for t in grid)
              + "; mask AP picks the best threshold; mean over seeds):",
              "", "| variant | best threshold(s) | mask AP at 0.5 | at best | gain |",
              "|---|---|---:|---:|---:|"]
    for v in variants:
        sweeps = [r["sweep"] for r in runs[v.name] if r["sweep"]]
        if not sweeps:
            continue
        at_half = [s["results"][s["thresholds"].index(0.5)]["segm"]["AP"] for s in sweeps]
        at_best = [max(r["segm"]["AP"] for r in s["results"]) for s in sweeps]
        best = ", ".join(f"{s['best_threshold']:.2f}" for s in sweeps)
        if any(s["best_threshold"] in (min(s["thresholds"]), max(s["thresholds"]))
               for s in sweeps):
            best += " (edge of the grid)"
        gain = np.mean(at_best) - np.mean(at_half)
        lines.append(f"| {v.label} | {best} | {np.mean(at_half):.1f} | {np.mean(at_best):.1f} | "
                     f"{gain:+.1f} |")
        if gain >= THRESHOLD_GAIN_WORTH_NOTING:
            findings["threshold"].add(v.label)
            threshold_notes.append(
                f"{v.label}: 0.5 is the wrong mask threshold for this loss; the sweep's best, "
                f"{best}, recovers {gain:+.1f} mask AP (from {np.mean(at_half):.1f} to "
                f"{np.mean(at_best):.1f}). Tune it with `tools/tune_mask_threshold.py` before "
                "comparing such a model.")
    if not threshold_notes:
        threshold_notes.append(f"No variant gains {THRESHOLD_GAIN_WORTH_NOTING:.0f} mask AP point "
                               "or more from a threshold other than 0.5 on this budget.")
    lines += ["", "**What the numbers say** (a difference is called one only where the paired "
              "95% CI, seeds and images resampled, excludes 0):", ""]
    lines += [f"- {v}" for v in verdicts] or [
        "- No variant differs from BCE on per-image semantic or instance mIoU beyond the "
        "confidence intervals: on this data and budget, the choice of mask loss makes no "
        "measurable difference there."]
    lines += [f"- {note}" for note in threshold_notes]
    return lines + [""]


def _cpu_minutes(args: argparse.Namespace, variants) -> tuple[int, float]:
    """(runs, CPU minutes) the finished runs of these variants report."""
    runs, minutes = 0, 0.0
    for dataset in args.datasets:
        for variant in variants:
            for seed in args.seeds:
                path = run_dir(args.output, dataset, variant, seed) / "study_minutes.json"
                if path.is_file():
                    runs += 1
                    minutes += json.loads(path.read_text())["cpu_minutes"]
    return runs, minutes


def _runs_with_boundary(args: argparse.Namespace, dataset: str, variant) -> list[dict]:
    """The finished runs of a variant, each with its ``semantic_boundary.json`` (or None)."""
    runs = []
    for seed in args.seeds:
        folder = run_dir(args.output, dataset, variant, seed)
        run = _load_run(folder, dataset)
        if run is not None:
            run["boundary"] = semantic_study.load_boundary(folder)
            runs.append(run)
    return runs


def _semantic_report(args: argparse.Namespace, rng) -> tuple[list[str], list[str]]:
    """The second question: (its "In short" lines, its sections)."""
    summary, sections = [], []
    bce = next(v for v in VARIANTS if v.name == INSTANCE_MODEL)
    for dataset in args.datasets:
        runs = {v.name: _runs_with_boundary(args, dataset, v) for v in SEMANTIC_VARIANTS}
        runs = {name: loaded for name, loaded in runs.items() if loaded}
        if not runs:
            continue
        instance = _runs_with_boundary(args, dataset, bce)
        findings = {"verdicts": {}, "pos_weight": "", "versus": ""}
        sections += semantic_study.semantic_section(
            dataset, runs, instance or None, rng, bootstrap_ci=_bootstrap_ci,
            paired_ci=_paired_seed_image_ci, figures=FIGURES, findings=findings)
        words = findings["verdicts"]
        parts = [f"{word.capitalize()} than CE on per-image semantic mIoU: "
                 + "; ".join(label for label, w in words.items() if w == word)
                 for word in ("better", "worse") if word in words.values()]
        same = [label for label, w in words.items() if w == "no difference"]
        if same:
            parts.append("No difference from CE beyond run-to-run noise: " + "; ".join(same))
        line = f"- **{dataset}, semantic model** — " + (". ".join(parts) + ". " if parts else "")
        summary.append(line + findings["pos_weight"].replace("**", "") + " "
                       + findings["versus"])
    return summary, sections


def write_report(args: argparse.Namespace) -> None:
    FIGURES.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    import torch

    semantic_runs, semantic_minutes = _cpu_minutes(args, SEMANTIC_VARIANTS)
    lines = [
        "# The loss study: which mask loss, and which kind of model?",
        "",
        "Written by `make study` (`python bench/run_study.py`); every number and plot below comes",
        "from the runs under `output/study/`. Rebuild this page from finished runs with",
        "`python bench/run_study.py --report-only`.",
        "",
        "Two questions: which of the source's pixel losses to give Mask R-CNN's mask head (the "
        "first part), and, where the pixel imbalance those losses were written for is real (whole "
        "images, not Mask R-CNN's box crops), which loss to give a semantic model, and what a "
        "semantic model gives against an instance model on the same images (the second part, "
        "the sections \"semantic model\").",
        "",
        f"- Machine: {os.cpu_count()} CPU cores ({platform.processor() or platform.machine()}), "
        f"no GPU; torch {torch.__version__}; {time.strftime('%Y-%m-%d')}.",
        f"- Budget: {', '.join(f'{d} {args.iters[d]} iterations' for d in args.datasets)} per "
        "run (the tiny ResNet-18-GN Mask R-CNN of `configs/Base-Tiny-R18-GN.yaml`, from scratch),",
        f"  seeds {', '.join(map(str, args.seeds))}; {args.jobs} runs at a time with "
        f"{args.threads} torch thread(s) each; evaluation on val at the end of each run.",
        "- Variants: BCE (stock head); pos-weighted BCE with `POS_WEIGHT auto` "
        "(num_neg/num_pos, clamped to [1, 20]) over the batch or per instance; focal with "
        "gamma 1, 2, 3 as the shipped focal configs set it (alpha 0.5, `LOSS_WEIGHT` 4); and "
        "focal with torchvision's alpha 0.25 and weight 1.",
        "- Second part: Detectron2's `SemanticSegmentor` with the same tiny ResNet-18-GN FPN "
        "and a semantic FPN head (`configs/<dataset>/semantic_*.yaml`), the same iterations, "
        "seeds and evaluation; heads: CE (stock `SemSegFPNHead`), pos-weighted CE "
        "(`PosWeightedSemSegFPNHead`: `POS_WEIGHT auto`, num_background/num_foreground of the "
        "batch, and `frequency`, per-class weights from the training set's pixel counts, both "
        "clamped to [1, 20]), focal (`FocalSemSegFPNHead`, gamma 1, 2, 3, no alpha). The instance "
        "model it is compared with is the BCE Mask R-CNN of the first part. CPU budget: "
        + (f"{semantic_runs} semantic runs took {semantic_minutes:.0f} CPU-minutes "
           f"({semantic_minutes / max(semantic_runs, 1):.1f} per run: training, evaluation and "
           "the label-map step)." if semantic_runs else "not measured yet."),
        "- Small budgets favour whatever learns fastest, not what is best at convergence; "
        "the conclusions below are about this budget.",
        "",
    ]
    summary, sections = ["## In short", ""], []
    for dataset in args.datasets:
        runs = {}
        for variant in [v for v in _study_variants(args.questions) if not _is_semantic(v)]:
            loaded = [_load_run(run_dir(args.output, dataset, variant, s), dataset)
                      for s in args.seeds]
            loaded = [r for r in loaded if r is not None]
            if loaded:
                runs[variant.name] = loaded
        if not runs:
            sections += [f"## {dataset}", "", "(no finished runs)", ""]
            continue
        findings = {"better": set(), "worse": set(), "threshold": set()}
        sections += _dataset_section(dataset, runs, rng, findings)
        labels = [v.label for v in VARIANTS if v.name in runs and v.name != "bce"]
        same = [label for label in labels
                if label not in findings["better"] | findings["worse"]]
        parts = [f"{word.capitalize()} than BCE on per-image semantic or instance mIoU: "
                 + "; ".join(label for label in labels if label in findings[word])
                 for word in ("better", "worse") if findings[word]]
        if same:
            parts.append("No difference from BCE beyond run-to-run noise: " + "; ".join(same))
        if findings["threshold"]:
            parts.append(f"A mask threshold other than 0.5 gains "
                         f"{THRESHOLD_GAIN_WORTH_NOTING:g} mask AP or more: "
                         + "; ".join(label for label in labels
                                     if label in findings["threshold"]))
        if not parts:
            parts.append("BCE only (the instance model of the second part): nothing to compare")
        summary.append(f"- **{dataset}** — " + ". ".join(parts) + ".")
    semantic_summary, semantic_sections = _semantic_report(args, rng)
    summary += semantic_summary
    summary += ["", "Details, the threshold sweeps and the plots per dataset below.", ""]
    DOC.parent.mkdir(parents=True, exist_ok=True)
    DOC.write_text("\n".join(lines + summary + sections + semantic_sections))
    print(f"study: wrote {DOC}")


def _iters(values: list[str]) -> dict[str, int]:
    iters = dict(DEFAULT_ITERS)
    for item in values:
        name, _, number = item.partition("=")
        if name not in DATASETS or not number.isdigit():
            raise SystemExit(f"--iters {item!r}: expected DATASET=N with DATASET in {DATASETS}")
        iters[name] = int(number)
    return iters


def main() -> int:
    global DOC, FIGURES
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=DATASETS)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--iters", nargs="*", default=[], metavar="DATASET=N",
                        help=f"iterations per run (default {DEFAULT_ITERS})")
    parser.add_argument("--output", type=Path, default=REPO / "output" / "study")
    parser.add_argument("--jobs", type=int, default=2, help="runs at a time")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per run")
    parser.add_argument("--report-only", action="store_true",
                        help="only rebuild docs/STUDY.md from finished runs")
    parser.add_argument("--questions", nargs="+", default=["mask", "semantic"],
                        choices=["mask", "semantic"],
                        help="mask: the mask losses; semantic: the semantic model (its "
                        "comparison also needs the BCE Mask R-CNN runs, which it then runs)")
    parser.add_argument("--doc", type=Path, default=DOC,
                        help="the report to write (its figures go to study/ next to it)")
    args = parser.parse_args()
    args.iters = _iters(args.iters)
    DOC, FIGURES = args.doc.resolve(), args.doc.resolve().parent / "study"
    if not args.report_only:
        run_all(args)
    write_report(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())

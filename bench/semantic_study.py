"""The study's second question: which pixel loss for a semantic model; semantic vs instance model.

Part of `make study`, driven by bench/run_study.py.

A semantic model (Detectron2's ``SemanticSegmentor``, ``configs/<dataset>/semantic_*.yaml``) is
trained with CE, pos-weighted CE ("auto": num_background / num_foreground of the batch;
"frequency": per-class weights from the training set's pixel counts) and focal loss (gamma 1, 2,
3). Each finished run (and each BCE Mask R-CNN run of the first question, the instance model)
gets ``semantic_boundary.json``: per val image, the boundary intersections and unions of its
semantic label map against the ground-truth map
(:mod:`segcontrast.evaluation.metrics.semantic_boundary`), and its ground-truth pixel counts.

    python bench/semantic_study.py boundary --config C --weights W --dataset shapes_val \
        --output RUN/semantic_boundary.json [KEY VALUE ...]
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from segcontrast.evaluation import catalog

BOUNDARY_FILE = "semantic_boundary.json"
BASELINE = "sem_ce"
# The instance model of the comparison: the first question's stock Mask R-CNN runs.
INSTANCE_MODEL = "bce"


@dataclass(frozen=True)
class Variant:
    """One loss setting of the study: a leaf config plus overrides."""

    name: str
    label: str
    leaf: str
    overrides: tuple[str, ...] = ()


SEMANTIC_VARIANTS = (
    Variant("sem_ce", "CE (stock)", "semantic_ce"),
    Variant("sem_posce_auto", "pos-weighted CE, auto (batch)", "semantic_posce",
                    ("MODEL.SEM_SEG_HEAD.POS_WEIGHT", "auto")),
    Variant("sem_posce_freq", "pos-weighted CE, dataset frequencies", "semantic_posce",
                    ("MODEL.SEM_SEG_HEAD.POS_WEIGHT", "frequency")),
    Variant("sem_focal_g1", "focal, gamma 1", "semantic_focal",
                    ("MODEL.SEM_SEG_HEAD.FOCAL_GAMMA", "1.0")),
    Variant("sem_focal_g2", "focal, gamma 2", "semantic_focal",
                    ("MODEL.SEM_SEG_HEAD.FOCAL_GAMMA", "2.0")),
    Variant("sem_focal_g3", "focal, gamma 3", "semantic_focal",
                    ("MODEL.SEM_SEG_HEAD.FOCAL_GAMMA", "3.0")),
)
POS_WEIGHTED = ("sem_posce_auto", "sem_posce_freq")


def boundary_command(folder: Path, dataset: str, leaf: str, overrides: tuple[str, ...]) -> list:
    """The command that writes a finished run's ``semantic_boundary.json``."""
    return [
        sys.executable, "bench/semantic_study.py", "boundary", "--config",
        f"configs/{dataset}/{leaf}.yaml", "--weights", str(folder / "model_final.pth"),
        "--dataset", f"{dataset}_val", "--output", str(folder / BOUNDARY_FILE), *overrides,
    ]


# --- the boundary step (runs in its own process) ----------------------------------------------


def write_boundary_file(config: str, weights: str, dataset: str, output: str,
                        opts: list[str]) -> None:
    """Predict every image of ``dataset``; write its label maps' boundary counts to ``output``.

    The label map is the model's ``sem_seg`` argmax, or its confident instances painted (as
    ``tools/predict.py --semantic-png`` and the evaluator paint them).
    """
    import segcontrast.engine  # noqa: F401  (makes detectron2 usable; registers the heads)
    from detectron2.data import DatasetCatalog
    from segcontrast.config import load_config
    from segcontrast.data.semantic_gt import IGNORE_LABEL, semantic_gt_from_record
    from segcontrast.datasets import register_builtin_datasets
    from segcontrast.engine.predictor import Predictor
    from segcontrast.evaluation.metrics.boundary import boundary_dilation
    from segcontrast.evaluation.metrics.semantic import confusion_matrix, paint_semantic_prediction
    from segcontrast.evaluation.metrics.semantic_boundary import semantic_boundary_counts
    from segcontrast.utils import atomic_write

    cfg = load_config(config, opts)
    register_builtin_datasets()
    predictor = Predictor(cfg, weights)
    sc = cfg.TEST.SEGCONTRAST
    records = DatasetCatalog.get(dataset)
    num_classes = cfg.MODEL.SEM_SEG_HEAD.NUM_CLASSES - 1
    if cfg.MODEL.META_ARCHITECTURE != "SemanticSegmentor":
        num_classes = cfg.MODEL.ROI_HEADS.NUM_CLASSES
    images, confusion = {}, np.zeros((num_classes + 1, num_classes + 1), np.int64)
    for record in records:
        image, outputs = predictor.predict_file(record["file_name"])
        if "sem_seg" in outputs:
            pred = outputs["sem_seg"].argmax(dim=0).numpy().astype(np.uint8)
        else:
            instances = outputs["instances"]
            pred = paint_semantic_prediction(instances[instances.scores >= sc.SCORE_THRESHOLD],
                                             image.shape[:2], sc.MASK_THRESHOLD)
        gt = semantic_gt_from_record(record, num_classes)
        dilation = boundary_dilation(*gt.shape, sc.BOUNDARY_DILATION_RATIO)
        inter, union = semantic_boundary_counts(gt, pred, num_classes + 1, dilation)
        confusion += confusion_matrix(gt, pred, num_classes + 1)
        pixels = np.bincount(gt[gt != IGNORE_LABEL].ravel(), minlength=num_classes + 1)
        images[str(record["image_id"])] = {"inter": inter.tolist(), "union": union.tolist(),
                                           "gt_pixels": pixels[: num_classes + 1].tolist()}
    payload = {"dataset": dataset, "config": config, "weights": weights,
               "boundary_dilation_ratio": sc.BOUNDARY_DILATION_RATIO,
               "num_labels": num_classes + 1, "confusion": confusion.tolist(), "images": images}
    Path(output).parent.mkdir(parents=True, exist_ok=True)
    atomic_write(output, lambda f: json.dump(payload, f), mode="w")
    print(f"semantic_study: {len(images)} images of {dataset} -> {output}")


# --- the report --------------------------------------------------------------------------------


def load_boundary(folder: Path) -> dict | None:
    path = folder / BOUNDARY_FILE
    return json.loads(path.read_text()) if path.is_file() else None


def _boundary_miou(inter, union) -> float:
    inter, union = np.asarray(inter, np.float64), np.asarray(union, np.float64)
    things = np.where(union[1:] > 0, 100 * inter[1:] / np.maximum(union[1:], 1), np.nan)
    return float(np.nanmean(things)) if np.isfinite(things).any() else float("nan")


def run_boundary_miou(run: dict) -> float:
    """Dataset-level boundary IoU of one run: pooled over its images, mean over thing labels."""
    images = run["boundary"]["images"].values()
    inter = np.sum([i["inter"] for i in images], axis=0)
    union = np.sum([i["union"] for i in images], axis=0)
    return _boundary_miou(inter, union)


def _image_ids(runs: list[dict]) -> list[str]:
    return sorted(runs[0]["per_image"], key=lambda k: (len(k), k))


def per_image(runs: list[dict], column: str) -> np.ndarray:
    """(images, seeds): a per_image.csv column, or "boundary_mIoU" from the boundary files."""
    ids = _image_ids(runs)
    if column == "boundary_mIoU":
        return np.array([[_boundary_miou(r["boundary"]["images"][i]["inter"],
                                         r["boundary"]["images"][i]["union"]) for r in runs]
                         for i in ids])
    return np.array([[float(r["per_image"][i][column] or "nan") for r in runs] for i in ids])


def label_maps_agree(run: dict) -> bool:
    """Whether the boundary step's label maps give the evaluator's semantic mIoU (to 0.01).

    Both come from the same weights and the same resizing; a disagreement means the boundary
    file is stale (e.g. of other weights).
    """
    conf = np.asarray(run["boundary"]["confusion"], np.float64)
    tp = np.diag(conf)
    union = conf.sum(0) + conf.sum(1) - tp
    iou = np.where(union > 0, 100 * tp / np.maximum(union, 1), np.nan)[1:]
    miou = float(np.nanmean(iou)) if np.isfinite(iou).any() else float("nan")
    reported = run["metrics"]["semantic"]["mIoU"]
    return bool(np.isclose(miou, reported, atol=0.01, equal_nan=True))


def mean_pos_weight(runs: list[dict]) -> float:
    values = [row["sem_seg/pos_weight"] for run in runs for row in run["curves"]
              if row.get("sem_seg/pos_weight") is not None]
    return float(np.mean(values)) if values else float("nan")


def _over_seeds(values: list[float]) -> tuple[float, float]:
    arr = np.array(values, np.float64)
    if not np.isfinite(arr).any():
        return float("nan"), float("nan")
    return float(np.nanmean(arr)), float(np.nanstd(arr))


def _fmt(pair: tuple[float, float], digits: int = 1) -> str:
    mean, std = pair
    return "n/a" if not np.isfinite(mean) else f"{mean:.{digits}f} ± {std:.{digits}f}"


def imbalance(runs: list[dict]) -> dict:
    """Foreground share of the val ground truth: pooled, and of the median image."""
    images = runs[0]["boundary"]["images"].values()
    pixels = np.array([i["gt_pixels"] for i in images], np.float64)
    totals = pixels.sum(axis=1)
    shares = np.where(totals > 0, pixels[:, 1:].sum(axis=1) / np.maximum(totals, 1), np.nan)
    pooled = pixels[:, 1:].sum() / pixels.sum()
    return {"pooled": 100 * pooled, "median": 100 * float(np.nanmedian(shares)),
            "p10": 100 * float(np.nanpercentile(shares, 10)),
            "pos_weight": (1 - pooled) / pooled if pooled > 0 else float("inf")}


def _plot(dataset: str, figures: Path, variants: list, runs: dict, instance: list | None) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [v.name for v in variants] + (["Mask R-CNN (BCE)"] if instance else [])
    groups = [runs[v.name] for v in variants] + ([instance] if instance else [])
    fig, axes = plt.subplots(1, 3, figsize=(15, 3.8))
    for ax, (title, value) in zip(axes[:2], (
            (catalog.label("semantic", "mIoU"), lambda r: r["metrics"]["semantic"]["mIoU"]),
            ("semantic boundary IoU", run_boundary_miou)), strict=True):
        stats = [_over_seeds([value(r) for r in g]) for g in groups]
        ax.bar(range(len(names)), [s[0] for s in stats], yerr=[s[1] for s in stats], capsize=3,
               color=[f"C{i}" for i in range(len(names))])
        ax.set_xticks(range(len(names)), names, rotation=60, ha="right", fontsize=7)
        ax.set_title(title, fontsize=9)
        ax.grid(axis="y", alpha=0.3)
    ax = axes[2]
    for i, variant in enumerate(variants):
        series: dict[int, list[float]] = {}
        for run in runs[variant.name]:
            for row in run["curves"]:
                if row.get("loss_sem_seg") is not None:
                    series.setdefault(int(row["iteration"]), []).append(row["loss_sem_seg"])
        if series:
            xs = sorted(series)
            ax.plot(xs, [np.mean(series[x]) for x in xs], color=f"C{i}", label=variant.name)
    ax.set_title("semantic loss (each on its own scale)", fontsize=9)
    ax.set_xlabel("iteration")
    ax.set_yscale("log")
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7)
    fig.suptitle(f"{dataset}: semantic models, mean ± std over seeds")
    fig.tight_layout()
    name = f"{dataset}_semantic.png"
    figures.mkdir(parents=True, exist_ok=True)
    fig.savefig(figures / name, dpi=100)
    plt.close(fig)
    return name


def _ci_cell(values: np.ndarray, bootstrap_ci: Callable, rng) -> str:
    low, high = bootstrap_ci(values, rng)
    return f"{np.nanmean(values):.1f} [{low:.1f}, {high:.1f}]"


def _delta(variant: np.ndarray, base: np.ndarray, paired_ci: Callable, rng) -> tuple:
    """Mean per-image difference and its paired (seeds and images) 95% CI."""
    keep = np.isfinite(variant).all(axis=1) & np.isfinite(base).all(axis=1)
    diff = float(np.mean(variant[keep].mean(axis=1) - base[keep].mean(axis=1))) if keep.any() \
        else float("nan")
    low, high = paired_ci(variant, base, rng)
    return diff, low, high


def _word(low: float, high: float) -> str:
    if not np.isfinite(low):
        return "undetermined"
    return "better" if low > 0 else "worse" if high < 0 else "no difference"


PER_IMAGE = (("semantic_mIoU", "semantic mIoU per image"),
             ("boundary_mIoU", "boundary IoU per image"))


def semantic_section(dataset: str, runs: dict[str, list[dict]], instance: list[dict] | None,
                     rng, *, bootstrap_ci: Callable, paired_ci: Callable, figures: Path,
                     findings: dict) -> list[str]:
    """The report section of the second question on one dataset.

    Args:
        dataset: the dataset name.
        runs: semantic variant name -> its finished runs (``metrics``, ``per_image``,
            ``curves``, ``boundary``).
        instance: the instance model's runs (BCE Mask R-CNN), or None.
        rng: the random generator of the bootstrap.
        bootstrap_ci: ``(values, rng) -> (low, high)``, the study's image bootstrap.
        paired_ci: ``(variant, base, rng) -> (low, high)``, the study's seeds-and-images one.
        figures: where the plot goes.
        findings: filled with "verdicts" (label -> word for semantic mIoU per image),
            "pos_weight" (a sentence) and "versus" (a sentence).

    Returns:
        Markdown lines.
    """
    variants = [v for v in SEMANTIC_VARIANTS if runs.get(v.name)]
    runs = {v.name: [r for r in runs[v.name] if r.get("boundary")] for v in variants}
    variants = [v for v in variants if runs[v.name]]
    if not variants:
        return [f"## {dataset}: semantic model", "", "(no finished semantic runs)", ""]
    first = runs[variants[0].name]
    classes = first[0]["metrics"].get("class_names", [])
    share = imbalance(first)
    seeds = sorted({len(runs[v.name]) for v in variants})
    lines = [
        f"## {dataset}: semantic model, which pixel loss?", "",
        f"How imbalanced the pixels are (ground truth of `{dataset}_val`): foreground is "
        f"{share['pooled']:.0f}% of all pixels (num_background / num_foreground = "
        f"{share['pos_weight']:.1f}), {share['median']:.0f}% of the median image, "
        f"under {share['p10']:.0f}% in a tenth of the images.", "",
        f"Seeds per variant: {', '.join(map(str, seeds))}. `SemanticSegmentor` "
        f"(`configs/{dataset}/semantic_*.yaml`); semantic scores on `{dataset}_val` in percent, "
        "mean ± std over seeds. Boundary IoU: of the semantic map against the ground-truth map, "
        "per class, pooled over the images "
        "(`segcontrast.evaluation.metrics.semantic_boundary`, the band "
        "of the instance boundary IoU). pos_weight: the mean of `sem_seg/pos_weight` over the "
        "logged iterations (for \"frequency\", the mean weight of a batch's foreground pixels).",
        "",
        "| variant | semantic mIoU | " + " | ".join(f"IoU {c}" for c in classes)
        + " | boundary IoU | pos_weight used |",
        "|---|---:|" + "---:|" * len(classes) + "---:|---:|",
    ]
    for v in variants:
        group = runs[v.name]
        cells = [_fmt(_over_seeds([r["metrics"]["semantic"]["mIoU"] for r in group]))]
        cells += [_fmt(_over_seeds([r["metrics"]["semantic"].get(f"IoU-{c}", float("nan"))
                                    for r in group])) for c in classes]
        cells.append(_fmt(_over_seeds([run_boundary_miou(r) for r in group])))
        weight = mean_pos_weight(group)
        cells.append(f"{weight:.2f}" if np.isfinite(weight) else "—")
        lines.append(f"| {v.label} | " + " | ".join(cells) + " |")
    lines += ["", f"![{dataset} semantic models](study/"
              f"{_plot(dataset, figures, variants, runs, instance)})", "",
              "Per-image scores with bootstrap 95% confidence intervals over val images (averaged "
              "over seeds), and the paired difference to CE on the same images (seeds and images "
              "resampled):", "",
              "| variant | " + " | ".join(f"{label} [95% CI]" for _, label in PER_IMAGE) + " | "
              + " | ".join(f"Δ {label} vs CE [95% CI]" for _, label in PER_IMAGE) + " |",
              "|---|" + "---:|" * (2 * len(PER_IMAGE))]
    verdicts, deltas = [], {}
    base = runs.get(BASELINE)
    for v in variants:
        cells, diffs = [], []
        for column, label in PER_IMAGE:
            matrix = per_image(runs[v.name], column)
            cells.append(_ci_cell(matrix.mean(axis=1), bootstrap_ci, rng))
            if v.name == BASELINE or not base:
                diffs.append("—")
                continue
            diff, low, high = _delta(matrix, per_image(base, column), paired_ci, rng)
            deltas[(v.name, column)] = (diff, low, high)
            diffs.append(f"{diff:+.1f} [{low:+.1f}, {high:+.1f}]")
            word = _word(low, high)
            if word in ("better", "worse"):
                verdicts.append(f"{v.label}: {label} {word} than CE ({diff:+.1f}, 95% CI "
                                f"[{low:+.1f}, {high:+.1f}])")
            if column == "semantic_mIoU":
                findings["verdicts"][v.label] = word
        lines.append(f"| {v.label} | " + " | ".join(cells + diffs) + " |")
    stale = [v.label for v in variants if not all(label_maps_agree(r) for r in runs[v.name])]
    if stale:
        lines += ["", "Warning: the boundary files of " + "; ".join(stale) + " give another "
                  "semantic mIoU than the evaluator's: delete them and rerun the study."]
    lines += ["", "**What the numbers say** (a difference is called one only where the paired "
              "95% CI excludes 0):", ""]
    lines += [f"- {v}" for v in verdicts] or [
        "- No semantic loss differs from CE on per-image semantic mIoU or boundary IoU beyond "
        "the confidence intervals: on this data and budget, no difference."]
    lines += ["", _pos_weight_sentence(dataset, share, runs, deltas, findings), ""]
    lines += _versus_lines(dataset, runs.get(BASELINE), instance, rng, bootstrap_ci, paired_ci,
                           findings)
    return lines + [""]


def _pos_weight_sentence(dataset: str, share: dict, runs: dict, deltas: dict,
                         findings: dict) -> str:
    parts = []
    for name in POS_WEIGHTED:
        if (name, "semantic_mIoU") not in deltas:
            continue
        label = next(v.label for v in SEMANTIC_VARIANTS if v.name == name)
        diff, low, high = deltas[(name, "semantic_mIoU")]
        bdiff, blow, bhigh = deltas.get((name, "boundary_mIoU"), (np.nan,) * 3)
        word = _word(low, high)
        verb = {"better": "helps", "worse": "hurts", "no difference": "makes no difference",
                "undetermined": "cannot be judged"}[word]
        parts.append(f"{label} (pos_weight {mean_pos_weight(runs[name]):.1f}) {verb}: "
                     f"{diff:+.1f} semantic mIoU per image [{low:+.1f}, {high:+.1f}], "
                     f"{bdiff:+.1f} boundary IoU [{blow:+.1f}, {bhigh:+.1f}]")
    if not parts:
        sentence = f"**Does the source's pos_weight help on {dataset}?** Not measured (no runs)."
    else:
        sentence = (f"**Does the source's pos_weight help where the imbalance is real?** On "
                    f"{dataset}, whole images are {share['median']:.0f}% foreground at the median, "
                    "so the weight is the pos_weight in parentheses, not the 1 it stays at "
                    "inside Mask R-CNN's box crops (first part). Against plain CE: "
                    + "; ".join(parts) + ".")
    findings["pos_weight"] = sentence
    return sentence


def _versus_lines(dataset: str, semantic: list[dict] | None, instance: list[dict] | None, rng,
                  bootstrap_ci: Callable, paired_ci: Callable, findings: dict) -> list[str]:
    title = [f"### {dataset}: semantic model or instance model?", ""]
    if not semantic or not instance:
        findings["versus"] = ""
        return title + ["(needs the CE semantic runs and the BCE Mask R-CNN runs)", ""]
    ids = set(_image_ids(semantic)) & set(_image_ids(instance))
    instance = [r for r in instance if r.get("boundary")]
    if not instance or len(ids) != len(_image_ids(semantic)):
        findings["versus"] = ""
        return title + ["(the two models' runs do not cover the same val images)", ""]
    rows = (("semantic model (`SemanticSegmentor`, CE)", semantic),
            ("instance model (Mask R-CNN, BCE), instances painted", instance))
    lines = title + [
        "The same val images; the instance model's semantic map is its confident instances "
        "painted as labels (the evaluator's rule). Mean ± std over seeds; per-image columns with "
        "bootstrap 95% CIs.", "",
        f"| model | {catalog.label('semantic', 'mIoU')} | "
        f"{catalog.label('semantic', 'mIoU_per_image')} [95% CI] | boundary IoU | "
        f"{catalog.label('instance', 'mIoU')} | {catalog.label('contrast', 'merged')} | "
        f"{catalog.label('contrast', 'split')} |", "|---|---:|---:|---:|---:|---:|---:|"]
    for label, group in rows:
        has_instances = "instance" in group[0]["metrics"]
        cells = [_fmt(_over_seeds([r["metrics"]["semantic"]["mIoU"] for r in group])),
                 _ci_cell(per_image(group, "semantic_mIoU").mean(axis=1), bootstrap_ci, rng),
                 _fmt(_over_seeds([run_boundary_miou(r) for r in group]))]
        if has_instances:
            cells += [_fmt(_over_seeds([r["metrics"]["instance"]["mIoU"] for r in group])),
                      _fmt(_over_seeds([r["metrics"]["contrast"]["merged"] for r in group]), 0),
                      _fmt(_over_seeds([r["metrics"]["contrast"]["split"] for r in group]), 0)]
        else:
            cells += ["— (no instances)"] * 3
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    diff, low, high = _delta(per_image(semantic, "semantic_mIoU"),
                             per_image(instance, "semantic_mIoU"), paired_ci, rng)
    bdiff, blow, bhigh = _delta(per_image(semantic, "boundary_mIoU"),
                                per_image(instance, "boundary_mIoU"), paired_ci, rng)
    word = {"better": "higher", "worse": "lower", "no difference": "no different",
            "undetermined": "undetermined"}[_word(low, high)]
    bword = {"better": "higher", "worse": "lower", "no difference": "no different",
             "undetermined": "undetermined"}[_word(blow, bhigh)]
    inst = _over_seeds([r["metrics"]["instance"]["mIoU"] for r in instance])
    merged = _over_seeds([r["metrics"]["contrast"]["merged"] for r in instance])
    split = _over_seeds([r["metrics"]["contrast"]["split"] for r in instance])
    sentence = (f"On {dataset}, the semantic model's per-image semantic mIoU is {word} than the "
                f"instance model's painted one ({diff:+.1f}, 95% CI [{low:+.1f}, {high:+.1f}]; "
                f"boundary IoU {bword}: {bdiff:+.1f} [{blow:+.1f}, {bhigh:+.1f}]). What the "
                f"instance model adds is the objects: instance mIoU {inst[0]:.1f}, with "
                f"{merged[0]:.0f} predictions merging objects and {split[0]:.0f} objects split "
                "on the val set, none of which a label map can show.")
    findings["versus"] = sentence
    return lines + ["", f"**What the numbers say:** {sentence}", ""]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    boundary = sub.add_parser("boundary", help="write a run's semantic_boundary.json")
    boundary.add_argument("--config", required=True)
    boundary.add_argument("--weights", required=True)
    boundary.add_argument("--dataset", required=True)
    boundary.add_argument("--output", required=True)
    boundary.add_argument("opts", nargs=argparse.REMAINDER)
    args = parser.parse_args()
    write_boundary_file(args.config, args.weights, args.dataset, args.output, args.opts)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The study's second question (bench/semantic_study.py via bench/run_study.py) on fabricated
finished runs: its verdicts follow the numbers, it says whether pos_weight helps, it compares the
semantic and the instance model, and --report-only rebuilds the page from the runs' files."""

import csv
import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
CLASSES = ["circle", "square"]


@pytest.fixture(scope="module")
def study():
    spec = importlib.util.spec_from_file_location("run_study", REPO / "bench" / "run_study.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["run_study"] = module
    try:
        spec.loader.exec_module(module)
        module.BOOTSTRAP_SAMPLES = 400  # these verdicts are clear-cut; a faster bootstrap will do
        yield module
    finally:
        sys.modules.pop("run_study", None)


def _boundary(per_image_boundary: np.ndarray, miou: float) -> dict:
    """A boundary file whose per-image boundary IoU is the given one (both classes alike)."""
    images = {}
    for i, value in enumerate(per_image_boundary):
        union = 1000
        inter = int(round(value * 10))
        images[str(i)] = {"inter": [0, inter, inter], "union": [0, union, union],
                          "gt_pixels": [800, 100, 100]}
    # A confusion matrix whose thing mIoU is `miou` (what the evaluator reported): each class
    # has 1000 true positives and misses the rest to background.
    fn = 1000 * (100 / miou - 1)
    confusion = [[10**6, 0, 0], [fn, 1000, 0], [fn, 0, 1000]]
    return {"images": images, "confusion": confusion, "num_labels": 3}


def _run(semantic: np.ndarray, boundary: np.ndarray, *, pos_weight=None, instances=False,
         miou=None) -> dict:
    miou = float(np.mean(semantic)) if miou is None else miou
    metrics = {"semantic": {"mIoU": miou, "IoU-circle": miou, "IoU-square": miou},
               "class_names": CLASSES}
    if instances:
        metrics["instance"] = {"mIoU": miou - 15}
        metrics["contrast"] = {"merged": 12, "split": 3}
    row = {"iteration": 9, "loss_sem_seg": 0.4}
    if pos_weight is not None:
        row["sem_seg/pos_weight"] = pos_weight
    per_image = {str(i): {"image_id": str(i), "semantic_mIoU": str(v)}
                 for i, v in enumerate(semantic)}
    return {"metrics": metrics, "per_image": per_image, "curves": [row],
            "boundary": _boundary(boundary, miou), "sweep": None}


def _section(study, runs, instance, tmp_path):
    findings = {"verdicts": {}, "pos_weight": "", "versus": ""}
    text = "\n".join(study.semantic_study.semantic_section(
        "toy", runs, instance, np.random.default_rng(0), bootstrap_ci=study._bootstrap_ci,
        paired_ci=study._paired_seed_image_ci, figures=tmp_path, findings=findings))
    return text, findings


def test_a_pos_weight_that_helps_is_said_to_help(study, tmp_path):
    rng = np.random.default_rng(0)
    images = rng.uniform(50, 70, 40)
    edges = rng.uniform(30, 50, 40)

    def noisy(shift=0.0, **kw):
        return [_run(images + shift + rng.normal(0, 0.5, 40), edges + shift / 2
                     + rng.normal(0, 0.5, 40), **kw) for _ in range(3)]

    runs = {"sem_ce": noisy(), "sem_posce_auto": noisy(6.0, pos_weight=4.2),
            "sem_focal_g2": noisy()}
    instance = [_run(images - 5 + rng.normal(0, 0.5, 40), edges - 5 + rng.normal(0, 0.5, 40),
                     instances=True) for _ in range(3)]
    text, findings = _section(study, runs, instance, tmp_path)
    assert findings["verdicts"] == {"pos-weighted CE, auto (batch)": "better",
                                    "focal, gamma 2": "no difference"}
    assert "pos-weighted CE, auto (batch) (pos_weight 4.2) helps: +6.0" in findings["pos_weight"]
    assert "whole images are 20% foreground at the median" in text
    assert "pos-weighted CE, auto (batch): semantic mIoU per image better than CE" in text
    assert "focal, gamma 2: semantic mIoU" not in text
    assert "| pos-weighted CE, auto (batch) |" in text and "| 4.20 |" in text
    assert "the semantic model's per-image semantic mIoU is higher than the instance model's" \
        in findings["versus"]
    assert "12 predictions merging objects and 3 objects split" in findings["versus"]
    assert "— (no instances)" in text
    assert "Warning" not in text
    assert (tmp_path / "toy_semantic.png").stat().st_size > 0


def test_no_difference_is_said_plainly(study, tmp_path):
    rng = np.random.default_rng(1)
    images = rng.uniform(50, 70, 30)
    runs = {name: [_run(images + rng.normal(0, 3.0, 30), images - 20 + rng.normal(0, 3.0, 30),
                        pos_weight=4.0 if "posce" in name else None) for _ in range(3)]
            for name in ("sem_ce", "sem_posce_auto", "sem_posce_freq", "sem_focal_g1")}
    text, findings = _section(study, runs, None, tmp_path)
    assert set(findings["verdicts"].values()) == {"no difference"}
    assert "on this data and budget, no difference" in text
    assert findings["pos_weight"].count("makes no difference") == 2
    assert "needs the CE semantic runs and the BCE Mask R-CNN runs" in text


def test_a_stale_boundary_file_is_flagged(study, tmp_path):
    images = np.linspace(50, 70, 10)
    stale = _run(images, images)
    stale["metrics"]["semantic"]["mIoU"] += 5.0
    text, _ = _section(study, {"sem_ce": [_run(images, images), stale]}, None, tmp_path)
    assert "Warning: the boundary files of CE (stock)" in text


def test_jobs_of_the_second_question(study, tmp_path):
    names = [v.name for v in study._study_variants(["semantic"])]
    assert names == ["bce", "sem_ce", "sem_posce_auto", "sem_posce_freq", "sem_focal_g1",
                     "sem_focal_g2", "sem_focal_g3"]
    sem = study.SEMANTIC_VARIANTS[2]
    folder = study.run_dir(tmp_path, "shapes", sem, 0)
    (folder / "inference" / "shapes_val").mkdir(parents=True)
    (folder / "inference" / "shapes_val" / "metrics.json").write_text("{}")
    assert not study._job_done(tmp_path, "shapes", sem, 0)  # no boundary file yet
    (folder / "semantic_boundary.json").write_text("{}")
    assert study._job_done(tmp_path, "shapes", sem, 0)  # no threshold sweep for it
    command = study._train_command(folder, "shapes", sem, 0, 30)
    assert "configs/shapes/semantic_posce.yaml" in command
    assert command[command.index("MODEL.SEM_SEG_HEAD.POS_WEIGHT") + 1] == "frequency"
    boundary = study.semantic_study.boundary_command(folder, "shapes", sem.leaf, sem.overrides)
    assert boundary[1:3] == ["bench/semantic_study.py", "boundary"]
    assert boundary[-2:] == ["MODEL.SEM_SEG_HEAD.POS_WEIGHT", "frequency"]


def _write_run(folder: Path, run: dict, dataset: str = "shapes") -> None:
    out = folder / "inference" / f"{dataset}_val"
    out.mkdir(parents=True)
    (out / "metrics.json").write_text(json.dumps(run["metrics"]))
    with open(out / "per_image.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["image_id", "semantic_mIoU", "instance_mIoU"])
        writer.writeheader()
        for row in run["per_image"].values():
            writer.writerow({**row, "instance_mIoU": row["semantic_mIoU"]})
    (folder / "metrics.json").write_text("\n".join(json.dumps(r) for r in run["curves"]))
    (folder / "semantic_boundary.json").write_text(json.dumps(run["boundary"]))
    (folder / "study_minutes.json").write_text(json.dumps({"cpu_minutes": 2.5}))


def test_report_only_rebuilds_the_page_from_finished_runs(study, tmp_path, monkeypatch):
    rng = np.random.default_rng(2)
    images = rng.uniform(50, 70, 20)
    output = tmp_path / "runs"
    variants = {v.name: v for v in (*study.VARIANTS, *study.SEMANTIC_VARIANTS)}
    for seed in (0, 1):
        for name, shift in (("bce", -4.0), ("sem_ce", 0.0), ("sem_posce_auto", 0.0)):
            run = _run(images + shift + rng.normal(0, 0.3, 20), images - 20,
                       pos_weight=4.0 if name == "sem_posce_auto" else None,
                       instances=name == "bce")
            if name == "bce":
                run["metrics"]["segm"] = {"AP": 30.0, "AP75": 25.0}
                run["metrics"]["instance"]["boundary_IoU"] = 50.0
                run["metrics"]["contrast"] = {"merged": 12, "split": 3}
            _write_run(study.run_dir(output, "shapes", variants[name], seed), run)
    doc = tmp_path / "doc" / "STUDY.md"
    monkeypatch.setattr(sys, "argv", ["run_study.py", "--report-only", "--datasets", "shapes",
                                      "--seeds", "0", "1", "--output", str(output),
                                      "--doc", str(doc)])
    monkeypatch.setattr(study, "DOC", study.DOC)
    monkeypatch.setattr(study, "FIGURES", study.FIGURES)
    assert study.main() == 0
    text = doc.read_text()
    assert "## shapes: semantic model, which pixel loss?" in text
    assert "### shapes: semantic model or instance model?" in text
    assert "**shapes, semantic model**" in text.split("## In short")[1].split("## shapes")[0]
    assert "Does the source's pos_weight help where the imbalance is real?" in text
    assert "CPU budget: 4 semantic runs took 10 CPU-minutes" in text
    assert (doc.parent / "study" / "shapes_semantic.png").is_file()

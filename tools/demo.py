#!/usr/bin/env python
"""The main job (`make demo`): train on `shapes`, evaluate, print the contrast table.

Generates `shapes`, trains Mask R-CNN with the focal mask head on the CPU, evaluates the saved
final weights, and prints the semantic-vs-instance contrast table for the untrained and the
trained model side by side.

Everything goes under output/demo/ (override with --output):
    untrained/   eval-only of the randomly initialised model (the baseline)
    train/       the training run: log, metrics.json, TensorBoard events, model_final.pth
    eval/        eval-only of train/model_final.pth: metrics.json, per_image.csv, plots
    predictions/ overlays of a few validation images drawn by tools/predict.py
    summary.md   the side-by-side table

    python tools/demo.py                 # what `make demo` runs
    python tools/demo.py --write-docs    # also refresh the README's demo figures
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

from segcontrast.evaluation import catalog

REPO = Path(__file__).resolve().parents[1]
CONFIG = "configs/shapes/mask_rcnn_focal.yaml"
DATASET_ROOT = Path("datasets/generated")
README_START = "<!-- demo:results:start -->"
README_END = "<!-- demo:results:end -->"

# (group, metric, label) rows of the side-by-side table: the catalog's.
ROWS = tuple((group, key, catalog.label(group, key)) for group, key in catalog.DEMO_ROWS)


def run(cmd: list[str]) -> None:
    print("\n$ " + " ".join(cmd), flush=True)
    started = time.time()
    subprocess.run(cmd, cwd=REPO, check=True)
    print(f"  ({time.time() - started:.0f} s)", flush=True)


def train_net(*args: str) -> list[str]:
    return [sys.executable, "tools/train_net.py", "--config", CONFIG, *args]


def load_metrics(folder: Path) -> dict:
    files = sorted(folder.glob("inference/*/metrics.json"))
    if not files:
        raise SystemExit(f"demo: no metrics.json under {folder}/inference: evaluation failed?")
    with open(files[0]) as f:
        return json.load(f)


def format_table(untrained: dict, trained: dict) -> str:
    lines = [
        "| metric | untrained | trained |",
        "|---|---:|---:|",
    ]
    for group, key, label in ROWS:
        values = []
        for metrics in (untrained, trained):
            value = metrics.get(group, {}).get(key)
            if value is None:
                values.append("n/a")
            else:
                values.append(f"{value:.0f}" if catalog.metric(group, key).is_count
                              else f"{value:.1f}")
        lines.append(f"| {label} | {values[0]} | {values[1]} |")
    return "\n".join(lines)


def write_readme_section(text: str) -> None:
    readme = REPO / "README.md"
    content = readme.read_text()
    start, end = content.index(README_START), content.index(README_END)
    new = content[: start + len(README_START)] + "\n" + text + "\n" + content[end:]
    readme.write_text(new)
    print("demo: README.md demo figures updated")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", default="output/demo", help="where everything goes")
    parser.add_argument("--write-docs", action="store_true",
                        help="write the table into README.md's demo section")
    parser.add_argument("opts", nargs=argparse.REMAINDER,
                        help="KEY VALUE config overrides for the training run")
    args = parser.parse_args()
    out = Path(args.output)
    started = time.time()

    if not (REPO / DATASET_ROOT / "shapes" / "val.json").is_file():
        run([sys.executable, "datasets/prepare_shapes.py"])
    run(train_net("--eval-only", "--eval-untrained", "OUTPUT_DIR", str(out / "untrained")))
    run(train_net("--overwrite", *args.opts, "OUTPUT_DIR", str(out / "train")))
    weights = out / "train" / "model_final.pth"
    run(train_net("--eval-only", "MODEL.WEIGHTS", str(weights), "OUTPUT_DIR", str(out / "eval")))
    run([
        sys.executable, "tools/predict.py", "--config", CONFIG, "--weights", str(weights),
        "--input", str(DATASET_ROOT / "shapes" / "images" / "val"), "--limit", "8",
        "--output", str(out / "predictions"), "--semantic-png",
    ])

    trained = load_metrics(out / "eval")
    table = format_table(load_metrics(out / "untrained"), trained)
    explanation = trained.get("details", {}).get("explanation", "")
    minutes = (time.time() - started) / 60
    summary = (
        f"`make demo` (`python tools/demo.py`), {CONFIG}, on {os.cpu_count()} CPU cores "
        f"({platform.processor() or platform.machine()}), {minutes:.1f} min in all "
        "(data generation, untrained baseline, training, evaluation, overlays). "
        "Scores on `shapes_val`, in percent except counts:\n\n" + table
        + (f"\n\nThe evaluator's reading of the trained model: {explanation}"
           if explanation else "")
    )
    (out / "summary.md").write_text(summary + "\n")
    print("\n" + summary)
    print(f"\nPlots and overlays: {out / 'eval' / 'inference'} and {out / 'predictions'}")
    if args.write_docs:
        write_readme_section(summary)
    return 0


if __name__ == "__main__":
    sys.exit(main())

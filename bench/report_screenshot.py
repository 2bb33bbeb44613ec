#!/usr/bin/env python
"""The README's picture of report.html: two made-up models on `shapes`, compared.

Generates a small `shapes` val split, two results files of imperfect "models" made from its
ground truth (A merges most pairs of touching objects of one class, B few; both miss some
objects, grow or shrink masks by a pixel, and add false positives), scores them with
`tools/evaluate.py --compare`, and screenshots the page with headless Chromium when it is
installed (`apt-get install chromium`).

    python bench/report_screenshot.py [--output output/report_example] [--write-docs]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
PICTURE = REPO / "docs" / "images" / "report.png"


def _model_results(gt: dict, merge_rate: float, seed: int) -> list[dict]:
    import pycocotools.mask as mask_util
    from scipy.ndimage import binary_dilation, binary_erosion

    rng = np.random.default_rng(seed)
    by_image: dict[int, list[dict]] = {}
    for ann in gt["annotations"]:
        by_image.setdefault(ann["image_id"], []).append(ann)
    results = []
    for image in gt["images"]:
        h, w = image["height"], image["width"]
        anns = [a for a in by_image.get(image["id"], []) if not a.get("iscrowd")]
        masks = [mask_util.decode({"size": [h, w], "counts": a["segmentation"]["counts"]})
                 .astype(bool) for a in anns]
        used = [False] * len(anns)
        predicted = []
        for i, a in enumerate(anns):
            if used[i]:
                continue
            used[i] = True
            mask = masks[i].copy()
            grown = binary_dilation(mask, iterations=2)
            for j in range(i + 1, len(anns)):
                if (not used[j] and anns[j]["category_id"] == a["category_id"]
                        and (grown & masks[j]).any() and rng.random() < merge_rate):
                    mask |= masks[j] | (binary_dilation(mask) & binary_dilation(masks[j]))
                    used[j] = True
            if rng.random() < 0.08:
                continue  # missed
            roll = rng.random()
            if roll < 0.3:
                mask = binary_dilation(mask)
            elif roll < 0.6:
                mask = binary_erosion(mask) | (mask & (rng.random(mask.shape) < 0.05))
            predicted.append((mask, a["category_id"], float(rng.uniform(0.55, 1.0))))
        for _ in range(int(rng.poisson(0.8))):  # false positives
            mask = np.zeros((h, w), bool)
            y, x = rng.integers(0, h - 12), rng.integers(0, w - 12)
            mask[y:y + rng.integers(6, 20), x:x + rng.integers(6, 20)] = True
            category = int(rng.choice([c["id"] for c in gt["categories"]]))
            predicted.append((mask, category, float(rng.uniform(0.5, 0.8))))
        for mask, category, score in predicted:
            rle = mask_util.encode(np.asfortranarray(mask.astype(np.uint8)))
            results.append({"image_id": image["id"], "category_id": category, "score": score,
                            "segmentation": {"size": [h, w], "counts": rle["counts"].decode()},
                            "bbox": [float(v) for v in mask_util.toBbox(rle)]})
    return results


def _screenshot(page: Path, picture: Path) -> bool:
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        print("no chromium found: the page is not photographed")
        return False
    picture.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu",
                    "--hide-scrollbars", f"--screenshot={picture}", "--window-size=1200,1600",
                    page.resolve().as_uri()], check=True, capture_output=True, timeout=120)
    return picture.is_file()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", default=str(REPO / "output" / "report_example"))
    parser.add_argument("--write-docs", action="store_true",
                        help=f"write the screenshot to {PICTURE.relative_to(REPO)}")
    args = parser.parse_args()
    import segcontrast.engine  # noqa: F401  (makes detectron2 usable; registers the heads)
    from segcontrast.data.shapes import ShapesConfig, generate_shapes

    out = Path(args.output).resolve()
    data = generate_shapes(out / "data", ShapesConfig(num_train=1, num_val=24, image_size=160,
                                                      seed=3), progress=False)
    gt = json.loads(Path(data["val"]).read_text())
    for name, rate, seed in (("model_a", 0.8, 1), ("model_b", 0.1, 2)):
        (out / f"{name}.json").write_text(json.dumps(_model_results(gt, rate, seed)))
    report = out / "report"
    # relative paths: the page shows them as given
    subprocess.run([sys.executable, str(REPO / "tools" / "evaluate.py"),
                    "--gt", str(Path(data["val"]).relative_to(out)), "--results", "model_a.json",
                    "--compare", "model_b.json",
                    "--images", str(Path(data["image_root"]).relative_to(out)),
                    "--output", "report"], check=True, cwd=out)
    picture = PICTURE if args.write_docs else out / "report.png"
    if _screenshot(report / "report.html", picture):
        print(f"wrote {picture}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python
"""Peak memory of tools/predict.py on one large photo, per overlay option.

    python bench/predict_memory.py                      # an 8000x8000 JPEG, the tiny model
    python bench/predict_memory.py --side 4000 --full-size
    python bench/predict_memory.py --config C --weights W

Writes a synthetic JPEG (discs and boxes on grey), trains the test suite's tiny model (the
shapes config at 64 pixels, 20 iterations, as tests/conftest.py does) unless --weights is
given, then runs tools/predict.py once per variant as a separate process and reports its peak
resident memory (the kernel's ru_maxrss of that process) and wall time: the default bounded
overlays, --no-overlays and, with --full-size, --full-size-overlays (which draws at the input's
size: some 10 GB at 8000x8000).
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

REPO = Path(__file__).resolve().parents[1]

TINY_CONFIG = """\
_BASE_: "{repo}/configs/shapes/mask_rcnn_bce.yaml"
DATASETS:
  TRAIN: ("bench_tiny_train",)
  TEST: ("bench_tiny_val",)
INPUT:
  MIN_SIZE_TRAIN: (64,)
  MAX_SIZE_TRAIN: 128
  MIN_SIZE_TEST: 64
  MAX_SIZE_TEST: 128
SOLVER:
  IMS_PER_BATCH: 2
  BASE_LR: 0.01
  WARMUP_ITERS: 5
  MAX_ITER: 20
  STEPS: ()
  CHECKPOINT_PERIOD: 10
TEST:
  EVAL_PERIOD: 0
  DETECTIONS_PER_IMAGE: 20
"""


def write_photo(path: Path, side: int) -> None:
    """A side x side JPEG of coloured discs and boxes on grey (compresses like a photo)."""
    rng = np.random.default_rng(0)
    image = Image.new("RGB", (side, side), (90, 90, 90))
    draw = ImageDraw.Draw(image)
    for _ in range(60):
        x, y = (int(v) for v in rng.integers(0, side, 2))
        r = int(rng.integers(side // 40, side // 10))
        colour = tuple(int(v) for v in rng.integers(120, 255, 3))
        shape = draw.ellipse if rng.integers(2) else draw.rectangle
        shape((x - r, y - r, x + r, y + r), fill=colour)
    image.save(path, quality=90)


def train_tiny(folder: Path) -> tuple[str, str]:
    """The tiny shapes model of the test suite: (config, weights)."""
    from segcontrast.data.shapes import ShapesConfig, generate_shapes

    data = generate_shapes(folder / "data", ShapesConfig(num_train=8, num_val=4, image_size=64,
                                                         min_objects=2, max_objects=4, seed=7),
                           progress=False)
    config = folder / "tiny.yaml"
    config.write_text(TINY_CONFIG.format(repo=REPO))
    out = folder / "train"
    subprocess.run(
        [sys.executable, str(REPO / "tools" / "train_net.py"), "--config", str(config),
         "--dataset", f"bench_tiny_train={data['train']}:{data['image_root']}",
         "--dataset", f"bench_tiny_val={data['val']}:{data['image_root']}",
         "OUTPUT_DIR", str(out)],
        cwd=REPO, check=True, capture_output=True, env=_env(),
    )
    return str(config), str(out / "model_final.pth")


def _env() -> dict[str, str]:
    # One intra-op thread, as the tests run the tools: the figure does not depend on the cores.
    return {**os.environ, "OMP_NUM_THREADS": "1"}


def measure(args: list[str]) -> tuple[float, float, int]:
    """Run tools/predict.py; return (peak resident GiB, wall seconds, exit code)."""
    started = time.perf_counter()
    process = subprocess.Popen([sys.executable, str(REPO / "tools" / "predict.py"), *args],
                               cwd=REPO, env=_env(), stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    seconds = time.perf_counter() - started
    return usage.ru_maxrss * 1024 / 2**30, seconds, process.returncode  # ru_maxrss is in KiB


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--side", type=int, default=8000, help="the photo's width and height")
    parser.add_argument("--config", help="a config (default: train the tiny model)")
    parser.add_argument("--weights", help="its weights")
    parser.add_argument("--full-size", action="store_true",
                        help="also measure --full-size-overlays (needs some 12 GB at 8000)")
    parser.add_argument("--work", default="output/bench/predict_memory",
                        help="folder for the photo, the tiny model and the outputs")
    args = parser.parse_args()
    work = Path(args.work).resolve()
    work.mkdir(parents=True, exist_ok=True)
    photo_dir = work / f"photo_{args.side}"
    photo_dir.mkdir(exist_ok=True)
    photo = photo_dir / f"photo_{args.side}.jpg"
    if not photo.is_file():
        write_photo(photo, args.side)
    if args.weights:
        config, weights = args.config, args.weights
        model = config
    else:
        config, weights = train_tiny(Path(tempfile.mkdtemp(dir=work, prefix="tiny_")))
        model = ("the test suite's tiny model (configs/shapes/mask_rcnn_bce.yaml at 64 pixels, "
                 "20 iterations, at most 20 detections per image)")
    variants = {"default (longest side 1600)": [], "--no-overlays": ["--no-overlays"]}
    if args.full_size:
        variants["--full-size-overlays"] = ["--full-size-overlays"]
    print(f"tools/predict.py on one {args.side}x{args.side} JPEG ({photo.stat().st_size:,} "
          f"bytes), {model}; {os.cpu_count()} CPU cores ({platform.machine()}), "
          f"{platform.system()}, Python {platform.python_version()}, one torch thread\n")
    print("| overlays | peak memory (GiB) | wall time (s) |\n|---|---:|---:|")
    for name, extra in variants.items():
        out = Path(tempfile.mkdtemp(dir=work, prefix="out_"))
        peak, seconds, code = measure(["--config", config, "--weights", weights,
                                       "--input", str(photo), "--output", str(out), *extra])
        shown = f"{peak:.2f}" if code == 0 else f"failed (exit code {code})"
        print(f"| {name} | {shown} | {seconds:.0f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Shared fixtures for the end-to-end tests of tools/: a tiny generated dataset and config."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import segcontrast  # noqa: F401
from segcontrast.data.shapes import ShapesConfig, generate_shapes

REPO = Path(__file__).resolve().parents[2]
TINY = ShapesConfig(num_train=8, num_val=4, image_size=64, min_objects=2, max_objects=4, seed=7)

TINY_CONFIG = """\
_BASE_: "{repo}/configs/shapes/{leaf}.yaml"
DATASETS:
  TRAIN: ("tiny_train",)
  TEST: ("tiny_val",)
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
  SEGCONTRAST:
    NUM_WORST_IMAGES: 2
"""


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory):
    """The tiny shapes dataset: {"train": json, "val": json, "image_root": folder}."""
    root = tmp_path_factory.mktemp("tiny_shapes")
    return generate_shapes(root, TINY, progress=False)


@pytest.fixture(scope="session")
def tiny_config(tmp_path_factory):
    """Write the tiny config for a leaf config name ("mask_rcnn_focal", ...); return its path."""
    folder = tmp_path_factory.mktemp("configs")

    def make(leaf: str = "mask_rcnn_focal") -> str:
        path = folder / f"tiny_{leaf}.yaml"
        path.write_text(TINY_CONFIG.format(repo=REPO, leaf=leaf))
        return str(path)

    return make


def dataset_args(data) -> list[str]:
    """``--dataset`` arguments registering the tiny splits as tiny_train / tiny_val."""
    return [
        "--dataset", f"tiny_train={data['train']}:{data['image_root']}",
        "--dataset", f"tiny_val={data['val']}:{data['image_root']}",
    ]


def run_tool(script: str, *args: str, timeout: int = 300, **popen) -> subprocess.CompletedProcess:
    """Run ``tools/<script>`` with the test interpreter; capture its output."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, str(REPO / "tools" / script), *args],
        cwd=REPO, capture_output=True, text=True, timeout=timeout, env=env, **popen,
    )

"""Fixtures and helpers shared by the whole suite.

* ``tiny_data``, ``tiny_config``: a tiny generated shapes dataset and a config writer for it.
* ``trained_run``: one real ``tools/train_net.py`` training per mask-head leaf config, run at
  most once per pytest run (across its xdist workers), on first request, and shared by every
  test that needs a checkpoint.
* ``run_tool``: a tool as a real process (exit code, stderr, the process's own start-up).
* ``one_torch_thread``: one intra-op torch thread for a test that runs a tiny model here.
* ``run_cli`` (tests/in_process.py): a tool's ``main(argv)`` in this process, with captured
  output and the global state it touches (dataset catalogs, logging, RNGs, threads, cwd) put
  back afterwards, for tests where a new process proves nothing more and only costs an import
  of torch and Detectron2.

``dataset_args``, ``run_tool`` and ``run_cli`` are plain functions (importable from
``tests/tools/conftest.py``) and also fixtures of the same name (for folders that are not
packages).
"""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
import segcontrast.engine  # noqa: F401  (makes detectron2 importable; registers the heads)
import torch
from segcontrast.data.shapes import ShapesConfig, generate_shapes

from .in_process import CliResult, run_cli

__all__ = [
    "REPO", "TINY", "TINY_CONFIG", "CliResult", "TrainedRun", "TrainedRuns", "dataset_args",
    "run_cli", "run_tool", "tool_env", "tool_module",
]

# What each tools/*.py runs (the scripts are thin wrappers): its module has main(argv).
TOOL_MODULES = {
    "evaluate.py": "segcontrast.cli.evaluate",
    "validate_dataset.py": "segcontrast.cli.validate",
    "train_net.py": "segcontrast.engine.train_cli",
    "predict.py": "segcontrast.engine.predict_cli",
    "tune_mask_threshold.py": "segcontrast.engine.tune_cli",
}


def tool_module(script: str):
    """The module whose ``main(argv)`` ``tools/<script>`` runs, for calls in this process."""
    import importlib

    return importlib.import_module(TOOL_MODULES[Path(script).name])

REPO = Path(__file__).resolve().parents[1]
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


# --- the tiny dataset and config ---------------------------------------------------------------

def _run_folder(tmp_path_factory, name: str) -> Path:
    """A folder of this pytest run that every process of it shares (``make test`` runs the
    suite in pytest-xdist workers, each with a base folder of its own under the run's)."""
    base = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        base = base.parent
    folder = base / name
    folder.mkdir(exist_ok=True)
    return folder


@contextmanager
def _only_one_process(lock: Path) -> Iterator[None]:
    """Held by one process of the run at a time (the others wait)."""
    with open(lock, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory):
    """The tiny shapes dataset: {"train": json, "val": json, "image_root": folder}."""
    root = _run_folder(tmp_path_factory, "tiny_shapes")
    made = root / "paths.json"
    with _only_one_process(root.with_suffix(".lock")):
        if not made.exists():
            paths = generate_shapes(root, TINY, progress=False)
            made.write_text(json.dumps({key: str(path) for key, path in paths.items()}))
    return {key: Path(path) for key, path in json.loads(made.read_text()).items()}


@pytest.fixture(scope="session")
def tiny_config(tmp_path_factory):
    """Write the tiny config for a leaf config name ("mask_rcnn_focal", ...); return its path."""
    folder = _run_folder(tmp_path_factory, "configs")

    def make(leaf: str = "mask_rcnn_focal") -> str:
        path = folder / f"tiny_{leaf}.yaml"
        with _only_one_process(path.with_suffix(".lock")):
            if not path.exists():
                path.write_text(TINY_CONFIG.format(repo=REPO, leaf=leaf))
        return str(path)

    return make


def dataset_args(data) -> list[str]:
    """``--dataset`` arguments registering the tiny splits as tiny_train / tiny_val."""
    return [
        "--dataset", f"tiny_train={data['train']}:{data['image_root']}",
        "--dataset", f"tiny_val={data['val']}:{data['image_root']}",
    ]


@pytest.fixture(name="dataset_args", scope="session")
def _dataset_args_fixture():
    return dataset_args


# --- tools as real processes -------------------------------------------------------------------

def tool_env() -> dict[str, str]:
    """The environment of a tool process: unbuffered output, one intra-op thread."""
    return {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}


def run_tool(script: str, *args: str, timeout: int = 300, extra_env: dict[str, str] | None = None,
             **popen) -> subprocess.CompletedProcess:
    """Run ``tools/<script>`` with the test interpreter; capture its output.

    ``extra_env`` is added to :func:`tool_env`; ``popen`` goes to ``subprocess.run``.
    """
    return subprocess.run(
        [sys.executable, str(REPO / "tools" / script), *args],
        cwd=REPO, capture_output=True, text=True, timeout=timeout,
        env={**tool_env(), **(extra_env or {})}, **popen,
    )


@pytest.fixture(name="run_tool", scope="session")
def _run_tool_fixture():
    return run_tool


# --- one training per leaf config, shared by the session ---------------------------------------

@dataclass(frozen=True)
class TrainedRun:
    """A finished tiny training: read it, never write into it (copy ``out`` first).

    Attributes:
        out: its OUTPUT_DIR (checkpoints, log.txt, metrics.json, inference/tiny_val/...).
        result: the ``tools/train_net.py`` process that trained it (stdout and stderr text).
        leaf: the leaf config under configs/shapes/ ("mask_rcnn_focal", ...).
        config: the tiny config file it was trained with.
    """

    out: Path
    result: subprocess.CompletedProcess
    leaf: str
    config: str


class TrainedRuns:
    """``trained_run(leaf)``: the session's run of a leaf config, trained on first request.

    ``trained_run.many(*leaves)`` returns several, training the missing ones side by side (each
    process has one thread, as ``run_tool`` runs them, so that together they use every core).
    """

    def __init__(self, folder: Path, data: dict, config: Callable[[str], str]) -> None:
        self._folder, self._data, self._config = folder, data, config
        self._runs: dict[str, TrainedRun] = {}

    def __call__(self, leaf: str = "mask_rcnn_focal") -> TrainedRun:
        return self.many(leaf)[leaf]

    def many(self, *leaves: str) -> dict[str, TrainedRun]:
        missing = [leaf for leaf in dict.fromkeys(leaves) if leaf not in self._runs]
        if missing:
            with ThreadPoolExecutor(len(missing)) as pool:
                for run in pool.map(self._train, missing):
                    self._runs[run.leaf] = run
        runs = {leaf: self._runs[leaf] for leaf in leaves}
        for run in runs.values():
            assert run.result.returncode == 0, (
                f"training {run.leaf} failed:\n{run.result.stdout[-3000:]}\n"
                f"{run.result.stderr[-3000:]}"
            )
        return runs

    def _train(self, leaf: str) -> TrainedRun:
        out = self._folder / leaf
        config = self._config(leaf)
        record = self._folder / f"{leaf}.json"
        # Trained once per pytest run: a process that needs it while another trains it waits.
        with _only_one_process(self._folder / f"{leaf}.lock"):
            if not record.exists():
                # Several trainings share the cores: a longer limit than one tool run's.
                done = run_tool("train_net.py", "--config", config, *dataset_args(self._data),
                                "OUTPUT_DIR", str(out), timeout=600)
                record.write_text(json.dumps({"args": done.args, "returncode": done.returncode,
                                              "stdout": done.stdout, "stderr": done.stderr}))
        result = subprocess.CompletedProcess(**json.loads(record.read_text()))
        return TrainedRun(out=out, result=result, leaf=leaf, config=config)


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory, tiny_data, tiny_config) -> TrainedRuns:
    """``trained_run(leaf="mask_rcnn_focal") -> TrainedRun``: a finished 20-iteration run."""
    return TrainedRuns(_run_folder(tmp_path_factory, "trained"), tiny_data, tiny_config)


@pytest.fixture
def one_torch_thread():
    """One intra-op torch thread for the test: tiny models gain nothing from more, and on a busy
    machine OpenMP's spinning workers make each step many times slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# --- tools in this process (tests/in_process.py) ---------------------------------------------

@pytest.fixture(name="run_cli", scope="session")
def _run_cli_fixture():
    return run_cli

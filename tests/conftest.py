"""Fixtures and helpers shared by the whole suite.

* ``tiny_data``, ``tiny_config``: a tiny generated shapes dataset and a config writer for it.
* ``trained_run``: one real ``tools/train_net.py`` training per mask-head leaf config, run at
  most once per session, on first request, and shared by every test that needs a checkpoint.
* ``run_tool``: a tool as a real process (exit code, stderr, the process's own start-up).
* ``one_torch_thread``: one intra-op torch thread for a test that runs a tiny model here.
* ``run_cli``: a tool's ``main(argv)`` in this process, with captured output and the global
  state it touches (dataset catalogs, logging, RNGs, threads, cwd) put back afterwards, for
  tests where a new process proves nothing more and only costs an import of torch and Detectron2.

``dataset_args``, ``run_tool`` and ``run_cli`` are plain functions (importable from
``tests/tools/conftest.py``) and also fixtures of the same name (for folders that are not
packages).
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import random
import subprocess
import sys
import warnings
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import segcontrast  # noqa: F401  (makes detectron2 importable)
import torch
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.utils import logger as d2_logger
from segcontrast.data.coco import segcontrast_dataset_names, unregister_coco_dataset
from segcontrast.data.shapes import ShapesConfig, generate_shapes

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
        # Several trainings share the cores: a longer limit than one tool run's.
        result = run_tool("train_net.py", "--config", config, *dataset_args(self._data),
                          "OUTPUT_DIR", str(out), timeout=600)
        return TrainedRun(out=out, result=result, leaf=leaf, config=config)


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory, tiny_data, tiny_config) -> TrainedRuns:
    """``trained_run(leaf="mask_rcnn_focal") -> TrainedRun``: a finished 20-iteration run."""
    return TrainedRuns(tmp_path_factory.mktemp("trained"), tiny_data, tiny_config)


@pytest.fixture
def one_torch_thread():
    """One intra-op torch thread for the test: tiny models gain nothing from more, and on a busy
    machine OpenMP's spinning workers make each step many times slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# --- tools in this process ---------------------------------------------------------------------

@dataclass(frozen=True)
class CliResult:
    """What an in-process ``main(argv)`` gave: its exit code and everything it printed."""

    returncode: int
    stdout: str
    stderr: str


def _exit_code(code: object, stderr: io.StringIO) -> int:
    # The interpreter's own rules for SystemExit(code).
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    print(code, file=stderr)
    return 1


@contextlib.contextmanager
def _datasets_put_back() -> Iterator[None]:
    """Datasets registered during the block are forgotten; earlier ones are as they were."""
    ours = set(segcontrast_dataset_names())
    catalog = dict(DatasetCatalog)
    metadata = {name: (meta, dict(vars(meta))) for name, meta in MetadataCatalog.items()}
    try:
        yield
    finally:
        for name in set(segcontrast_dataset_names()) - ours:
            unregister_coco_dataset(name)
        DatasetCatalog.clear()
        DatasetCatalog.update(catalog)
        MetadataCatalog.clear()
        for name, (meta, attributes) in metadata.items():
            vars(meta).clear()
            vars(meta).update(attributes)
            MetadataCatalog[name] = meta


def _all_loggers() -> list[logging.Logger]:
    named = [v for v in logging.root.manager.loggerDict.values() if isinstance(v, logging.Logger)]
    return [logging.root, *named]


def _close_log_files(handlers: list[logging.Handler]) -> None:
    for handler in handlers:
        handler.flush()
    for handler in handlers:
        stream = getattr(handler, "stream", None)
        if isinstance(handler, logging.FileHandler):
            handler.close()
        elif (isinstance(stream, io.TextIOWrapper) and not stream.closed
              and stream not in (sys.__stdout__, sys.__stderr__)):
            # A log.txt opened by Detectron2's setup_logger (shared by its loggers).
            stream.close()


@contextlib.contextmanager
def _logging_put_back() -> Iterator[None]:
    """Handlers added during the block are removed (their log files closed and flushed);
    levels and propagation are restored, and Detectron2's ``setup_logger`` forgets its calls,
    so that the next run writes its own log.txt and no other."""
    before = {id(lg): (lg, list(lg.handlers), lg.level, lg.propagate, lg.disabled)
              for lg in _all_loggers()}
    counters = (dict(d2_logger._LOG_COUNTER), dict(d2_logger._LOG_TIMER))
    d2_logger.setup_logger.cache_clear()
    d2_logger._cached_log_stream.cache_clear()
    # log_first_n / log_every_n_seconds count per process: a fresh count, like a new process.
    d2_logger._LOG_COUNTER.clear()
    d2_logger._LOG_TIMER.clear()
    try:
        yield
    finally:
        added = []
        for lg in _all_loggers():
            kept, level, propagate, disabled = [], logging.NOTSET, True, False
            if id(lg) in before:
                _, kept, level, propagate, disabled = before[id(lg)]
            added += [h for h in lg.handlers if h not in kept]
            lg.handlers[:] = kept
            lg.setLevel(level)
            lg.propagate, lg.disabled = propagate, disabled
        _close_log_files(added)
        d2_logger.setup_logger.cache_clear()
        d2_logger._cached_log_stream.cache_clear()
        d2_logger._LOG_COUNTER.clear()
        d2_logger._LOG_COUNTER.update(counters[0])
        d2_logger._LOG_TIMER.clear()
        d2_logger._LOG_TIMER.update(counters[1])


@contextlib.contextmanager
def _process_state_put_back() -> Iterator[None]:
    """RNG states, torch's thread count and cudnn flag, environment, cwd, warning filters."""
    rng = (random.getstate(), np.random.get_state(), torch.get_rng_state())
    threads, benchmark = torch.get_num_threads(), torch.backends.cudnn.benchmark
    environ, cwd = dict(os.environ), os.getcwd()
    try:
        with warnings.catch_warnings():
            yield
    finally:
        random.setstate(rng[0])
        np.random.set_state(rng[1])
        torch.set_rng_state(rng[2])
        torch.set_num_threads(threads)
        torch.backends.cudnn.benchmark = benchmark
        os.environ.clear()
        os.environ.update(environ)
        os.chdir(cwd)


def run_cli(main: Callable[[list[str]], int | None], argv: Sequence[str]) -> CliResult:
    """Call a tool's ``main(argv)`` here, as ``python tools/<tool>.py ARGV`` would run it.

    It runs in the repository root with one torch thread (as run_tool's processes do) and
    stdout and stderr captured; logging handlers that Detectron2 sets up during the call write
    there too, and to the run's log.txt, which is complete when this returns. ``SystemExit``
    becomes the exit code; any other exception propagates and fails the test. Afterwards the
    datasets registered during the call are forgotten, and logging, RNG states, torch threads,
    environment, cwd and warning filters are as before, so that no test depends on what an
    earlier in-process run left behind.

    Args:
        main: the tool's entry point (``segcontrast.engine.train_cli.main``, a tool module's
            ``main``).
        argv: its command-line arguments.

    Returns:
        The exit code (None from ``main`` counts as 0) and the captured output.
    """
    stdout, stderr = io.StringIO(), io.StringIO()
    with _process_state_put_back(), _datasets_put_back(), _logging_put_back():
        os.chdir(REPO)
        # One intra-op thread, as in run_tool's processes: the same arithmetic as theirs, and
        # no threads spinning against the other work on a busy machine.
        torch.set_num_threads(1)
        with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
            try:
                code = _exit_code(main(list(argv)), stderr)
            except SystemExit as exit_:
                code = _exit_code(exit_.code, stderr)
    return CliResult(code, stdout.getvalue(), stderr.getvalue())


@pytest.fixture(name="run_cli", scope="session")
def _run_cli_fixture():
    return run_cli

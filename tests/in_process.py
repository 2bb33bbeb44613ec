"""Run a tool's ``main(argv)`` in the test process, as a new process would run it, and put back
the global state it touches, so that no test depends on what an earlier in-process run left.

A tool process costs an import of torch and Detectron2 (seconds on 2 cores); where a new process
proves nothing more (refusals, runs whose files are read), :func:`run_cli` is used instead.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import random
import sys
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.utils import logger as d2_logger
from segcontrast.datasets.coco import segcontrast_dataset_names, unregister_coco_dataset

__all__ = ["CliResult", "run_cli"]

REPO = Path(__file__).resolve().parents[1]


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


@contextlib.contextmanager
def state_put_back() -> Iterator[None]:
    """Afterwards: registered datasets forgotten; logging, RNGs, threads, env and cwd as before."""
    with _process_state_put_back(), _datasets_put_back(), _logging_put_back():
        yield


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
    with state_put_back():
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

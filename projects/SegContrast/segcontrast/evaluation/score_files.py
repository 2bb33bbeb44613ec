"""Handing a results file to the evaluator one image at a time, in this process or in several.

Every image of the ground truth goes to :meth:`Accumulator.add_predictions`, the
evaluator's per-image entry point, with the image's results decoded just before. With several
workers, forked processes score chunks of images with evaluators of the same settings and send
back their sufficient statistics, which are merged into the caller's evaluator as Detectron2's
distributed evaluation merges processes (:meth:`EvalState.merge`, images sorted by id): the
numbers do not depend on the number of workers.
"""

from __future__ import annotations

import contextlib
import gc
import multiprocessing
import os
import signal
from collections.abc import Callable, Sequence
from typing import Any

from ..utils.progress import Progress
from .accumulator import Accumulator
from .records import EvalState
from .results_file import ResultProblem, ResultsFile, ResultsFileError
from .semantic_pngs import SemanticPngs

__all__ = ["score_results"]

# A task's images: at most this many (fewer results to send, unpickle and merge), and
# never fewer than the minimum (a task's result carries a confusion change per accounting
# variant and its newcomers among the worst images, whatever its size).
_MAX_IMAGES_PER_TASK = 64
_MIN_IMAGES_PER_TASK = 8
# Tasks shrink towards the end so that the workers finish together: a task takes at most
# 1 / this of each worker's share of the images left.
_TASKS_PER_WORKER_LEFT = 4
# What forked workers inherit: set by score_results just before the pool starts.
_JOB: dict[str, Any] = {}


def _score_images(evaluator: Accumulator, image_ids: Sequence[Any], results: ResultsFile,
                  gt_images: dict[Any, tuple[int, int]], id_map: dict[int, int],
                  semantic: SemanticPngs | None, file_names: dict[Any, str] | None,
                  done: Callable[[int], None] | None = None) -> list[tuple[str, ResultProblem]]:
    """Score images in turn; return the decoding problems (scoring stops at the first)."""
    problems: list[tuple[str, ResultProblem]] = []
    for image_id in image_ids:
        height, width = gt_images[image_id]
        try:
            pred = results.predictions(image_id, height, width, id_map)
            if semantic is not None:
                pred.semantic = semantic.labels(image_id)
        except ResultsFileError as err:
            problems += [(err.file, p) for p in err.problems]
        else:
            if not problems:  # after a problem nothing is written: only look for more
                evaluator.add_predictions(image_id, pred, (file_names or {}).get(image_id))
        if done is not None:
            done(1)
    return problems


def _split_into_tasks(image_ids: Sequence[Any], workers: int) -> list[list[Any]]:
    """Consecutive chunks of the images, one per task, large first and small at the end.

    Large tasks make few results (each one a pickled state the parent loads and merges);
    the last ones are small so that no worker is left with a long task while the others
    idle, and the progress bar keeps moving.

    Args:
        image_ids: the images, in scoring order.
        workers: the processes that take tasks.

    Returns:
        The tasks, which together hold every image once, in order.
    """
    tasks = []
    start = 0
    while start < len(image_ids):
        fair = (len(image_ids) - start) // (workers * _TASKS_PER_WORKER_LEFT)
        size = min(_MAX_IMAGES_PER_TASK, max(_MIN_IMAGES_PER_TASK, fair))
        tasks.append(list(image_ids[start : start + size]))
        start += size
    return tasks


def _worker_ignores_interrupts() -> None:
    # Ctrl-C reaches every process of the terminal's group: the parent alone stops the pool
    # (terminating the workers), so each worker does not print a traceback of its own.
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _worker_task(image_ids: list) -> tuple[EvalState, list[tuple[str, ResultProblem]]]:
    evaluator = _JOB.get("evaluator")
    if evaluator is None:  # one evaluator per worker process, reset for each task
        evaluator = _JOB["evaluator"] = _JOB["make_evaluator"]()
    evaluator.reset()
    # The worker's worst images so far stay its candidates across tasks: an image that does
    # not enter them cannot be among the dataset's worst, so its masks are never packed or
    # sent (with a fresh set per task nearly every image would be).
    carried = _JOB["worst"]
    evaluator.state.worst = list(carried)
    problems = _score_images(evaluator, image_ids, _JOB["results"], _JOB["gt_images"],
                             _JOB["id_map"], _JOB["semantic"], _JOB["file_names"])
    state = evaluator.state
    _JOB["worst"] = list(state.worst)
    state.worst = [w for w in state.worst if not any(w is c for c in carried)]
    return state, problems


def _raise(problems: list[tuple[str, ResultProblem]]) -> None:
    by_file: dict[str, list[ResultProblem]] = {}
    for file, problem in problems:
        by_file.setdefault(file, []).append(problem)
    errors = [ResultsFileError(file, found) for file, found in by_file.items()]
    raise errors[0] if len(errors) == 1 else _MultiFileError(errors)


class _MultiFileError(ResultsFileError):
    """Problems of several files (a results file and the label PNGs)."""

    def __init__(self, errors: Sequence[ResultsFileError]) -> None:
        self.errors = list(errors)
        super().__init__(errors[0].file, [p for e in errors for p in e.problems])

    def summary(self, max_lines: int = 30) -> str:
        """Each file's summary."""
        return "\n".join(e.summary(max_lines) for e in self.errors)


@contextlib.contextmanager
def _collector_skips_what_is_loaded():
    """While scoring, the garbage collector leaves the objects that exist already alone.

    The parsed files (every result and annotation a dict) are only read from here on; a full
    collection would walk all of them again and again while the images' temporaries come and go
    (a few tenths of a second per collection on 200 images).
    """
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


def score_results(evaluator: Accumulator, results: ResultsFile,
                  gt_images: dict[Any, tuple[int, int]], id_map: dict[int, int], *,
                  semantic: SemanticPngs | None = None, file_names: dict[Any, str] | None = None,
                  progress: bool = True, workers: int = 1,
                  make_evaluator: Callable[[], Accumulator] | None = None) -> None:
    """Hand every image of the ground truth, with its results, to the evaluator.

    Images are taken in increasing id order; an image without results is an image without
    predictions. Problems found while decoding (a compressed RLE that does not decode, a label
    PNG with labels above K) are collected over all images and raised together at the end.

    Args:
        evaluator: the evaluator; its state receives every image.
        results: the checked results.
        gt_images: image id -> (height, width).
        id_map: category id -> contiguous id.
        semantic: label PNGs of a semantic model, or None.
        file_names: image id -> file for the overlays.
        progress: show a progress bar with ETA.
        workers: processes that score images (1: this one); more need ``make_evaluator`` and
            the "fork" start method, else this process scores alone.
        make_evaluator: builds an evaluator with ``evaluator``'s dataset and settings (called
            once in each worker).

    Raises:
        ResultsFileError: every decoding problem (results file first, then the PNGs).
        ValueError: the results' area rule (``results.ap_area``) is not the evaluator's.
    """
    if results.ap_area != evaluator.settings.ap_area:
        raise ValueError(f"the results were read with ap_area {results.ap_area!r} but the "
                         f"evaluator scores with {evaluator.settings.ap_area!r}")
    image_ids = sorted(gt_images)
    tasks = _split_into_tasks(image_ids, max(workers, 1))
    parallel = (workers > 1 and make_evaluator is not None and len(tasks) > 1
                and "fork" in multiprocessing.get_all_start_methods())
    # the bar appears once scoring has run a moment (a small file finishes without one)
    bar = Progress(len(image_ids), f"scoring {os.path.basename(results.path)}", "img",
                   enabled=progress)
    with bar, _collector_skips_what_is_loaded():
        if not parallel:
            problems = _score_images(evaluator, image_ids, results, gt_images, id_map, semantic,
                                     file_names, bar.update)
        else:
            _JOB.update(make_evaluator=make_evaluator, results=results, gt_images=gt_images,
                        id_map=id_map, semantic=semantic, file_names=file_names, worst=[])
            states, problems = [], []
            try:
                context = multiprocessing.get_context("fork")
                with context.Pool(min(workers, len(tasks)),
                                  initializer=_worker_ignores_interrupts) as pool:
                    for task, (state, found) in zip(
                        tasks, pool.imap(_worker_task, tasks), strict=True
                    ):
                        states.append(state)
                        problems += found
                        bar.update(len(task))
            finally:
                _JOB.clear()
            if not problems:
                evaluator.add_state(EvalState.merge(states))
    if problems:
        _raise(problems)

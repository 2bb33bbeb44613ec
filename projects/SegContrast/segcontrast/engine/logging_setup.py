"""The ``segcontrast`` logger of a tool: console on the main process, ``log.txt`` in its folder.

Detectron2's ``default_setup`` configures only the ``detectron2`` and ``fvcore`` loggers;
without this module every ``segcontrast.*`` record (the evaluator's table, the dataset notes,
the device note) would reach no handler. :func:`setup_segcontrast_logging` does for the
``segcontrast`` logger what ``default_setup`` does for Detectron2's, through Detectron2's own
``setup_logger`` (so the lines look alike): a console handler on the main process and
``OUTPUT_DIR/log.txt`` (``log.txt.rank<N>`` on the other processes), the file Detectron2's
logger writes too.

Some records come before the folder is known: ``load_config`` logs the device note before
``OUTPUT_DIR`` is read. Inside :func:`segcontrast_logging` such records are held and shown once
the handlers exist, on the console and in the file. When the block ends the logger is as it was
before, so a tool's ``main()`` can run several times in one process (tests) without stacking
handlers.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections.abc import Iterator

from detectron2.utils import comm
from detectron2.utils.logger import setup_logger

from ..compat import detectron2_description

__all__ = ["LOGGER_NAME", "segcontrast_logging", "setup_segcontrast_logging"]

LOGGER_NAME = "segcontrast"


class _HeldRecords(logging.Handler):
    """Keeps records until the real handlers exist."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


# setup_logger is cached per argument tuple and adds its handlers only on the first call, so
# the handlers it made are remembered per (folder, rank) and attached again when needed.
_HANDLERS: dict[tuple[str | None, int], list[logging.Handler]] = {}
_state: dict[str, object] = {"key": None, "held": None}


def _logger() -> logging.Logger:
    return logging.getLogger(LOGGER_NAME)


def _attach(key: tuple[str | None, int]) -> None:
    logger = _logger()
    current = _state["key"]
    if current == key:
        return
    for handler in _HANDLERS.get(current, []):  # type: ignore[arg-type]
        logger.removeHandler(handler)
    if key not in _HANDLERS:
        before = list(logger.handlers)
        setup_logger(key[0], distributed_rank=key[1], name=LOGGER_NAME, abbrev_name=LOGGER_NAME)
        _HANDLERS[key] = [h for h in logger.handlers if h not in before]
        for handler in _HANDLERS[key]:
            if isinstance(handler, logging.StreamHandler) and handler.stream is sys.stdout:
                handler._segcontrast_console = True  # type: ignore[attr-defined]
    for handler in _HANDLERS[key]:
        if getattr(handler, "_segcontrast_console", False):
            # Write to the sys.stdout of now: a caller (a test) may have replaced it since the
            # handler was made, and the old one may be closed (so no flush of it either).
            with _locked(handler):
                handler.stream = sys.stdout  # type: ignore[attr-defined]
        logger.addHandler(handler)
    _state["key"] = key


@contextlib.contextmanager
def _locked(handler: logging.Handler) -> Iterator[None]:
    handler.acquire()
    try:
        yield
    finally:
        handler.release()


def setup_segcontrast_logging(
    output_dir: str | os.PathLike | None = None,
    *,
    distributed_rank: int | None = None,
    announce: bool = True,
) -> logging.Logger:
    """Send ``segcontrast.*`` records to the console (main process) and ``output_dir/log.txt``.

    Calling it again with the same arguments changes nothing; with another folder, the
    handlers of the previous one are detached first (no record is written twice).

    Args:
        output_dir: the run's folder (``OUTPUT_DIR``); None for the console only.
        distributed_rank: this process's rank (default: ``comm.get_rank()``); only rank 0
            logs to the console, the others write ``log.txt.rank<N>``.
        announce: log which Detectron2 is in use (once per run: the processes a run spawns
            pass False).

    Returns:
        The ``segcontrast`` logger.
    """
    rank = comm.get_rank() if distributed_rank is None else int(distributed_rank)
    key = (os.fspath(output_dir) if output_dir else None, rank)
    first = _state["key"] is None
    _attach(key)
    logger = _logger()
    held = _state["held"]
    if isinstance(held, _HeldRecords):
        logger.removeHandler(held)
        _state["held"] = None
        for record in held.records:
            logger.handle(record)
    if announce and first:
        logger.info("SegContrast uses %s", detectron2_description())
    return logger


@contextlib.contextmanager
def segcontrast_logging() -> Iterator[None]:
    """A tool run's logging: records are held until :func:`setup_segcontrast_logging`.

    On exit the ``segcontrast`` logger gets back its level, propagation and handlers; held
    records that were never shown (the run stopped before it knew its folder) are dropped.
    """
    logger = _logger()
    saved_level, saved_propagate = logger.level, logger.propagate
    saved_handlers, saved_key = list(logger.handlers), _state["key"]
    # A setup made before the run (outside this block) is put aside, not doubled.
    for handler in _HANDLERS.get(saved_key, []):  # type: ignore[arg-type]
        logger.removeHandler(handler)
    held = _HeldRecords()
    logger.addHandler(held)
    logger.setLevel(logging.DEBUG)
    # Held records must not also reach the root logger's last-resort handler now.
    logger.propagate = False
    _state["held"] = held
    _state["key"] = None
    try:
        yield
    finally:
        for handler in list(logger.handlers):
            if handler not in saved_handlers:
                logger.removeHandler(handler)
                if isinstance(handler, logging.StreamHandler):
                    handler.flush()
        for handler in saved_handlers:
            logger.addHandler(handler)  # no-op for those still attached
        logger.setLevel(saved_level)
        logger.propagate = saved_propagate
        _state["held"] = None
        _state["key"] = saved_key

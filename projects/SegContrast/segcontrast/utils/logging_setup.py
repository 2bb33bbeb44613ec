"""The ``segcontrast`` logger of a tool: console on the main process, ``log.txt`` in its folder.

:func:`setup_segcontrast_logging` gives the ``segcontrast`` logger a console handler on the main
process and ``<folder>/log.txt`` (``log.txt.rank<N>`` on the other processes). The handlers are
made by a factory: the evaluation side's own (plain ``logging``) by default; the Detectron2 side
(:mod:`segcontrast.engine.logging_setup`) passes one built on Detectron2's ``setup_logger``, so
that its lines look like Detectron2's, in the ``log.txt`` Detectron2's logger writes too.

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
from collections.abc import Callable, Iterator

__all__ = ["LOGGER_NAME", "HandlerFactory", "plain_handlers", "segcontrast_logging",
           "setup_segcontrast_logging"]

LOGGER_NAME = "segcontrast"
# (folder or None, rank) -> the handlers to add to the ``segcontrast`` logger
HandlerFactory = Callable[[str | None, int], list[logging.Handler]]
_FORMAT = "[%(asctime)s %(name)s]: %(message)s"
_FILE_FORMAT = "[%(asctime)s] %(name)s %(levelname)s: %(message)s"


def plain_handlers(folder: str | None, rank: int) -> list[logging.Handler]:
    """Console (rank 0, stdout) and ``log.txt`` (appended) handlers, plain ``logging``."""
    handlers: list[logging.Handler] = []
    if rank == 0:
        console = logging.StreamHandler(sys.stdout)
        console.setFormatter(logging.Formatter(_FORMAT, datefmt="%m/%d %H:%M:%S"))
        handlers.append(console)
    if folder:
        name = "log.txt" if rank == 0 else f"log.txt.rank{rank}"
        os.makedirs(folder, exist_ok=True)
        file = logging.FileHandler(os.path.join(folder, name), encoding="utf-8")
        file.setFormatter(logging.Formatter(_FILE_FORMAT, datefmt="%m/%d %H:%M:%S"))
        handlers.append(file)
    return handlers


class _HeldRecords(logging.Handler):
    """Keeps records until the real handlers exist."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


# The handlers made for each (folder, rank) are remembered and attached again when needed
# (Detectron2's setup_logger is cached per argument tuple and adds handlers only once).
_HANDLERS: dict[tuple[str | None, int, HandlerFactory], list[logging.Handler]] = {}
_state: dict[str, object] = {"key": None, "held": None}


def _logger() -> logging.Logger:
    return logging.getLogger(LOGGER_NAME)


def _attach(key: tuple[str | None, int, HandlerFactory]) -> None:
    logger = _logger()
    current = _state["key"]
    if current == key:
        return
    for handler in _HANDLERS.get(current, []):  # type: ignore[arg-type]
        logger.removeHandler(handler)
    if key not in _HANDLERS:
        _HANDLERS[key] = key[2](key[0], key[1])
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
    distributed_rank: int = 0,
    announce: str | None = None,
    handlers: HandlerFactory = plain_handlers,
) -> logging.Logger:
    """Send ``segcontrast.*`` records to the console (main process) and ``output_dir/log.txt``.

    Calling it again with the same arguments changes nothing; with another folder, the
    handlers of the previous one are detached first (no record is written twice).

    Args:
        output_dir: the run's folder; None for the console only.
        distributed_rank: this process's rank; only rank 0 logs to the console, the others
            write ``log.txt.rank<N>``.
        announce: a line logged once per run, at the first setup (e.g. which Detectron2).
        handlers: makes the handlers of a (folder, rank) the first time it is set up.

    Returns:
        The ``segcontrast`` logger.
    """
    key = (os.fspath(output_dir) if output_dir else None, int(distributed_rank), handlers)
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
        logger.info(announce)
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

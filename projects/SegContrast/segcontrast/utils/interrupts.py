"""Ctrl-C held back while a few file operations that belong together are made.

A publish step (the old files renamed away, the new ones renamed in) takes milliseconds, but an
interrupt between two of its renames would leave neither set where the user looks. Inside
:func:`interrupts_deferred` a SIGINT is recorded instead of raised, and raised (as
``KeyboardInterrupt``, or whatever the handler before did) once the block is done.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator

__all__ = ["INTERRUPTED_EXIT_CODE", "interrupts_deferred", "interrupts_ignored"]

# What a shell reports for a process ended by SIGINT (128 + 2); tools exit with it on Ctrl-C.
INTERRUPTED_EXIT_CODE = 130


def _in_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


@contextlib.contextmanager
def interrupts_deferred() -> Iterator[None]:
    """Hold back SIGINT in the block; act on it after the block if one arrived.

    Outside the main thread (where Python delivers signals only to the main thread anyway)
    this does nothing. When the block raises, the exception propagates and a held-back SIGINT
    is dropped: the caller is already leaving.
    """
    if not _in_main_thread():
        yield
        return
    received: list[int] = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: received.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if received and callable(previous):
        previous(signal.SIGINT, None)  # Python's default handler raises KeyboardInterrupt
    elif received and previous == signal.SIG_DFL:
        raise KeyboardInterrupt


@contextlib.contextmanager
def interrupts_ignored() -> Iterator[None]:
    """Ignore SIGINT in the block.

    For clean-up after a first Ctrl-C, which a second must not cut short (and turn into a
    traceback).
    """
    if not _in_main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)

"""The third-party warnings a SegContrast tool start prints that say nothing to its user.

Each entry is one exact message (a regular expression anchored at its start), its category and
the reason it is harmless here. Nothing else is filtered: a new warning, or one of these from
another category, still shows. The tools (``tools/*.py``) call :func:`ignore_known_warnings`
before their other imports; ``import segcontrast`` itself silences them only while it imports
Detectron2 (:func:`quiet_known_warnings`), leaving the caller's warning filters as they were.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

__all__ = [
    "KNOWN_LOG_MESSAGES",
    "KNOWN_WARNINGS",
    "KnownLogMessage",
    "KnownWarning",
    "ignore_known_warnings",
    "quiet_known_warnings",
]


@dataclass(frozen=True)
class KnownWarning:
    """A harmless third-party warning.

    Attributes:
        message: a regular expression matched against the start of the warning's text.
        category: the warning's class.
        why: why the user can ignore it.
    """

    message: str
    category: type[Warning]
    why: str


@dataclass(frozen=True)
class KnownLogMessage:
    """A harmless third-party log record (emitted through ``logging``, not ``warnings``).

    Attributes:
        logger: the name of the logger that emits it.
        prefix: the start of its message template.
        why: why the user can ignore it.
    """

    logger: str
    prefix: str
    why: str


KNOWN_WARNINGS = (
    KnownWarning(
        r"`torch\.jit\.script` is deprecated",
        FutureWarning,
        "fvcore and Detectron2 v0.6 script a few functions when they are imported; SegContrast "
        "never runs them scripted, and the deprecation concerns their authors, not the user.",
    ),
    KnownWarning(
        r"torch\.meshgrid: in an upcoming release, it will be required to pass the indexing "
        r"argument",
        UserWarning,
        "Detectron2 v0.6's anchor generator calls torch.meshgrid without indexing=; the default "
        "it relies on ('ij') is the one it means.",
    ),
    KnownWarning(
        r"The given NumPy array is not writable",
        UserWarning,
        "Detectron2 v0.6 turns read-only decoded mask arrays into tensors; it never writes "
        "to them.",
    ),
)

KNOWN_LOG_MESSAGES = (
    KnownLogMessage(
        "torch.utils.cpp_extension",
        "No CUDA runtime is found",
        "logged when the loss kernel's compiler loads torch's C++ extension module on a machine "
        "without a GPU; the CPU kernel it builds does not use CUDA.",
    ),
)


def _add_filters() -> None:
    for known in KNOWN_WARNINGS:
        warnings.filterwarnings("ignore", message=known.message, category=known.category)


class _DropKnownRecords(logging.Filter):
    def __init__(self, prefixes: tuple[str, ...]) -> None:
        super().__init__()
        self.prefixes = prefixes

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(self.prefixes)


_LOG_FILTERS: dict[str, _DropKnownRecords] = {}


def ignore_known_warnings() -> None:
    """Hide the known harmless warnings and log records for the rest of the process.

    For entry points only (a library must not change its caller's warning filters). Calling it
    again changes nothing.
    """
    _add_filters()
    prefixes: dict[str, list[str]] = {}
    for known in KNOWN_LOG_MESSAGES:
        prefixes.setdefault(known.logger, []).append(known.prefix)
    for name, starts in prefixes.items():
        if name not in _LOG_FILTERS:
            _LOG_FILTERS[name] = _DropKnownRecords(tuple(starts))
            logging.getLogger(name).addFilter(_LOG_FILTERS[name])


@contextmanager
def quiet_known_warnings() -> Iterator[None]:
    """Hide the known harmless warnings inside the block only; filters are restored after."""
    with warnings.catch_warnings():
        _add_filters()
        yield

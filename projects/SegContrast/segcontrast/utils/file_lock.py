"""An exclusive, non-blocking OS lock on an open file, released when the process ends.

POSIX systems use ``fcntl.flock`` directly (what ``portalocker`` calls there); importing
``portalocker`` costs more than a small evaluation's scoring (it loads ``importlib.metadata``,
``email`` and a Redis client), so it is only imported on Windows, where it wraps the system's
own locking calls.
"""

from __future__ import annotations

from typing import IO, Any

__all__ = ["LockHeldError", "try_lock", "unlock"]


class LockHeldError(OSError):
    """Another process holds the lock."""


try:
    import fcntl
except ImportError:  # Windows
    fcntl = None  # type: ignore[assignment]


def try_lock(f: IO[Any]) -> None:
    """Lock ``f`` exclusively without waiting.

    Args:
        f: an open file.

    Raises:
        LockHeldError: another process holds a lock on it.
    """
    if fcntl is None:
        import portalocker

        try:
            flags = portalocker.LockFlags.EXCLUSIVE | portalocker.LockFlags.NON_BLOCKING
            portalocker.lock(f, flags)
        except portalocker.exceptions.LockException as err:
            raise LockHeldError(str(err)) from None
        return
    try:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except (BlockingIOError, PermissionError) as err:
        raise LockHeldError(str(err)) from None


def unlock(f: IO[Any]) -> None:
    """Let go of the lock on ``f`` (closing the file also does)."""
    if fcntl is None:
        import portalocker

        portalocker.unlock(f)
        return
    fcntl.flock(f.fileno(), fcntl.LOCK_UN)

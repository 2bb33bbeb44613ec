"""A run's output folder: usable before any work starts, and held by one run at a time.

* :func:`check_output_dir_usable` creates the folder and writes a probe file in it, so that a
  path that is a file, cannot be created or cannot be written is reported at once, naming it,
  instead of as a traceback after minutes of work.
* :class:`OutputDirLock` holds an exclusive lock (:mod:`.file_lock`, an OS file lock that ends
  with the process, also on ``kill -9``) on ``<folder>/.segcontrast.lock`` for a run's
  lifetime. The file holds the owner's pid, so a second run into the same folder is refused
  with a message that names the run holding it. A folder that is replaced as a whole
  (``tools/evaluate.py --output``) cannot hold its own lock: its lock file is a hidden sibling,
  ``.<name>.segcontrast.lock`` (see :func:`sibling_lock_file`), deleted when the run lets go.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from types import TracebackType
from typing import Any

from .errors import InputError
from .file_lock import LockHeldError, try_lock, unlock

__all__ = [
    "LOCK_FILE_NAME",
    "OutputDirError",
    "OutputDirInUseError",
    "OutputDirLock",
    "check_output_dir_usable",
    "sibling_lock_file",
]

LOCK_FILE_NAME = ".segcontrast.lock"


class OutputDirError(InputError):
    """An output folder that cannot be used; the message names it."""


class OutputDirInUseError(OutputDirError):
    """Another run holds the output folder's lock."""


def check_output_dir_usable(path: str | os.PathLike, what: str = "OUTPUT_DIR") -> str:
    """Create the folder if needed and check that a file can be written in it.

    Args:
        path: the folder.
        what: how the user named it (``OUTPUT_DIR``, ``--output``), for the message.

    Returns:
        The folder's absolute path.

    Raises:
        OutputDirError: the path is empty or a file, or the folder cannot be created or
            written; the message names the path and the reason.
    """
    text = os.fspath(path)
    if not text.strip():
        raise OutputDirError(f"{what} is empty: give the folder the results go to")
    folder = os.path.abspath(os.path.expanduser(text))
    if os.path.exists(folder) and not os.path.isdir(folder):
        raise OutputDirError(
            f"{what} {text} is a file, not a folder ({folder}); choose another {what}"
        )
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError as err:
        raise OutputDirError(
            f"{what} {text} cannot be created ({folder}: {err.strerror or err}); choose a "
            f"folder you can write to"
        ) from None
    try:
        fd, probe = tempfile.mkstemp(dir=folder, prefix=".segcontrast-write-check.")
        os.close(fd)
        os.unlink(probe)
    except OSError as err:
        raise OutputDirError(
            f"{what} {text} is not writable ({folder}: {err.strerror or err}); choose a folder "
            f"you can write to"
        ) from None
    return folder


def sibling_lock_file(folder: str | os.PathLike) -> str:
    """The lock file of a folder that is replaced as a whole.

    ``.<name>.segcontrast.lock`` next to it (see ``remove_on_release`` of :class:`OutputDirLock`).
    """
    folder = os.path.abspath(os.fspath(folder))
    return os.path.join(os.path.dirname(folder), f".{os.path.basename(folder)}{LOCK_FILE_NAME}")


def _read_owner(path: str) -> str:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read().strip()
    except OSError:
        return ""


class OutputDirLock:
    """An exclusive lock on a run's output folder, held until :meth:`release` (or process end).

    Use as a context manager, or call :meth:`acquire` / :meth:`release`.

    Args:
        folder: the output folder (it must exist; see :func:`check_output_dir_usable`).
        what: how the user named it, for the message.
        description: what holds the lock, written next to the pid (e.g. the command line).
        lock_file: the lock file (default ``<folder>/.segcontrast.lock``; its folder must
            exist).
        remove_on_release: delete the lock file when the lock is let go (for a lock file
            outside the folder, which would otherwise stay behind as clutter). A run that opened
            the file just before it was deleted notices that its lock is on a deleted file and
            takes the lock anew, so two runs never both hold it.
    """

    def __init__(self, folder: str | os.PathLike, what: str = "OUTPUT_DIR",
                 description: str = "", *, lock_file: str | os.PathLike | None = None,
                 remove_on_release: bool = False) -> None:
        self.folder = os.fspath(folder)
        self.path = (os.fspath(lock_file) if lock_file is not None
                     else os.path.join(self.folder, LOCK_FILE_NAME))
        self.what = what
        self.description = description
        self.remove_on_release = remove_on_release
        self._file = None

    @property
    def held(self) -> bool:
        """Whether this object holds the lock."""
        return self._file is not None

    def acquire(self) -> None:
        """Take the lock without waiting.

        Raises:
            OutputDirInUseError: another process holds it; the message names its pid.
        """
        if self._file is not None:
            return
        while True:
            f = open(self.path, "a+", encoding="utf-8")  # held open for the run's lifetime
            try:
                try_lock(f)
            except LockHeldError:
                f.close()
                self._raise_in_use()
            if self._is_current(f):
                break
            f.close()  # the holder deleted the file as it let go: lock the new one
        f.seek(0)
        f.truncate()
        f.write(f"{os.getpid()} {self.description}".rstrip() + "\n")
        f.flush()
        self._file = f

    def _is_current(self, f: Any) -> bool:
        """Whether the locked file is still the one at :attr:`path`."""
        try:
            return os.stat(self.path).st_ino == os.fstat(f.fileno()).st_ino
        except OSError:
            return False

    def _raise_in_use(self) -> None:
        owner = _read_owner(self.path)
        pid = owner.split(maxsplit=1)[0] if owner else "unknown"
        detail = owner.split(maxsplit=1)[1] if len(owner.split(maxsplit=1)) > 1 else ""
        raise OutputDirInUseError(
            f"{self.what} {self.folder} is in use by another run (pid {pid}"
            + (f": {detail}" if detail else "")
            + f"; lock file {self.path}). Wait for it to finish, stop it, or choose "
            f"another {self.what}."
        ) from None

    def release(self) -> None:
        """Let go of the lock.

        The lock file stays unless ``remove_on_release`` (it is then deleted while still
        locked; see the class).
        """
        if self._file is None:
            return
        try:
            if self.remove_on_release:
                with contextlib.suppress(OSError):
                    os.unlink(self.path)
            unlock(self._file)
        finally:
            self._file.close()
            self._file = None

    def __enter__(self) -> OutputDirLock:
        self.acquire()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.release()

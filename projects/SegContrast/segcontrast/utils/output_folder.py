"""Output folders a tool owns: marked by a manifest, replaced only when nothing else is in them.

``tools/evaluate.py --output DIR`` writes DIR as a whole. Its rules (:class:`OwnedOutputFolder`):

* **Ownership**: the tool writes ``.segcontrast-output.json`` into the folder; the manifest names
  the tool and lists every file and folder it wrote there.
* **Replacing**: an existing folder is replaced only when it is empty, or when it holds that
  tool's manifest and nothing the manifest does not list. Anything else (a training folder with
  its checkpoints, a user's notes next to an old evaluation, the input files, another tool's
  folder) is refused, naming the folder and what is in it (:class:`OutputFolderTakenError`).
* **Building**: the new folder is built as a hidden sibling, ``.DIR.<random>.tmp``, and swapped
  in only when the run succeeded: DIR renamed to ``.DIR.<random>.old``, the new folder renamed
  to DIR, the old one deleted. Ctrl-C is held back during the swap.
* **Recovery**: a run killed during the swap (``kill -9``, a power cut) leaves the hidden
  folders; the next run into DIR finishes that swap (or puts the previous folder back when the
  new one was not complete) before it starts, and says so in one line.
* **One run at a time**: a lock next to the folder (``.DIR.segcontrast.lock``) is held from
  before the first check to after the swap.

A writer that shares its folder with others (the evaluator in ``OUTPUT_DIR/inference/<dataset>``,
next to Detectron2's ``coco/``) replaces just its own files, the same way:
:func:`replace_own_files`.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from typing import Any

from .atomic_io import atomic_write
from .interrupts import interrupts_deferred, interrupts_ignored
from .output_dir import OutputDirError, OutputDirLock, sibling_lock_file

__all__ = [
    "MANIFEST_NAME",
    "OutputFolderTakenError",
    "OwnedOutputFolder",
    "new_staging_folder",
    "read_manifest",
    "replace_own_files",
    "unlisted_entries",
    "write_manifest",
]

MANIFEST_NAME = ".segcontrast-output.json"
# tempfile.mkdtemp's random part: 8 characters of this alphabet.
_RANDOM = r"[a-z0-9_]{8}"
_STAGING_PREFIX = ".segcontrast-staging."
_TRASH_PREFIX = ".segcontrast-old."


class OutputFolderTakenError(OutputDirError):
    """The output folder holds something the tool did not write; the message lists it."""


def _entries(folder: str) -> list[str]:
    """Every file and folder under ``folder`` but the manifest, sorted.

    Relative and "/"-separated, folders with a trailing "/"; symbolic links are entries, never
    followed.
    """
    found = []
    for root, dirs, files in os.walk(folder):
        rel = os.path.relpath(root, folder)
        prefix = "" if rel == "." else rel.replace(os.sep, "/") + "/"
        for name in dirs:
            linked = os.path.islink(os.path.join(root, name))
            found.append(prefix + name + ("" if linked else "/"))
        found += [prefix + name for name in files]
    return sorted(e for e in found if e != MANIFEST_NAME)


def write_manifest(folder: str, tool: str, *, complete: bool = True) -> None:
    """Write ``folder``'s manifest: ``tool`` wrote everything that is in it now.

    Args:
        folder: the folder.
        tool: who wrote it (``tools/evaluate.py``); a folder is only ever replaced by the same.
        complete: False while the folder is being built (a staging folder).
    """
    content = {"tool": tool, "complete": complete, "entries": _entries(folder)}
    text = json.dumps(content, indent=1) + "\n"
    atomic_write(os.path.join(folder, MANIFEST_NAME), lambda f: f.write(text), mode="w")


def read_manifest(folder: str) -> dict[str, Any] | None:
    """``folder``'s manifest, or None when it has none (or one that is not a manifest)."""
    try:
        with open(os.path.join(folder, MANIFEST_NAME), encoding="utf-8") as f:
            content = json.load(f)
    except (OSError, ValueError):
        return None
    if (not isinstance(content, dict) or not isinstance(content.get("tool"), str)
            or not isinstance(content.get("entries"), list)
            or not all(isinstance(e, str) for e in content["entries"])):
        return None
    return content


def unlisted_entries(folder: str, manifest: dict[str, Any]) -> list[str]:
    """The entries of ``folder`` that its manifest does not list (what someone else put there)."""
    listed = set(manifest["entries"])
    return [e for e in _entries(folder) if e not in listed]


def _shown(entries: list[str], limit: int = 10) -> str:
    text = ", ".join(entries[:limit])
    return text + (f" and {len(entries) - limit} more" if len(entries) > limit else "")


def _top_level(entries: list[str]) -> list[str]:
    """Only the topmost entries: ``a/`` for ``a/``, ``a/b``, ``a/c/``."""
    return [e for e in entries if "/" not in e.rstrip("/")]


def _outermost(entries: list[str]) -> list[str]:
    """The entries not inside another of them: ``a/`` and ``b/c`` for ``a/``, ``a/x``, ``b/c``."""
    folders = {e for e in entries if e.endswith("/")}
    return [e for e in entries
            if not any(e != f and e.startswith(f) for f in folders)]


def _fresh_name(parent: str, prefix: str, suffix: str) -> str:
    """A path in ``parent`` that does not exist, named like ``tempfile.mkdtemp``'s folders."""
    path = tempfile.mkdtemp(prefix=prefix, suffix=suffix, dir=parent)
    os.rmdir(path)
    return path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _remove_tree(path: str) -> None:
    with interrupts_ignored():
        if os.path.islink(path) or not os.path.isdir(path):
            if os.path.lexists(path):
                os.unlink(path)
        else:
            shutil.rmtree(path, ignore_errors=True)


class OwnedOutputFolder:
    """A folder a tool writes as a whole, under the rules of this module.

    Use: :meth:`acquire` (lock, recovery, check), :meth:`stage` (the hidden folder to build in),
    :meth:`publish` (the swap), :meth:`release`; or as a context manager (acquire / release;
    a staging folder that was not published is removed).

    Args:
        path: the folder, as the user gave it (messages show it so).
        tool: the tool's name, written into the manifest (``tools/evaluate.py``).
        what: how the user named the folder (``--output``).
        description: what holds the lock, next to the pid (the command line).
    """

    def __init__(self, path: str | os.PathLike, tool: str, what: str = "--output",
                 description: str = "") -> None:
        self.shown = os.fspath(path)
        self.path = os.path.realpath(os.path.expanduser(self.shown))
        self.tool = tool
        self.what = what
        self._lock = OutputDirLock(self.shown, what=what, description=description,
                                   lock_file=sibling_lock_file(self.path),
                                   remove_on_release=True)
        self.staging: str | None = None
        self.published = False  # whether publish() swapped the new folder in

    @property
    def _parent(self) -> str:
        return os.path.dirname(self.path)

    @property
    def _name(self) -> str:
        return os.path.basename(self.path)

    def acquire(self) -> str | None:
        """Lock, repair what an interrupted run left, and check the folder may be replaced.

        Returns:
            A line saying what was repaired, or None.

        Raises:
            OutputDirError: the path is a file or its parent cannot be made.
            OutputDirInUseError: another run holds the lock.
            OutputFolderTakenError: the folder holds what this tool did not write.
        """
        if os.path.lexists(self.path) and not os.path.isdir(self.path):
            raise OutputDirError(f"{self.what} {self.shown} is a file, not a folder; choose "
                                 f"another {self.what}")
        if self.path == self._parent:
            raise OutputDirError(f"{self.what} {self.shown} is the root folder; choose a folder "
                                 "for the output")
        try:
            os.makedirs(self._parent, exist_ok=True)
            self._lock.acquire()
        except OSError as err:
            raise OutputDirError(
                f"{self.what} {self.shown}: cannot write next to it ({self._parent}: "
                f"{err.strerror or err}); choose a folder in a place you can write to"
            ) from None
        try:
            repaired = self._recover()
            self.check_replaceable()
        except BaseException:
            self._lock.release()
            raise
        return repaired

    def check_replaceable(self) -> None:
        """Refuse a folder that is not empty and not this tool's own, naming what is in it.

        Raises:
            OutputFolderTakenError: naming the folder and (some of) the entries in the way.
        """
        if not os.path.isdir(self.path):
            return
        entries = _entries(self.path)
        manifest = read_manifest(self.path)
        if manifest is None:
            if not entries and not os.path.lexists(os.path.join(self.path, MANIFEST_NAME)):
                return
            raise OutputFolderTakenError(
                f"{self.what} {self.shown} is not a folder {self.tool} wrote (it has no "
                f"{MANIFEST_NAME}) and holds {_shown(_outermost(entries))}. {self.tool} "
                "replaces only its own output folders: choose a new or empty folder, or move "
                "those files away."
            )
        if manifest["tool"] != self.tool:
            raise OutputFolderTakenError(
                f"{self.what} {self.shown} was written by {manifest['tool']}, not {self.tool}: "
                "it is not replaced; choose another folder."
            )
        foreign = unlisted_entries(self.path, manifest)
        if foreign:
            raise OutputFolderTakenError(
                f"{self.what} {self.shown} holds an earlier {self.tool} output and also entries "
                f"{self.tool} did not write: {_shown(_outermost(foreign))}. It is "
                "not replaced: move those away, or choose another folder."
            )

    def stage(self) -> str:
        """Create the hidden sibling folder to build the new output in; return its path."""
        self.staging = tempfile.mkdtemp(prefix=f".{self._name}.", suffix=".tmp",
                                        dir=self._parent)
        write_manifest(self.staging, self.tool, complete=False)
        return self.staging

    def publish(self) -> None:
        """Swap the staging folder in for the folder.

        The folder is checked again first: someone may have added files meanwhile.

        Raises:
            OutputFolderTakenError: the folder is no longer replaceable (the staging folder is
                left for :meth:`discard`).
        """
        staging = self.staging
        assert staging is not None, "stage() first"
        self.check_replaceable()
        write_manifest(staging, self.tool, complete=True)
        os.chmod(staging, 0o777 & ~_umask())  # mkdtemp makes it private
        with interrupts_deferred():
            old = None
            if os.path.isdir(self.path):
                old = _fresh_name(self._parent, f".{self._name}.", ".old")
                os.rename(self.path, old)
            os.rename(staging, self.path)
            self.staging = None
            self.published = True
            if old is not None:
                shutil.rmtree(old, ignore_errors=True)

    def discard(self) -> None:
        """Remove the staging folder (after a failure or an interrupt)."""
        if self.staging is not None:
            _remove_tree(self.staging)
            self.staging = None

    def release(self) -> None:
        """Remove an unpublished staging folder and let go of the lock."""
        try:
            self.discard()
        finally:
            self._lock.release()

    def __enter__(self) -> OwnedOutputFolder:
        self.acquire()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.release()

    def _leftovers(self) -> tuple[list[tuple[str, dict]], list[tuple[str, dict]]]:
        """The staging (``.tmp``) and swapped-out (``.old``) folders that runs left.

        Each with its manifest. A swapped-out folder counts when it has this tool's manifest; a
        staging folder when it has any manifest (while it is built, what the tool runs inside
        it, e.g. the evaluator, may have written its own).
        """
        pattern = re.compile(rf"^\.{re.escape(self._name)}\.{_RANDOM}\.(tmp|old)$")
        staged, old = [], []
        for entry in sorted(os.listdir(self._parent)):
            match = pattern.match(entry)
            path = os.path.join(self._parent, entry)
            if not match or os.path.islink(path) or not os.path.isdir(path):
                continue
            manifest = read_manifest(path)
            if manifest is None or (match[1] == "old" and manifest["tool"] != self.tool):
                continue
            (staged if match[1] == "tmp" else old).append((path, manifest))
        return staged, old

    def _recover(self) -> str | None:
        """Finish (or undo) a swap that a killed run left half done; remove its hidden folders.

        Holding the lock, no other run is building: every such folder is a dead run's.
        """
        staged, old = self._leftovers()
        if not staged and not old:
            return None

        def newest(paths: list[str]) -> str:
            return max(paths, key=os.path.getmtime)

        done = []
        if not os.path.lexists(self.path):
            complete = [p for p, m in staged if m["tool"] == self.tool and m.get("complete")
                        and not unlisted_entries(p, m)]
            own_old = [p for p, m in old if not unlisted_entries(p, m)]
            if complete:
                chosen = newest(complete)
                os.rename(chosen, self.path)
                done.append(f"finished publishing the evaluation it had built "
                            f"({os.path.basename(chosen)})")
            elif own_old:
                chosen = newest(own_old)
                os.rename(chosen, self.path)
                done.append(f"put back the previous folder it had moved to "
                            f"{os.path.basename(chosen)}")
        removed = []
        for path, manifest in staged + old:
            if not os.path.lexists(path):
                continue  # the one moved into place
            if path.endswith(".old") and unlisted_entries(path, manifest):
                continue  # someone's files in there: left alone
            _remove_tree(path)
            removed.append(os.path.basename(path))
        if removed:
            done.append(f"removed its unfinished or replaced folder(s) {', '.join(removed)}")
        return (f"{self.what} {self.shown}: an interrupted run had left it mid-swap; "
                + "; ".join(done) + ".")


def new_staging_folder(folder: str) -> str:
    """A new hidden folder inside ``folder`` to build a set of files in.

    For :func:`replace_own_files`.
    """
    os.makedirs(folder, exist_ok=True)
    return tempfile.mkdtemp(prefix=_STAGING_PREFIX, dir=folder)


def replace_own_files(staging: str, folder: str, tool: str, *,
                      refuse_unlisted: bool = False) -> list[str]:
    """Move the files built in ``staging`` into ``folder`` in place of the set written before.

    The previous set is what ``folder``'s manifest lists (when ``tool`` wrote it) plus whatever
    has the name of a new entry; those are moved aside, the new entries moved in, the manifest
    rewritten, all with Ctrl-C held back, so an interrupt leaves the complete previous set or the
    complete new one. Other files in ``folder`` are not touched.

    Args:
        staging: from :func:`new_staging_folder`, holding the complete new set.
        folder: the folder the set belongs in.
        tool: the writer's name in the manifest.
        refuse_unlisted: refuse to replace an entry of a new entry's name that ``folder``'s
            manifest does not list as ``tool``'s (a user's file), instead of replacing it.

    Returns:
        The new set's top-level entries.

    Raises:
        OutputFolderTakenError: with ``refuse_unlisted``, such an entry exists (nothing was
            changed).
    """
    new = [e.rstrip("/") for e in _top_level(_entries(staging))]
    before = read_manifest(folder)
    listed = before["entries"] if before is not None and before["tool"] == tool else []
    if refuse_unlisted:
        own = {e.split("/", 1)[0].rstrip("/") for e in listed}
        taken = [n for n in new if os.path.lexists(os.path.join(folder, n)) and n not in own]
        if taken:
            raise OutputFolderTakenError(
                f"{folder} holds {_shown(taken)}, which {tool} did not write there; it never "
                "replaces files it did not write: choose another folder or move them")
    stale = [e.rstrip("/") for e in listed if e.split("/", 1)[0].rstrip("/") not in new]
    for entry in os.listdir(folder):  # a trash folder a killed run left
        if re.match(rf"^{re.escape(_TRASH_PREFIX)}{_RANDOM}$", entry):
            _remove_tree(os.path.join(folder, entry))
    with interrupts_deferred():
        trash = tempfile.mkdtemp(prefix=_TRASH_PREFIX, dir=folder)
        for rel in [*new, *stale]:
            source = os.path.join(folder, rel)
            if not os.path.lexists(source) or (rel in stale and os.path.isdir(source)
                                               and not os.path.islink(source)):
                continue
            target = os.path.join(trash, rel)
            os.makedirs(os.path.dirname(target), exist_ok=True)
            os.rename(source, target)
        for rel in sorted({os.path.dirname(r) for r in stale if os.path.dirname(r)},
                          key=len, reverse=True):
            try:
                os.rmdir(os.path.join(folder, rel))  # a folder of the old set left empty
            except OSError:
                pass
        for name in new:
            os.rename(os.path.join(staging, name), os.path.join(folder, name))
        entries = [e for e in _entries(folder) if e.split("/", 1)[0].rstrip("/") in new]
        text = json.dumps({"tool": tool, "complete": True, "entries": entries}, indent=1) + "\n"
        atomic_write(os.path.join(folder, MANIFEST_NAME), lambda f: f.write(text), mode="w")
        shutil.rmtree(trash, ignore_errors=True)
        shutil.rmtree(staging, ignore_errors=True)
    return new

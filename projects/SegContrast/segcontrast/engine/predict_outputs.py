"""Where ``tools/predict.py`` writes: a name of its own per output, never over another's file.

Every input file gets its own output names, made from its whole file name (extension
included), so ``a.jpg`` and ``a.png``, or ``b.png`` and ``b_semantic.png``, never share one:

* ``<file name>.overlay.png``: the overlay (``a.jpg`` -> ``a.jpg.overlay.png``);
* ``<file name>.semantic.png``: the label PNG of ``--semantic-png`` (``a.jpg.semantic.png``).

Two inputs with the same file name in different folders (a recursive glob) get ``-2``, ``-3``,
... before the extension of the later ones (``a-2.png.overlay.png``), never a name another input
has. ``predictions.json`` names each result's input file as given.

Before anything is written the plan refuses (exit code 2, :class:`PredictOutputError`):

* an ``--output`` folder that holds an input file (outputs are named after their inputs and
  would land among them; an output folder inside the input folder is fine when no input is in
  it);
* an output name that already exists but that no earlier ``tools/predict.py`` run into the
  folder wrote: each run lists what it writes in ``predict_outputs.json``, and a rerun replaces
  only files listed there.

The list is written before the first image (every name the run may write, ``"complete":
false``) and again at the end (what was written, ``"complete": true``; ``false`` after an
interruption), so an interrupted or killed run can be rerun into the same folder.

This module imports neither torch nor Detectron2.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ..utils import atomic_write
from ..utils.output_dir import OutputDirError

__all__ = [
    "LABELS_SUFFIX",
    "MANIFEST_NAME",
    "OVERLAY_SUFFIX",
    "PREDICTIONS_NAME",
    "InputOutputs",
    "OutputPlan",
    "PredictOutputError",
    "output_keys",
    "plan_outputs",
]

MANIFEST_NAME = "predict_outputs.json"
PREDICTIONS_NAME = "predictions.json"
OVERLAY_SUFFIX = ".overlay.png"
LABELS_SUFFIX = ".semantic.png"
_TOOL = "tools/predict.py"


class PredictOutputError(OutputDirError):
    """An ``--output`` folder that ``tools/predict.py`` must not write into; says why."""


@dataclass(frozen=True)
class InputOutputs:
    """The files one input gets.

    Attributes:
        input: the input image, as given.
        overlay: the overlay's file name in the output folder (None: no overlays).
        semantic: the label PNG's file name (None: no ``--semantic-png``).
    """

    input: Path
    overlay: str | None
    semantic: str | None


@dataclass
class OutputPlan:
    """The names a run may write, checked against the folder.

    Attributes:
        folder: the output folder (absolute).
        items: per input, its output names (in the order of the inputs).
        earlier: names listed by an earlier run's ``predict_outputs.json`` that still exist.
        written: names this run has written so far.
    """

    folder: str
    items: list[InputOutputs]
    earlier: set[str] = field(default_factory=set)
    written: list[str] = field(default_factory=list)

    def path(self, name: str) -> str:
        """The path of an output name."""
        return os.path.join(self.folder, name)

    def names(self) -> list[str]:
        """Every name the run may write (the list itself included)."""
        names = [PREDICTIONS_NAME, MANIFEST_NAME]
        for item in self.items:
            names += [n for n in (item.overlay, item.semantic) if n]
        return names

    def start(self) -> None:
        """Write the list before the first output: every name this run may write."""
        self._write_manifest(set(self.names()), complete=False)

    def record(self, name: str) -> None:
        """Note that ``name`` is about to be written (an interrupted write leaves no file)."""
        self.written.append(name)

    def finish(self, complete: bool) -> None:
        """Write the list of what is there now: this run's files and the earlier runs'."""
        written = {n for n in self.written if os.path.isfile(self.path(n))}
        self._write_manifest({MANIFEST_NAME, *written}, complete=complete)

    def _write_manifest(self, names: set[str], complete: bool) -> None:
        present = {n for n in self.earlier if os.path.isfile(self.path(n))}
        document = {
            "tool": _TOOL,
            "about": ("files written into this folder by tools/predict.py; a rerun replaces "
                      "only these"),
            "complete": complete,
            "files": sorted(present | names),
            "inputs": [{"input": str(item.input), "overlay": item.overlay,
                        "semantic": item.semantic} for item in self.items],
        }
        atomic_write(self.path(MANIFEST_NAME),
                     lambda f: json.dump(document, f, indent=1), mode="w")


def output_keys(paths: Sequence[Path]) -> list[str]:
    """One distinct name per input, from which its output names are made.

    The input's file name; a later input with a file name already taken (compared without case,
    for case-insensitive file systems) gets ``-2``, ``-3``, ... before its extension, skipping
    any name another input has.

    Args:
        paths: the input files.

    Returns:
        One key per input, in the same order.
    """
    taken = {p.name.casefold() for p in paths}
    used: set[str] = set()
    keys = []
    for path in paths:
        key = path.name
        if key.casefold() in used:
            stem, suffix = os.path.splitext(path.name)
            n = 2
            while f"{stem}-{n}{suffix}".casefold() in taken:
                n += 1
            key = f"{stem}-{n}{suffix}"
            taken.add(key.casefold())
        used.add(key.casefold())
        keys.append(key)
    return keys


def _real_folder(path: str | os.PathLike) -> str:
    return os.path.normcase(os.path.realpath(path))


def _check_no_input_inside(paths: Sequence[Path], folder: str, shown: str) -> None:
    real = _real_folder(folder)
    # The folder the input is listed in, and the one its file really is in (a link).
    inside = [p for p in paths if real in (_real_folder(p.parent),
                                           _real_folder(os.path.dirname(os.path.realpath(p))))]
    if inside:
        more = f" (and {len(inside) - 1} more input files)" if len(inside) > 1 else ""
        raise PredictOutputError(
            f"--output {shown} holds the input file {inside[0]}{more}: outputs are named after "
            "their inputs and would land among them; choose another --output folder (a new "
            "subfolder of the input folder is fine)"
        )


def _earlier_names(folder: str, shown: str) -> set[str]:
    """The names an earlier run's list holds; a list that is not one is refused."""
    path = os.path.join(folder, MANIFEST_NAME)
    if not os.path.lexists(path):
        return set()
    try:
        with open(path, encoding="utf-8") as f:
            document = json.load(f)
    except (OSError, ValueError) as err:
        document = err
    files = document.get("files") if isinstance(document, dict) else None
    if not (isinstance(document, dict) and document.get("tool") == _TOOL
            and isinstance(files, list) and all(isinstance(n, str) for n in files)):
        raise PredictOutputError(
            f"--output {shown} holds {path}, which is not the list of files an earlier "
            f"{_TOOL} run wrote there; nothing that is not this tool's is overwritten: choose "
            "another --output folder or move that file"
        )
    # Only plain names: the list must not point the run at files elsewhere.
    return {n for n in files if n and os.path.basename(n) == n and n not in (".", "..")}


def plan_outputs(paths: Sequence[Path], output_dir: str | os.PathLike, *, overlays: bool = True,
                 semantic_png: bool = False, shown: str | None = None) -> OutputPlan:
    """Name every output and check that the folder can take them without losing a file.

    Args:
        paths: the input images.
        output_dir: the output folder (it may not exist yet).
        overlays: the run draws overlays.
        semantic_png: the run writes label PNGs.
        shown: the folder as the user gave it, for messages (default ``output_dir``).

    Returns:
        The plan; nothing is written yet.

    Raises:
        PredictOutputError: the folder holds an input file, a file of one of the names that
            no earlier run there wrote, or a ``predict_outputs.json`` of something else.
    """
    folder = os.path.abspath(os.fspath(output_dir))
    shown = os.fspath(output_dir) if shown is None else shown
    keys = output_keys(paths)
    items = [InputOutputs(path, key + OVERLAY_SUFFIX if overlays else None,
                          key + LABELS_SUFFIX if semantic_png else None)
             for path, key in zip(paths, keys, strict=True)]
    plan = OutputPlan(folder, items)
    if not os.path.isdir(folder):
        return plan
    _check_no_input_inside(paths, folder, shown)
    plan.earlier = _earlier_names(folder, shown)
    strangers = [n for n in plan.names() if n != MANIFEST_NAME and n not in plan.earlier
                 and os.path.lexists(plan.path(n))]
    if strangers:
        more = f" (and {len(strangers) - 1} more)" if len(strangers) > 1 else ""
        raise PredictOutputError(
            f"--output {shown} already holds {plan.path(strangers[0])}{more}, which no earlier "
            f"{_TOOL} run into that folder wrote (it is not listed in its {MANIFEST_NAME}); "
            "nothing that is not this tool's is overwritten: choose another --output folder or "
            "move the file"
        )
    return plan

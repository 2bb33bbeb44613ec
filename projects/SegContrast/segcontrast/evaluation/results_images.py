"""Which ground-truth image a result names: by its ``image_id``, or by a file name.

Frameworks name the images of their results in three ways: by the ground truth's image id
(Detectron2, MMDetection), by the image's file (``tools/predict.py`` writes a ``file_name``), or
by the file's stem in ``image_id`` (Ultralytics: an integer when the stem is a number, such as
``0`` for ``0.jpg``, else the stem as a string). Where image files are named by numbers, an
Ultralytics stem can also be an image id of the ground truth, of another image: scoring it as
an id scores every result against the wrong image.

:func:`choose_matching` reads every ``(image_id, file_name)`` pair of a results file and decides
how to match: by id when every result names an image that way and no reading disagrees; by file
name when only that reading finds every image (or when each result's ``file_name`` and stem agree
against its id); otherwise it refuses, and the user says which with ``--match-file-names`` or
``--match-image-ids``.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["FileNames", "MatchChoice", "choose_matching", "normalized_id", "stem_text"]

_SHOWN = 3  # examples in a message


def normalized_id(value: Any) -> Any:
    """An id as pycocotools compares it: an integral float (``50.0``) is the integer 50.

    Args:
        value: an ``image_id`` or ``category_id`` as the JSON gave it.

    Returns:
        The integer for an integral float, else the value unchanged (booleans stay booleans).
    """
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def stem_text(image_id: Any) -> str | None:
    """The file stem an ``image_id`` stands for when a framework wrote a stem there.

    Args:
        image_id: a result's ``image_id``.

    Returns:
        The string itself, an integer's digits (``7`` -> ``"7"``), or None for anything else.
    """
    image_id = normalized_id(image_id)
    if isinstance(image_id, str):
        return image_id
    if isinstance(image_id, int) and not isinstance(image_id, bool):
        return str(image_id)
    return None


class FileNames:
    """The ground truth's file names and file stems, each mapped to its image id.

    A name or stem that two images share (``a/1.png`` and ``b/1.png``) maps to nothing.

    Args:
        gt_file_names: image id -> ``file_name``.
    """

    def __init__(self, gt_file_names: Mapping[Any, str]) -> None:
        self.files = dict(gt_file_names)
        names = Counter(os.path.basename(n) for n in self.files.values())
        stems = Counter(os.path.splitext(os.path.basename(n))[0] for n in self.files.values())
        self._by_name = {os.path.basename(n): i for i, n in self.files.items()
                         if names[os.path.basename(n)] == 1}
        self._by_stem = {os.path.splitext(os.path.basename(n))[0]: i
                         for i, n in self.files.items()
                         if stems[os.path.splitext(os.path.basename(n))[0]] == 1}

    def by_name(self, file_name: str) -> Any:
        """The image whose file has this last path component, or None."""
        return self._by_name.get(os.path.basename(file_name))

    def by_stem(self, stem: str | None) -> Any:
        """The image whose file has this stem, or None."""
        return self._by_stem.get(stem) if stem is not None else None

    def shown(self, image_id: Any) -> str:
        """``"image 5 ('0.jpg')"``."""
        return f"image {image_id!r} ({os.path.basename(self.files.get(image_id, '?'))!r})"


@dataclass
class MatchChoice:
    """How a results file's images are matched to the ground truth.

    Attributes:
        by_file_name: match each result by its ``file_name`` (or its ``image_id`` as a stem).
        warning: what the user must know when the file names were chosen without being asked.
        refusal: why neither reading can be trusted (naming the flags that decide), or None.
        contradictions: ``(result index, message)`` of results whose ``file_name`` names
            another image than their ``image_id``.
    """

    by_file_name: bool = False
    warning: str | None = None
    refusal: str | None = None
    contradictions: list[tuple[int, str]] = field(default_factory=list)


@dataclass
class _Readings:
    id_complete: bool = True
    name_complete: bool = True
    all_have_files: bool = True
    stems_agree_with_files: bool = True
    stem_disagreements: list[tuple[Any, Any, Any]] = field(default_factory=list)
    file_disagreements: set[tuple[Any, str]] = field(default_factory=set)
    count: int = 0


def _pairs(data: list) -> Iterable[tuple[Any, Any]]:
    """The distinct ``(image_id, file_name)`` of the results (unhashable values left out)."""
    try:
        return {(r.get("image_id"), r.get("file_name")) for r in data}
    except (AttributeError, TypeError):  # not every result is a dict of hashable values
        pairs = set()
        for r in data:
            if isinstance(r, dict):
                try:
                    pairs.add((r.get("image_id"), r.get("file_name")))
                except TypeError:
                    continue
        return pairs


def _read(pairs: Iterable[tuple[Any, Any]], images: Mapping[Any, Any],
          names: FileNames) -> _Readings:
    out = _Readings()
    for image_id, file_name in pairs:
        out.count += 1
        key = normalized_id(image_id)
        by_id = key if _is_image(key, images) else None
        by_stem = names.by_stem(stem_text(image_id))
        has_file = isinstance(file_name, str)
        by_name = names.by_name(file_name) if has_file else by_stem
        out.id_complete &= by_id is not None
        out.name_complete &= by_name is not None
        out.all_have_files &= has_file
        if has_file and by_stem != by_name:
            out.stems_agree_with_files = False
        if by_id is not None and by_name is not None and by_id != by_name:
            if has_file:
                out.file_disagreements.add((image_id, file_name))
            else:
                out.stem_disagreements.append((image_id, by_id, by_name))
    return out


def _is_image(key: Any, images: Mapping[Any, Any]) -> bool:
    if isinstance(key, bool) or not isinstance(key, int):
        return False  # the ground truth's ids are integers
    return key in images


def choose_matching(data: list, images: Mapping[Any, Any],
                    gt_file_names: Mapping[Any, str]) -> MatchChoice:
    """Decide whether a results file names its images by id or by file (see the module doc).

    Args:
        data: the parsed results list.
        images: the ground truth's image id -> anything.
        gt_file_names: the ground truth's image id -> ``file_name``.

    Returns:
        The choice; ``refusal`` or ``contradictions`` set when the file cannot be scored
        without the user saying how its images are named.
    """
    names = FileNames(gt_file_names)
    readings = _read(_pairs(data), images, names)
    if not readings.count:
        return MatchChoice()
    disagree = bool(readings.file_disagreements or readings.stem_disagreements)
    if readings.id_complete and (not disagree or not readings.name_complete):
        if readings.file_disagreements:
            return MatchChoice(contradictions=_contradictions(data, images, names, readings))
        # A stem that is also another image's id, while other ids are no stems: ids they are.
        return MatchChoice()
    if readings.name_complete and (not readings.id_complete or (
            readings.all_have_files and readings.stems_agree_with_files)):
        return MatchChoice(by_file_name=True, warning=_warning(readings))
    if readings.name_complete:
        return MatchChoice(refusal=_ambiguous(readings, names))
    return MatchChoice()  # neither reading finds every image: each result says what is wrong


def _warning(readings: _Readings) -> str:
    how = ("its 'file_name'" if readings.all_have_files
           else "its file name (a 'file_name', or the file stem in image_id as Ultralytics "
           "writes it)")
    why = ("are not image ids of the ground truth" if not readings.id_complete
           else "name other images than their 'file_name's and file stems do")
    return (f"the results' image_ids {why}: each result was matched to its image by {how}; "
            "--match-file-names does so explicitly, --match-image-ids takes image_id as the "
            "id")


def _order(value: Any) -> tuple:
    """Sorts ids: numbers by value, before anything else by its repr."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return (0, value, "")
    return (1, 0, repr(value))


def _ambiguous(readings: _Readings, names: FileNames) -> str:
    examples = []
    for image_id, by_id, by_stem in sorted(readings.stem_disagreements,
                                           key=lambda d: _order(d[0]))[:_SHOWN]:
        examples.append(f"image_id {image_id!r} is the id of {names.shown(by_id)} but the "
                        f"file stem of {names.shown(by_stem)}")
    for image_id, file_name in sorted(readings.file_disagreements,
                                      key=lambda d: (_order(d[0]), d[1]))[:_SHOWN]:
        examples.append(f"image_id {image_id!r} is the id of "
                        f"{names.shown(image_id)} but file_name {file_name!r} is "
                        f"{names.shown(names.by_name(file_name))}")
    count = len(readings.stem_disagreements) + len(readings.file_disagreements)
    more = f" ({count} such image_ids)" if count > len(examples) else ""
    return ("every result's image_id is an image id of the ground truth and also names an "
            "image by its file, and the two disagree: " + "; ".join(examples) + more
            + ". Ultralytics writes each image's file stem as its image_id. Say which one the "
            "results mean: --match-file-names (by file name or stem) or --match-image-ids "
            "(by id)")


def _contradictions(data: list, images: Mapping[Any, Any], names: FileNames,
                    readings: _Readings) -> list[tuple[int, str]]:
    out = []
    for index, result in enumerate(data):
        if not isinstance(result, dict):
            continue
        try:
            key = (result.get("image_id"), result.get("file_name"))
            if key not in readings.file_disagreements:
                continue
        except TypeError:
            continue
        image_id, file_name = key
        out.append((index, f"image_id {image_id!r} is {names.shown(normalized_id(image_id))} "
                    f"but the result's file_name {file_name!r} is "
                    f"{names.shown(names.by_name(file_name))}: --match-file-names matches by "
                    "file name, --match-image-ids by id"))
    return out

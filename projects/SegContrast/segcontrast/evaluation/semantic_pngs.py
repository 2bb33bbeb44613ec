"""A semantic model's label PNGs (``--semantic-dir``): one per image, 0 background, class k = k + 1.

An image's PNG is ``<file stem>_semantic.png`` (as ``tools/predict.py --semantic-png`` writes
it; that folder also holds ``<file stem>.png`` overlays) or else ``<file stem>.png``. Every PNG's
size and mode are checked before scoring starts (reading only the headers); its labels when it
is read, one image at a time.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

from .results_file import ResultProblem, ResultsFileError

__all__ = ["LABEL_MODES", "SemanticPngs"]

# Single-channel modes whose pixel values are the labels themselves.
LABEL_MODES = ("L", "P", "I;16", "I;16B", "I;16L", "I")


@dataclass(frozen=True)
class _Image:
    path: str
    height: int
    width: int


class SemanticPngs:
    """The label PNGs of a folder, matched to the ground-truth images by file stem.

    Args:
        folder: the ``--semantic-dir``.
        images: image id -> ``(file_name, height, width)`` of the ground truth.
        num_classes: K; labels above K are refused.

    Raises:
        ResultsFileError: every image without a PNG, and every PNG of the wrong size or mode
            (all at once, each naming the image id and the file).
    """

    def __init__(self, folder: str, images: Mapping[Any, tuple[str, int, int]],
                 num_classes: int) -> None:
        self.folder = folder
        self.num_classes = int(num_classes)
        if not os.path.isdir(folder):
            raise ResultsFileError(folder, [ResultProblem(
                "semantic_dir_missing", "--semantic-dir does not exist or is not a folder")])
        problems: list[ResultProblem] = []
        owners: dict[str, Any] = {}
        self._images: dict[Any, _Image] = {}
        for image_id, (file_name, height, width) in images.items():
            stem = os.path.splitext(os.path.basename(file_name))[0]
            if stem in owners:
                problems.append(_problem("semantic_stem_clash", image_id, (
                    f"has the file stem {stem!r} of image {owners[stem]!r} too: their label "
                    "PNGs cannot be told apart")))
                continue
            owners[stem] = image_id
            candidates = [os.path.join(folder, f"{stem}_semantic.png"),
                          os.path.join(folder, f"{stem}.png")]
            path = next((p for p in candidates if os.path.isfile(p)), None)
            if path is None:
                problems.append(_problem("semantic_png_missing", image_id, (
                    f"no label PNG for {file_name}: looked for {candidates[0]} and "
                    f"{candidates[1]}")))
                continue
            problem = _check_header(path, height, width)
            if problem:
                problems.append(_problem("semantic_png_invalid", image_id, problem))
                continue
            self._images[image_id] = _Image(path, int(height), int(width))
        if problems:
            raise ResultsFileError(folder, problems)

    def path(self, image_id: Any) -> str:
        """The PNG of an image."""
        return self._images[image_id].path

    def labels(self, image_id: Any) -> np.ndarray:
        """Read one image's labels.

        Args:
            image_id: a ground-truth image id.

        Returns:
            (H, W) uint8 labels.

        Raises:
            ResultsFileError: labels above K (naming the largest and how many pixels hold one).
        """
        image = self._images[image_id]
        with Image.open(image.path) as im:
            labels = np.asarray(im)
        too_high = labels > self.num_classes
        if too_high.any():
            raise ResultsFileError(self.folder, [_problem("semantic_label_out_of_range", image_id, (
                f"{image.path} holds label {int(labels.max())} in {int(too_high.sum())} pixel(s); "
                f"labels must be 0 (background) to {self.num_classes} (class k is k + 1, "
                f"{self.num_classes} classes)"))])
        if labels.min() < 0:
            raise ResultsFileError(self.folder, [_problem("semantic_label_out_of_range", image_id,
                                                          f"{image.path} holds negative labels")])
        return labels.astype(np.uint8)


def _problem(code: str, image_id: Any, message: str) -> ResultProblem:
    return ResultProblem(code, f"image_id {image_id!r}: {message}")


def _check_header(path: str, height: int, width: int) -> str | None:
    try:
        with Image.open(path) as im:
            size, mode, kind = im.size, im.mode, im.format
    except (OSError, ValueError, SyntaxError) as err:  # Pillow raises all three
        return f"{path} cannot be read as an image ({err})"
    if kind != "PNG":
        return f"{path} is a {kind} file; expected a PNG"
    if mode not in LABEL_MODES:
        return (f"{path} is a {mode} image; expected a single-channel label PNG (mode L: 0 "
                "background, class k as k + 1), not an overlay")
    if size != (width, height):
        return (f"{path} is {size[0]}x{size[1]} (width x height); the image is {width}x{height}")
    return None

"""A semantic model's label PNGs (``--semantic-dir``): one per image, 0 background, class k = k + 1.

An image's PNG is ``<file name>.semantic.png`` (as ``tools/predict.py --semantic-png`` writes
it: ``a.jpg`` -> ``a.jpg.semantic.png``; that folder also holds ``<file name>.overlay.png``
overlays), else ``<file stem>_semantic.png`` (as earlier versions wrote it), else
``<file stem>.png``. Every PNG's size and mode are checked before scoring starts (reading only
the headers); its labels when it is read, one image at a time.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from .results_file import ResultProblem, ResultsFileError

__all__ = ["LABEL_MODES", "SemanticPngs", "describe_mode"]

# Single-channel modes whose pixel values are the labels themselves.
LABEL_MODES = ("L", "P", "I;16", "I;16B", "I;16L", "I")

# Pillow's modes in words, for messages read by people who never met Pillow's names.
_MODE_WORDS = {
    "1": "a 1-bit (black and white) image",
    "LA": "a grayscale image with transparency (2 channels)",
    "PA": "a palette image with transparency (2 channels)",
    "RGB": "an RGB colour image (3 channels)",
    "RGBA": "an RGBA colour image with transparency (4 channels)",
    "RGBX": "an RGB colour image (4 channels)",
    "CMYK": "a CMYK colour image (4 channels)",
    "YCbCr": "a YCbCr colour image (3 channels)",
    "LAB": "a Lab colour image (3 channels)",
    "HSV": "an HSV colour image (3 channels)",
    "F": "a 32-bit floating-point image",
}


def describe_mode(mode: str) -> str:
    """A Pillow image mode in words: ``"1"`` -> ``"a 1-bit (black and white) image"``."""
    return _MODE_WORDS.get(mode, f"an image of Pillow mode {mode!r}")


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
            name = os.path.basename(file_name)
            stem = os.path.splitext(name)[0]
            candidates = [os.path.join(folder, f"{name}.semantic.png"),
                          os.path.join(folder, f"{stem}_semantic.png"),
                          os.path.join(folder, f"{stem}.png")]
            path = next((p for p in candidates if os.path.isfile(p)), None)
            if path is None:
                problems.append(_problem("semantic_png_missing", image_id, (
                    f"no label PNG for {file_name}: looked for {candidates[0]}, "
                    f"{candidates[1]} and {candidates[2]}")))
                continue
            if path in owners:
                problems.append(_problem("semantic_stem_clash", image_id, (
                    f"would read {path}, the label PNG of image {owners[path]!r}: two images "
                    "whose PNGs cannot be told apart (the same file name, or the same stem "
                    "with the older naming)")))
                continue
            owners[path] = image_id
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
        from PIL import Image  # only with --semantic-dir

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
    from PIL import Image

    try:
        with Image.open(path) as im:
            size, mode, kind = im.size, im.mode, im.format
    except (OSError, ValueError, SyntaxError) as err:  # Pillow raises all three
        return f"{path} cannot be read as an image ({err})"
    if kind != "PNG":
        return f"{path} is a {kind} file; expected a PNG"
    if mode not in LABEL_MODES:
        return (f"{path} is {describe_mode(mode)}; expected a single-channel label PNG of "
                "8 or 16 bits (mode L: 0 background, class k as k + 1), not an overlay")
    if size != (width, height):
        return (f"{path} is {size[0]}x{size[1]} (width x height); the image is {width}x{height}")
    return None

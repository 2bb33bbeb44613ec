"""Checking COCO run-length encoded (RLE) masks before pycocotools ever sees them.

pycocotools' C code trusts its input: a compressed ``counts`` string that ends in the middle of
a number is read past its end, and counts that add up to more than ``height * width`` are
written past the mask buffer. So every RLE is parsed here, in Python, first.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pycocotools.mask as mask_util

__all__ = ["CheckedRLE", "RLEError", "check_rle", "rle_counts_from_string"]

# A count never needs more than 7 characters (35 bits); more means garbage.
_MAX_CHARS_PER_COUNT = 7
_MAX_COUNT = 2**32 - 1


class RLEError(ValueError):
    """An RLE that must not be decoded; ``code`` is "rle_size_mismatch" or "rle_malformed"."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class CheckedRLE:
    """A valid RLE in compressed form.

    Attributes:
        rle: ``{"size": [height, width], "counts": str}``, safe for ``pycocotools.mask``.
        area: number of foreground pixels.
    """

    rle: dict
    area: int


def rle_counts_from_string(counts: str) -> list[int]:
    """Decode COCO's compressed ``counts`` string (pycocotools' ``rleFrString``) in Python.

    Args:
        counts: the compressed counts.

    Returns:
        The run lengths, alternating background and foreground, starting with background.

    Raises:
        RLEError: a character outside COCO's alphabet, a number cut off at the end, or a
            negative or too large run length.
    """
    runs: list[int] = []
    pos = 0
    n = len(counts)
    while pos < n:
        value, k, more = 0, 0, True
        while more:
            if pos >= n:
                raise RLEError("rle_malformed", "compressed counts end in the middle of a number")
            char = ord(counts[pos]) - 48
            if not 0 <= char < 64:
                raise RLEError(
                    "rle_malformed",
                    f"compressed counts contain {counts[pos]!r} at position {pos}, outside "
                    "COCO's alphabet ('0'..'o')",
                )
            value |= (char & 0x1F) << (5 * k)
            more = bool(char & 0x20)
            pos += 1
            k += 1
            if k > _MAX_CHARS_PER_COUNT:
                raise RLEError("rle_malformed", f"compressed counts hold a number longer than "
                               f"{_MAX_CHARS_PER_COUNT} characters at position {pos}")
            if not more and char & 0x10:
                value |= -1 << (5 * k)
        if len(runs) > 2:
            # Runs after the first two are stored as differences to the run two places back.
            value += runs[-2]
        if not 0 <= value <= _MAX_COUNT:
            raise RLEError("rle_malformed", f"run length {value} (run {len(runs)}) is out of range")
        runs.append(value)
    return runs


def _size(segm: dict, height: int, width: int) -> tuple[int, int]:
    size = segm.get("size")
    if (
        not isinstance(size, (list, tuple))
        or len(size) != 2
        or not all(isinstance(v, int) and not isinstance(v, bool) for v in size)
    ):
        raise RLEError("rle_malformed", f"RLE 'size' must be [height, width], found {size!r}")
    if tuple(size) != (height, width):
        raise RLEError(
            "rle_size_mismatch",
            f"RLE size {list(size)} (height, width) differs from the image's "
            f"[{height}, {width}]",
        )
    return height, width


def check_rle(segm: dict[str, Any], height: int, width: int) -> CheckedRLE:
    """Check an RLE segmentation against its image and return it compressed.

    Args:
        segm: ``{"size": [h, w], "counts": str | list[int]}``.
        height: the image's height in the JSON.
        width: the image's width in the JSON.

    Returns:
        The RLE in compressed form and its area.

    Raises:
        RLEError: with ``code`` "rle_size_mismatch" or "rle_malformed" and a message saying
            what was expected and found.
    """
    height, width = _size(segm, height, width)
    counts = segm.get("counts")
    if isinstance(counts, str):
        runs = rle_counts_from_string(counts)
    elif isinstance(counts, list):
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in counts):
            raise RLEError("rle_malformed", "uncompressed RLE counts must be integers")
        if any(v < 0 for v in counts):
            raise RLEError("rle_malformed", "uncompressed RLE counts must not be negative")
        runs = counts
    else:
        raise RLEError(
            "rle_malformed",
            f"RLE 'counts' must be a string or a list of integers, found "
            f"{type(counts).__name__}",
        )
    total = sum(runs)
    if total != height * width:
        raise RLEError(
            "rle_malformed",
            f"RLE counts add up to {total} pixels, expected height * width = "
            f"{height} * {width} = {height * width}",
        )
    if isinstance(counts, str):
        rle = {"size": [height, width], "counts": counts}
    else:
        compressed = mask_util.frPyObjects({"size": [height, width], "counts": counts},
                                           height, width)
        rle = {"size": [height, width], "counts": compressed["counts"].decode("ascii")}
    return CheckedRLE(rle=rle, area=int(sum(runs[1::2])))

"""COCO run-length encoded (RLE) masks: the one decoder of compressed counts, and its checks.

pycocotools' C code trusts its input: a compressed ``counts`` string that ends in the middle of
a number is read past its end, and counts that add up to more than ``height * width`` are
written past the mask buffer. So every RLE is decoded and checked here first
(:func:`rle_counts_to_runs`, vectorised with numpy), and the evaluator decodes ground truth with
the same function.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pycocotools.mask as mask_util

__all__ = ["CheckedRLE", "RLEError", "check_rle", "rle_counts_to_runs", "rle_size"]

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


def _malformed(message: str, mask: int, multiple: bool) -> RLEError:
    return RLEError("rle_malformed", f"mask {mask}: {message}" if multiple else message)


def rle_counts_to_runs(counts: Sequence[bytes | str]) -> tuple[np.ndarray, np.ndarray]:
    """Decode COCO's compressed ``counts`` (pycocotools' ``rleFrString``), many masks at once.

    The one decoder of compressed RLE in the project: the validator checks files with it and the
    evaluator decodes ground truth with it. Everything pycocotools' C code would trust is checked.

    Args:
        counts: compressed counts strings (str or ASCII bytes), one per mask.

    Returns:
        runs: all run lengths concatenated (int64), alternating background and foreground and
            starting with background within each mask.
        offsets: (len(counts) + 1,) start of each mask's runs in ``runs``.

    Raises:
        RLEError: code "rle_malformed": a character outside COCO's alphabet ('0'..'o'), a number
            cut off at the end, a number longer than 7 characters, or a run length that is
            negative or above 2**32 - 1.
    """
    multiple = len(counts) > 1
    encoded = []
    for index, c in enumerate(counts):
        if isinstance(c, str):
            try:
                c = c.encode("ascii")
            except UnicodeEncodeError as err:
                raise _malformed(f"compressed counts contain {c[err.start]!r} at position "
                                 f"{err.start}, outside COCO's alphabet ('0'..'o')",
                                 index, multiple) from None
        encoded.append(c)
    lengths = np.array([len(c) for c in encoded], dtype=np.int64)
    char_offsets = np.concatenate(([0], np.cumsum(lengths)))
    if char_offsets[-1] == 0:
        return np.zeros(0, np.int64), np.zeros(len(encoded) + 1, np.int64)
    chars = np.frombuffer(b"".join(encoded), dtype=np.uint8).astype(np.int64) - 48
    bad = np.flatnonzero((chars < 0) | (chars >= 64))
    if bad.size:
        mask = int(np.searchsorted(char_offsets, bad[0], side="right") - 1)
        position = int(bad[0] - char_offsets[mask])
        raise _malformed(f"compressed counts contain {chr(chars[bad[0]] + 48)!r} at position "
                         f"{position}, outside COCO's alphabet ('0'..'o')", mask, multiple)
    continues = (chars & 0x20) != 0
    last_chars = char_offsets[1:][lengths > 0] - 1
    if continues[last_chars].any():
        mask = int(np.flatnonzero(lengths > 0)[np.argmax(continues[last_chars])])
        raise _malformed("compressed counts end in the middle of a number", mask, multiple)
    ends = np.flatnonzero(~continues)
    starts = np.concatenate(([0], ends[:-1] + 1))
    nchars = ends - starts + 1
    if nchars.max() > _MAX_CHARS_PER_COUNT:
        at = int(ends[np.argmax(nchars)])
        mask = int(np.searchsorted(char_offsets, at, side="right") - 1)
        raise _malformed(f"compressed counts hold a number longer than {_MAX_CHARS_PER_COUNT} "
                         f"characters at position {at - char_offsets[mask]}", mask, multiple)
    position = np.arange(len(chars)) - np.repeat(starts, nchars)
    values = np.add.reduceat((chars & 0x1F) << (5 * position), starts)
    negative = (chars[ends] & 0x10) != 0
    values[negative] -= np.left_shift(1, 5 * nchars[negative])
    numbers_per_mask = np.diff(np.searchsorted(ends, char_offsets, side="left"))
    offsets = np.concatenate(([0], np.cumsum(numbers_per_mask)))
    mask_of = np.repeat(np.arange(len(encoded)), numbers_per_mask)
    index = np.arange(len(values)) - offsets[mask_of]
    # From the fourth count on, each is stored as the difference to the count two places
    # earlier: a cumulative sum along each parity (index 0 excluded), restarted per mask.
    runs = values.copy()
    for parity in (0, 1):
        sel = np.flatnonzero((index % 2 == parity) & (index > 0))
        if sel.size == 0:
            continue
        total = np.cumsum(values[sel])
        owner = mask_of[sel]
        first = np.concatenate(([True], owner[1:] != owner[:-1]))
        restart = np.maximum.accumulate(np.where(first, np.arange(len(sel)), 0))
        before = np.where(restart > 0, total[np.maximum(restart - 1, 0)], 0)
        runs[sel] = total - before
    out_of_range = np.flatnonzero((runs < 0) | (runs > _MAX_COUNT))
    if out_of_range.size:
        at = int(out_of_range[0])
        raise _malformed(f"run length {int(runs[at])} (run {int(index[at])}) is out of range",
                         int(mask_of[at]), multiple)
    return runs, offsets


def rle_size(segm: dict, height: int, width: int) -> tuple[int, int]:
    """Check an RLE's ``size`` against its image.

    Raises:
        RLEError: "rle_malformed" (not ``[height, width]`` integers) or "rle_size_mismatch".
    """
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
    height, width = rle_size(segm, height, width)
    counts = segm.get("counts")
    if isinstance(counts, str):
        runs = rle_counts_to_runs([counts])[0].tolist()
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

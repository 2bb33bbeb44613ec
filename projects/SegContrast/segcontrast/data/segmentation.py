"""Checking one annotation's segmentation (polygons or RLE) and its box against its image.

Everything that pycocotools would trust blindly is checked here in Python first: polygon
coordinates far outside the image make its polygon rasteriser allocate huge buffers, and bad
RLE counts make it read or write past its buffers (see :mod:`.rle`).
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass, field
from typing import Any

import pycocotools.mask as mask_util

from .limits import polygon_points_problem
from .rle import RLEError, check_rle, rle_size
from .validation import Severity

__all__ = [
    "EDGE_TOLERANCE",
    "BoxCheck",
    "SegmentationCheck",
    "SegmentationProblem",
    "check_bbox",
    "check_segmentation",
    "all_numbers",
    "is_number",
    "segmentation_problems",
]

# Boxes and polygon points may reach this many pixels beyond the image border (rounding in
# labelling tools); Detectron2 clips them. Anything further out is a wrong coordinate system.
EDGE_TOLERANCE = 1.0

Issue = tuple[Severity, str, str]


def is_number(value: Any) -> bool:
    """True for a finite int or float that a float can hold (bool is not a number here)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    if isinstance(value, int):  # JSON integers have no size limit; math.isfinite overflows
        return -sys.float_info.max <= value <= sys.float_info.max
    return math.isfinite(value)


_PLAIN_NUMBERS = frozenset((int, float))


def all_numbers(values: list) -> bool:
    """``all(is_number(v) for v in values)``, at C speed for the plain ints and floats of JSON."""
    if set(map(type, values)) <= _PLAIN_NUMBERS:
        try:
            return all(map(math.isfinite, values))
        except OverflowError:  # an integer no float can hold
            return False
    return all(is_number(v) for v in values)


@dataclass
class SegmentationCheck:
    """The outcome of :func:`check_segmentation`.

    Attributes:
        segmentation: the usable segmentation (polygons as lists of floats, or compressed RLE
            ``{"size": [h, w], "counts": str}``); None when nothing usable is left.
        kind: "polygon", "rle" or None.
        issues: ``(severity, code, message)`` for everything found.
    """

    segmentation: Any = None
    kind: str | None = None
    issues: list[Issue] = field(default_factory=list)
    _rle_area: int | None = None

    def area(self, height: int, width: int) -> float:
        """Foreground pixels of the (valid) segmentation, rasterised as pycocotools does."""
        if self._rle_area is not None:
            return float(self._rle_area)
        return float(mask_util.area(self._as_rle(height, width)))

    def bbox(self, height: int, width: int) -> list[float]:
        """Tight ``[x, y, w, h]`` box of the (valid) segmentation."""
        if self.kind == "polygon":
            xs = [x for poly in self.segmentation for x in poly[0::2]]
            ys = [y for poly in self.segmentation for y in poly[1::2]]
            return [min(xs), min(ys), max(xs) - min(xs), max(ys) - min(ys)]
        return [float(v) for v in mask_util.toBbox(self._as_rle(height, width))]

    def _as_rle(self, height: int, width: int) -> dict:
        if self.kind == "polygon":
            return mask_util.merge(mask_util.frPyObjects(self.segmentation, height, width))
        return {"size": self.segmentation["size"], "counts": self.segmentation["counts"].encode()}


@dataclass(frozen=True)
class SegmentationProblem:
    """One problem of a segmentation, by the rules both annotations and results follow.

    Attributes:
        code: the problem code (datasets/README.md lists them).
        message: what was expected and what was found.
        polygon: the polygon's index for a problem of one polygon that leaves the others
            usable (odd length, fewer than 3 points); None for a problem of the whole.
    """

    code: str
    message: str
    polygon: int | None = None


def _kind(value: Any) -> str:
    return {dict: "a dict", list: "a list", str: "a string", bool: "a boolean",
            type(None): "null"}.get(type(value), f"a {type(value).__name__}")


def _polygon_problems(segm: list, height: int, width: int) -> list[SegmentationProblem]:
    too_many = polygon_points_problem(segm)
    if too_many:
        return [SegmentationProblem("polygon_too_many_points", too_many)]
    if segm and all_numbers(segm):
        return [SegmentationProblem(
            "polygon_malformed", "segmentation is a flat list of numbers; polygons must be "
            "nested: [[x1, y1, x2, y2, ...], ...]")]
    problems = []
    for i, poly in enumerate(segm):
        if not isinstance(poly, list):
            what = ("a dict (an RLE must not be wrapped in a list)" if isinstance(poly, dict)
                    else _kind(poly))
            problems.append(SegmentationProblem(
                "polygon_malformed", f"segmentation[{i}] is {what}; expected a list of numbers"))
            continue
        if not all_numbers(poly):
            bad = next(v for v in poly if not is_number(v))
            shown = repr(bad) if len(repr(bad)) <= 40 else repr(bad)[:37] + "..."
            problems.append(SegmentationProblem(
                "polygon_malformed", f"polygon {i} holds {shown}; coordinates must be finite "
                "numbers"))
            continue
        xs, ys = poly[0::2], poly[1::2]
        # pycocotools' rasteriser allocates for the polygon's extent: far-off points are refused
        if ys and (min(xs) < -EDGE_TOLERANCE or max(xs) > width + EDGE_TOLERANCE
                   or min(ys) < -EDGE_TOLERANCE or max(ys) > height + EDGE_TOLERANCE):
            problems.append(SegmentationProblem(
                "polygon_outside_image",
                f"polygon {i} spans x {min(xs):g}..{max(xs):g}, y {min(ys):g}..{max(ys):g}, "
                f"beyond the {width}x{height} image (are the coordinates normalised, or for "
                "another image size?)"))
        elif len(poly) % 2:
            problems.append(SegmentationProblem(
                "polygon_odd_length", f"polygon {i} has {len(poly)} coordinates, an odd number "
                "(x, y pairs expected)", polygon=i))
        elif len(poly) < 6:
            problems.append(SegmentationProblem(
                "polygon_too_few_points", f"polygon {i} has {len(poly) // 2} point(s), fewer "
                "than 3", polygon=i))
    return problems


def _rle_problems(segm: dict, height: int, width: int,
                  decode_counts: bool) -> list[SegmentationProblem]:
    counts = segm.get("counts")
    if isinstance(counts, str) and not counts.isascii():
        at = next(i for i, c in enumerate(counts) if not c.isascii())
        return [SegmentationProblem(
            "rle_malformed", f"compressed RLE counts contain {counts[at]!r} at position {at}, "
            "outside COCO's alphabet ('0'..'o')")]
    if isinstance(counts, (str, bytes)) and not decode_counts:  # (bytes: built in Python)
        try:
            rle_size(segm, height, width)
        except RLEError as err:
            return [SegmentationProblem(err.code, str(err))]
        return []
    try:
        check_rle(segm, height, width)
    except RLEError as err:
        return [SegmentationProblem(err.code, str(err))]
    return []


def segmentation_problems(segm: Any, height: int, width: int, *,
                          decode_counts: bool = True) -> list[SegmentationProblem]:
    """Every problem of a COCO segmentation (polygons or RLE) against its image's size.

    The one set of rules and codes for ground-truth annotations and for results; each caller
    decides what a problem means for it (:func:`check_segmentation` drops a degenerate polygon
    of an annotation, a results file refuses the result).

    Args:
        segm: the ``segmentation`` value (an empty list is an empty mask: no problem).
        height: the image's height.
        width: the image's width.
        decode_counts: decode compressed RLE counts to check them (False: only their size
            and alphabet; the caller decodes them later and reports problems then).

    Returns:
        The problems, in the order found (empty when the segmentation is usable as it is).
    """
    if isinstance(segm, list):
        return _polygon_problems(segm, height, width)
    if isinstance(segm, dict):
        return _rle_problems(segm, height, width, decode_counts)
    return [SegmentationProblem("segmentation_malformed", f"segmentation is {_kind(segm)}; "
                                "expected polygons (a list of lists) or an RLE dict")]


def _check_polygons(segm: list, height: int, width: int) -> SegmentationCheck:
    out = SegmentationCheck()
    problems = _polygon_problems(segm, height, width)
    fatal = [p for p in problems if p.polygon is None]
    if fatal:
        out.issues += [("fatal", p.code, p.message) for p in fatal]
        return out
    odd = [p.polygon for p in problems if p.code == "polygon_odd_length"]
    short = [p.polygon for p in problems if p.code == "polygon_too_few_points"]
    kept = [list(map(float, poly)) for i, poly in enumerate(segm) if i not in odd + short]
    tail = "" if kept else "; no polygon is left, so the annotation is dropped"
    if odd:
        out.issues.append(("dropped", "polygon_odd_length",
                           f"polygon(s) {odd} have an odd number of coordinates (x, y pairs "
                           f"expected) and are dropped{tail}"))
    if short:
        out.issues.append(("dropped", "polygon_too_few_points",
                           f"polygon(s) {short} have fewer than 3 points and are dropped{tail}"))
    if kept:
        out.segmentation, out.kind = kept, "polygon"
    return out


def check_segmentation(segm: Any, height: int, width: int, *, present: bool = True
                       ) -> SegmentationCheck:
    """Check a COCO segmentation against its image's size.

    Args:
        segm: the annotation's ``segmentation`` value.
        height: the image's height in the JSON.
        width: the image's width in the JSON.
        present: False when the annotation has no ``segmentation`` key.

    Returns:
        The usable segmentation (if any) and every issue found. Degenerate polygons and empty
        masks are "dropped"; malformed data, RLE of the wrong size, coordinates far outside
        the image and polygons of more than ``MAX_POLYGON_POINTS`` points are "fatal".
    """
    if not present or segm is None:
        return SegmentationCheck(issues=[("dropped", "segmentation_missing",
                                          "has no segmentation; the annotation is dropped")])
    if isinstance(segm, list):
        if not segm or all(isinstance(p, list) and not p for p in segm):
            return SegmentationCheck(issues=[("dropped", "segmentation_empty",
                                              "segmentation is empty; the annotation is dropped")])
        return _check_polygons(segm, height, width)
    if isinstance(segm, dict):
        try:
            checked = check_rle(segm, height, width)
        except RLEError as err:
            return SegmentationCheck(issues=[("fatal", err.code, str(err))])
        if checked.area == 0:
            return SegmentationCheck(issues=[("dropped", "segmentation_empty",
                                              "RLE mask has no foreground pixel; the annotation "
                                              "is dropped")])
        return SegmentationCheck(segmentation=checked.rle, kind="rle", _rle_area=checked.area)
    return SegmentationCheck(issues=[("fatal", "segmentation_malformed",
                                      f"segmentation is a {type(segm).__name__}; expected "
                                      "polygons (a list of lists) or an RLE dict")])


@dataclass
class BoxCheck:
    """The outcome of :func:`check_bbox`: the box (None when unusable) and the issues."""

    bbox: list[float] | None = None
    issues: list[Issue] = field(default_factory=list)


def check_bbox(bbox: Any, height: int | None, width: int | None) -> BoxCheck:
    """Check a COCO ``[x, y, width, height]`` box against its image.

    Args:
        bbox: the annotation's ``bbox`` value.
        height: the image's height in the JSON (None: unknown, the bounds are not checked).
        width: the image's width in the JSON.

    Returns:
        The box as floats and its issues: malformed, negative size and outside the image are
        fatal, zero size is dropped.
    """
    if not isinstance(bbox, (list, tuple)) or len(bbox) != 4 or not all(map(is_number, bbox)):
        return BoxCheck(issues=[("fatal", "bbox_invalid",
                                 f"bbox is {bbox!r}; expected [x, y, width, height], four finite "
                                 "numbers")])
    x, y, w, h = (float(v) for v in bbox)
    if w < 0 or h < 0:
        return BoxCheck(issues=[("fatal", "bbox_negative",
                                 f"bbox {list(bbox)} has a negative width or height (COCO boxes "
                                 "are [x, y, width, height], not [x1, y1, x2, y2])")])
    issues: list[Issue] = []
    if height is not None and width is not None and (
        x < -EDGE_TOLERANCE or y < -EDGE_TOLERANCE
        or x + w > width + EDGE_TOLERANCE or y + h > height + EDGE_TOLERANCE
    ):
        issues.append(("fatal", "bbox_outside_image",
                       f"bbox {list(bbox)} (x, y, w, h) reaches beyond the {width}x{height} "
                       f"image by more than {EDGE_TOLERANCE:g} pixel"))
    if w == 0 or h == 0:
        issues.append(("dropped", "bbox_empty",
                       f"bbox {list(bbox)} has zero width or height; the annotation is dropped"))
    return BoxCheck(bbox=[x, y, w, h], issues=issues)

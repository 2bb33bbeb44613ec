"""Reading a COCO annotation file without trusting it.

Any problem with the file as a whole (missing, empty, truncated, not JSON, not COCO-shaped) is
one fatal problem naming the file; nothing else is checked after it.
"""

from __future__ import annotations

import json
from typing import Any

from ..utils.native import kernels
from .validation import ValidationReport

try:  # a faster parser of the same JSON into the same Python values; optional
    import orjson
except ImportError:  # pragma: no cover - orjson is in requirements.txt
    orjson = None

__all__ = ["REQUIRED_LISTS", "read_coco_json", "read_json_file"]

REQUIRED_LISTS = ("images", "annotations", "categories")
# orjson turns an integer beyond 64 bits into a float, where json keeps an int: text with a
# number of this many digits or more (outside strings) is left to json.
_LONG_NUMBER_DIGITS = 20


def _kind(value: Any) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean",
            type(None): "null"}.get(type(value), "a number")


def read_json_file(json_file: str, report: ValidationReport,
                   what: str = "annotation file", expected: str = "COCO JSON") -> Any:
    """Parse a JSON file whatever is wrong with it.

    Args:
        json_file: the file.
        report: receives one fatal problem (missing, unreadable, empty, not UTF-8, truncated,
            not JSON) when the file cannot be parsed.
        what: how messages name the file ("annotation file", "results file").
        expected: what the file should hold, for the message about an empty file.

    Returns:
        The parsed value; None when there is a problem.
    """
    try:
        with open(json_file, "rb") as f:
            raw = f.read()
    except FileNotFoundError:
        report.add("fatal", "file_missing", f"{what} does not exist")
        return None
    except OSError as err:
        report.add("fatal", "file_unreadable", f"{what} cannot be read: {err}")
        return None
    if not raw.strip():
        report.add("fatal", "file_empty",
                   f"{what} is empty ({len(raw)} bytes); expected {expected}")
        return None
    fast = _parse_fast(raw)
    if fast is not None:
        return fast[0]
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        report.add("fatal", "json_invalid",
                   f"{what} is not JSON: not UTF-8 text (byte {err.start}); a binary "
                   "file?")
        return None
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        if err.pos >= len(text.rstrip()):
            report.add("fatal", "json_truncated",
                       f"{what} is truncated: the JSON ends at line {err.lineno}, "
                       f"column {err.colno} before it is complete ({err.msg})")
        else:
            report.add("fatal", "json_invalid",
                       f"{what} is not valid JSON: {err.msg} at line {err.lineno}, "
                       f"column {err.colno}")
    except (ValueError, RecursionError) as err:
        report.add("fatal", "json_invalid", f"{what} cannot be parsed as JSON: {err}")
    return None


def _parse_fast(raw: bytes) -> tuple[Any] | None:
    """``(value,)`` parsed by orjson where that gives json's value; None to use json.

    Whatever orjson refuses (NaN, Infinity, numbers out of range, lone surrogates, deep
    nesting, invalid JSON) goes to json, which accepts what it accepts and words the problems.
    """
    if orjson is None or kernels.has_long_number(raw, _LONG_NUMBER_DIGITS):
        return None
    try:
        return (orjson.loads(raw[3:] if raw.startswith(b"\xef\xbb\xbf") else raw),)
    except orjson.JSONDecodeError:
        return None


def read_coco_json(json_file: str, report: ValidationReport, data: Any = None) -> dict | None:
    """Read and shape-check a COCO file (or an already parsed one).

    Args:
        json_file: the annotation file (with ``data``: how messages name it).
        report: receives at most one fatal problem about the file as a whole.
        data: the parsed JSON, when it does not come from ``json_file``.

    Returns:
        The parsed object, with "images", "annotations" and "categories" lists; None when the
        file cannot be used (the problem is in ``report``).
    """
    if data is None:
        data = read_json_file(json_file, report)
        if report.fatal:
            return None
    if not isinstance(data, dict):
        report.add("fatal", "json_structure",
                   f"annotation file holds {_kind(data)} at the top level; expected a COCO "
                   "object with lists 'images', 'annotations' and 'categories'")
        return None
    missing = [key for key in REQUIRED_LISTS if key not in data]
    wrong = [f"'{key}' is {_kind(data[key])}" for key in REQUIRED_LISTS
             if key in data and not isinstance(data[key], list)]
    if missing or wrong:
        found = []
        if missing:
            found.append("missing " + ", ".join(f"'{key}'" for key in missing))
        found.extend(wrong)
        report.add("fatal", "json_structure",
                   "not a COCO instances file: expected lists 'images', 'annotations' and "
                   f"'categories'; found: {'; '.join(found)}")
        return None
    return data

"""Markdown pipe tables for the log: the format ``tabulate(..., tablefmt="pipe")`` writes.

The log's tables are a few rows of text already formatted; this is the part of tabulate they
use, without its start-up cost (tabulate reads its own version from the installed package
metadata at import, 30 ms, longer than scoring a small file).
"""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence
from typing import Any

__all__ = ["pipe_table"]

# Each header gets at least this much room beyond its own width (tabulate's MIN_PADDING).
_HEADER_ROOM = 2


def _width(text: str) -> int:
    """Columns a terminal gives ``text``: wide East Asian characters 2, combining marks 0."""
    if text.isascii():
        return len(text)
    return sum(0 if unicodedata.combining(c) else
               2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in text)


def _pad(text: str, width: int, align: str) -> str:
    room = width - _width(text)
    if align == "right":
        return " " * room + text
    if align == "center":
        left = room // 2
        return " " * left + text + " " * (room - left)
    return text + " " * room


def _rule(width: int, align: str | None) -> str:
    if align == "right":
        return "-" * (width + 1) + ":"
    if align == "center":
        return ":" + "-" * width + ":"
    if align == "left":
        return ":" + "-" * (width + 1)
    return "-" * (width + 2)


def pipe_table(rows: Sequence[Sequence[Any]], headers: Sequence[str],
               colalign: Sequence[str] | None = None) -> str:
    """A Markdown pipe table of text cells.

    Args:
        rows: (R, C) cells; each is shown as ``str(cell)``, stripped, line breaks as spaces.
        headers: (C,) column titles, as they are (line breaks as spaces).
        colalign: (C,) "left", "right" or "center" per column (default: all left).

    Returns:
        The table, one line per row and no final line break; a table without rows has a rule
        without alignment colons (as tabulate writes it).
    """
    def cell(value: Any) -> str:
        return " ".join(str(value).split("\n")).strip()

    head = [" ".join(str(h).split("\n")) for h in headers]
    body = [[cell(v) for v in row] for row in rows]
    aligns = list(colalign) if colalign is not None else ["left"] * len(head)
    widths = [max([_width(h) + _HEADER_ROOM, *(_width(r[i]) for r in body)])
              for i, h in enumerate(head)]
    shown = aligns if body else ["left"] * len(head)
    lines = ["| " + " | ".join(_pad(h, w, a) for h, w, a in zip(head, widths, shown, strict=True))
             + " |",
             "|" + "|".join(_rule(w, a if body else None) for w, a in zip(widths, aligns,
                                                                          strict=True)) + "|"]
    lines += ["| " + " | ".join(_pad(v, w, a) for v, w, a in zip(r, widths, aligns, strict=True))
              + " |" for r in body]
    return "\n".join(lines)

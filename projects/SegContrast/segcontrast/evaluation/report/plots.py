"""The evaluation's plots as SVG, written directly (no plotting library; files atomic).

Three charts, each small and exact (the numbers are in the drawing as text and as tooltips),
saved next to ``metrics.json`` and embedded inline in ``report.html``:

* ``per_class_iou.svg``: per class, the semantic IoU next to the instance IoU;
* ``confusion_matrix.svg``: the semantic confusion matrix, rows normalised to 1;
* ``error_types.svg``: per error type (its count in the label), what fixing it alone gains on
  each of the accounting's metrics, or its count when the accounting is off.

Labels and names are the metric catalog's; every text is XML-escaped.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from html import escape as _escape_html

import numpy as np

from ...utils import atomic_write

__all__ = ["PLOT_FILES", "plot_class_iou", "plot_confusion", "plot_error_types", "svg_document"]

# The plots' file names, as written next to metrics.json, in the order the report shows them.
PLOT_FILES = ("error_types.svg", "per_class_iou.svg", "confusion_matrix.svg")
# Series colours (blue, orange, green, red, purple, brown): distinct on white and in grey.
_COLOURS = ("#3b6fb6", "#e08a2c", "#4a9a4a", "#c9413c", "#8464a8", "#8c5b48")
_CHAR = 6.6  # average width of a 12 px sans-serif character, for the margins
_FONT = 'font-family="Helvetica, Arial, sans-serif" font-size="12"'


def _escape(value: str) -> str:
    """``&``, ``<`` and ``>`` as entities (the rule of ``xml.sax.saxutils.escape``)."""
    return _escape_html(value, quote=False)


def _attr(value: str) -> str:
    return _escape(str(value)).replace('"', "&quot;")


def _text(x: float, y: float, value: str, *, anchor: str = "start", size: int | None = None,
          rotate: float | None = None, weight: str | None = None, fill: str | None = None) -> str:
    extra = f' font-size="{size}"' if size else ""
    extra += f' font-weight="{weight}"' if weight else ""
    extra += f' fill="{fill}"' if fill else ""
    if rotate is not None:
        extra += f' transform="rotate({rotate:g} {x:.1f} {y:.1f})"'
    return (f'<text x="{x:.1f}" y="{y:.1f}" text-anchor="{anchor}"{extra}>'
            f"{_escape(str(value))}</text>")


def _rect(x: float, y: float, w: float, h: float, fill: str, tip: str | None = None) -> str:
    title = f"<title>{_escape(tip)}</title>" if tip else ""
    close = f">{title}</rect>" if title else "/>"
    return (f'<rect x="{x:.1f}" y="{y:.1f}" width="{max(w, 0):.1f}" height="{max(h, 0):.1f}" '
            f'fill="{fill}"{close}')


def _line(x0: float, y0: float, x1: float, y1: float, stroke: str = "#bbb",
          width: float = 1) -> str:
    return (f'<line x1="{x0:.1f}" y1="{y0:.1f}" x2="{x1:.1f}" y2="{y1:.1f}" '
            f'stroke="{stroke}" stroke-width="{width:g}"/>')


def svg_document(width: float, height: float, title: str, body: Sequence[str]) -> str:
    """A standalone SVG file: the prolog, the namespace, a white background, the title."""
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0f}" height="{height:.0f}" '
        f'viewBox="0 0 {width:.0f} {height:.0f}" role="img" aria-label="{_attr(title)}" '
        f"{_FONT}>\n"
        f"<title>{_escape(title)}</title>\n"
        f'<rect width="{width:.0f}" height="{height:.0f}" fill="white"/>\n'
        + _text(width / 2, 20, title, anchor="middle", size=14, weight="bold") + "\n"
        + "\n".join(body) + "\n</svg>\n"
    )


def _save(path: str, text: str) -> None:
    atomic_write(path, lambda f: f.write(text), mode="w")


def _legend(x: float, y: float, labels: Sequence[str]) -> tuple[list[str], float]:
    """Coloured squares and labels in one row from (x, y); returns the parts and its width."""
    parts, at = [], x
    for i, text in enumerate(labels):
        parts.append(_rect(at, y - 10, 10, 10, _COLOURS[i % len(_COLOURS)]))
        parts.append(_text(at + 14, y, text))
        at += 14 + _CHAR * len(text) + 16
    return parts, at - x


def _number(value: float, digits: int = 1) -> str:
    return "n/a" if math.isnan(value) else f"{value:.{digits}f}"


def plot_class_iou(path: str, class_names: Sequence[str],
                   series: Sequence[tuple[str, Sequence[float]]]) -> None:
    """Grouped bars per class, one bar per series (percent; NaN: no bar).

    Args:
        path: the SVG file.
        class_names: K names.
        series: ``(label, K IoUs)`` pairs, e.g. semantic IoU and instance IoU.
    """
    k, n = len(class_names), max(len(series), 1)
    bar = 12.0
    group = bar * n + 10
    longest = max((len(c) for c in class_names), default=4)
    left, top, right = 48.0, 58.0, 20.0
    bottom = 24 + 0.72 * _CHAR * min(longest, 40)
    plot_h = 220.0
    legend, legend_w = _legend(left, 44, [label for label, _ in series])
    width = max(left + k * group + right, left + legend_w + right, 420)
    height = top + plot_h + bottom
    body = legend
    for tick in range(0, 101, 20):
        y = top + plot_h * (1 - tick / 100)
        body.append(_line(left, y, width - right, y, "#e4e4e4" if tick else "#888"))
        body.append(_text(left - 6, y + 4, str(tick), anchor="end"))
    body.append(_text(14, top + plot_h / 2, "IoU (%)", anchor="middle", rotate=-90))
    for c, name in enumerate(class_names):
        x0 = left + c * group + 5
        values = [float(v[c]) for _, v in series]
        for s, value in enumerate(values):
            if math.isnan(value):
                continue
            h = plot_h * min(max(value, 0.0), 100.0) / 100
            body.append(_rect(x0 + s * bar, top + plot_h - h, bar - 1, h,
                              _COLOURS[s % len(_COLOURS)],
                              f"{name}: {series[s][0]} {_number(value)}"))
        if all(math.isnan(v) for v in values):
            body.append(_text(x0 + group / 2 - 5, top + plot_h - 4, "absent", size=9,
                              rotate=-90))
        label_x = x0 + (group - 10) / 2
        body.append(_text(label_x, top + plot_h + 14, name, anchor="end", rotate=-45))
    title = "Per class: " + " vs ".join(label for label, _ in series)
    _save(path, svg_document(width, height, title, body))


def _blue(t: float) -> str:
    """Light to dark blue for t in [0, 1]."""
    t = min(max(t, 0.0), 1.0)
    low, high = np.array([247, 251, 255]), np.array([8, 48, 107])
    r, g, b = (low + (high - low) * t).round().astype(int)
    return f"#{r:02x}{g:02x}{b:02x}"


def plot_confusion(path: str, labels: Sequence[str], confusion: np.ndarray) -> None:
    """The confusion matrix normalised per ground-truth row (background included).

    Args:
        path: the SVG file.
        labels: K + 1 names, background first.
        confusion: (K + 1, K + 1) pixel counts, rows ground truth.
    """
    conf = np.asarray(confusion, np.float64)
    rows = conf.sum(axis=1, keepdims=True)
    norm = np.divide(conf, rows, out=np.zeros_like(conf), where=rows > 0)
    n = len(labels)
    cell = float(min(36, max(6, 640 // max(n, 1))))
    longest = max((len(x) for x in labels), default=4)
    margin = 30 + _CHAR * min(longest, 30)
    left, top = margin + 18, 40 + 0.72 * _CHAR * min(longest, 30) + 10
    width = left + n * cell + 70
    height = top + n * cell + 40
    body = []
    show_values = n <= 20
    for i in range(n):
        for j in range(n):
            value = norm[i, j]
            tip = (f"ground truth {labels[i]}, predicted {labels[j]}: {value:.3f} of the row "
                   f"({int(conf[i, j])} pixels)")
            body.append(_rect(left + j * cell, top + i * cell, cell, cell, _blue(value), tip))
            if show_values and value >= 0.005:
                body.append(_text(left + (j + 0.5) * cell, top + (i + 0.5) * cell + 4,
                                  f"{value:.2f}", anchor="middle", size=9,
                                  fill="white" if value > 0.5 else "black"))
    for i, name in enumerate(labels):
        body.append(_text(left - 6, top + (i + 0.5) * cell + 4, name, anchor="end"))
        body.append(_text(left + (i + 0.5) * cell, top - 6, name, rotate=-45))
    body.append(_text(left + n * cell / 2, height - 12, "predicted (columns)", anchor="middle"))
    body.append(_text(14, top + n * cell / 2, "ground truth (rows)", anchor="middle",
                      rotate=-90))
    # the colour scale: ten steps from 0 to 1
    bar_x = left + n * cell + 20
    step = n * cell / 10
    for s in range(10):
        body.append(_rect(bar_x, top + (9 - s) * step, 14, step, _blue((s + 0.5) / 10)))
    body.append(_text(bar_x + 18, top + 8, "1"))
    body.append(_text(bar_x + 18, top + n * cell, "0"))
    _save(path, svg_document(width, height, "Semantic confusion (rows sum to 1)", body))


def plot_error_types(path: str, rows: Sequence[tuple[str, int, str]],
                     gains: Sequence[tuple[str, Sequence[float]]] | None) -> None:
    """Horizontal bars per error type: what fixing it alone gains, or its count.

    Args:
        path: the SVG file.
        rows: ``(error type, count, what it counts)`` in the table's order.
        gains: ``(metric label, one gain per row)`` (percent points; NaN: no bar), or None
            when the accounting is off (the bars are the counts).
    """
    names = [f"{name} ({count} {counted})" for name, count, counted in rows]
    series = gains if gains is not None else [("count", [float(c) for _, c, _ in rows])]
    values = [v for _, vs in series for v in vs if not math.isnan(v)]
    low, high = min([0.0, *values]), max([0.0, *values])
    if high - low <= 0:
        high = low + 1.0
    n = max(len(series), 1)
    bar = 9.0
    row_h = bar * n + 8
    left = 24 + _CHAR * max((len(x) for x in names), default=10)
    top, right, plot_w = 58.0, 60.0, 420.0
    legend, legend_w = _legend(left, 44, [label for label, _ in series])
    width = max(left + plot_w + right, left + legend_w + right)
    height = top + row_h * len(rows) + 40

    def x_of(value: float) -> float:
        return left + plot_w * (value - low) / (high - low)

    body = legend
    zero = x_of(0.0)
    for r, name in enumerate(names):
        y0 = top + r * row_h + 4
        body.append(_text(left - 8, y0 + row_h / 2, name, anchor="end"))
        for s, (label, vals) in enumerate(series):
            value = float(vals[r])
            if math.isnan(value):
                continue
            x0, x1 = sorted((zero, x_of(value)))
            y = y0 + s * bar
            body.append(_rect(x0, y, x1 - x0, bar - 1, _COLOURS[s % len(_COLOURS)],
                              f"{rows[r][0]}: {label} {value:+.2f}" if gains is not None
                              else f"{rows[r][0]}: {int(value)} {rows[r][2]}"))
            if value != 0:
                shown = f"{value:+.1f}" if gains is not None else f"{int(value)}"
                body.append(_text(x1 + 3 if value > 0 else x0 - 3, y + bar - 1, shown,
                                  anchor="start" if value > 0 else "end", size=9))
    body.append(_line(zero, top, zero, top + row_h * len(rows), "#444"))
    axis = ("gain if only this type is fixed (percent points)" if gains is not None
            else "count")
    body.append(_text(left + plot_w / 2, height - 12, axis, anchor="middle"))
    title = ("Error types: what fixing each alone gains" if gains is not None
             else "Error types: counts")
    _save(path, svg_document(width, height, title, body))

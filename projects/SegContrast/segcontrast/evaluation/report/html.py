"""``report.html``: the one page a person opens, self-contained (no network, no other files).

The page reads in the order of the log: the sentence that explains the gap, the scores side by
side, one table of error types (each type's count and what fixing it gains on each metric),
then per class, the plots, the worst images, and every result group. Rendered from the
evaluation folder itself: the numbers come from its ``metrics.json`` (and ``comparison.json``
when two models were compared), the plots are its SVG files, inline, and the worst-image
overlays its PNG files, embedded as base64. Names and labels are the metric catalog's
(:mod:`..catalog`). Every result group of ``metrics.json`` is shown, also groups this module does
not know by name. Each number on the page carries its ``metrics.json`` location and exact value
in ``data-group``, ``data-key`` and ``data-value`` attributes (``per_class/<class>`` for the
rows of ``details.per_class``).
"""

from __future__ import annotations

import base64
import glob
import html
import json
import math
import os
from typing import Any

from ...utils import atomic_write
from ..catalog import (
    ACCOUNTED,
    ERROR_TYPE_DEFS,
    HEADLINE_INSTANCE,
    HEADLINE_SEMANTIC,
    OTHER_COUNTS,
    PER_CLASS_COLUMNS,
    label,
    metric,
)
from ..metrics.coco_ap import AP_AREA_RULES
from .plots import PLOT_FILES
from .text import accounting_side_label, coverage_is_partial, coverage_sentence

__all__ = ["AP_RULE", "REPORT_NAME", "render_report", "write_html_report"]

REPORT_NAME = "report.html"
AP_RULE = (
    "Mask AP keeps the 100 highest-scoring predictions per image and class, as pycocotools' "
    "COCOeval does, whatever their score; the semantic and instance sides use every prediction "
    "with a score of at least SCORE_THRESHOLD."
)
# Top-level keys of metrics.json that are not result groups.
_NOT_GROUPS = ("details", "settings", "source", "class_names", "dataset", "metric_definitions")


def _is_count(group: str, key: str) -> bool:
    found = metric(group, key)
    return found.is_count if found is not None else key.startswith("count-")


_STYLE = """
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; margin: 2em auto;
       max-width: 1100px; color: #222; line-height: 1.4; padding: 0 1em; }
h1 { font-size: 1.6em; margin-bottom: 0.2em; } h2 { font-size: 1.25em; margin-top: 1.8em;
  border-bottom: 1px solid #ddd; padding-bottom: 0.2em; }
table { border-collapse: collapse; margin: 0.6em 0; font-size: 0.92em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; }
th { background: #f2f2f2; text-align: left; } td.num { text-align: right;
  font-variant-numeric: tabular-nums; }
th.sem { background: #e3eefb; } th.inst { background: #fbeee3; }
tr.differs td { background: #fff6d6; font-weight: 600; }
.sentence { background: #f6f8fa; border-left: 4px solid #5b8def; padding: 0.6em 1em; }
.note { color: #555; font-size: 0.9em; }
.warning { background: #fff4d6; border-left: 4px solid #d99a00; padding: 0.6em 1em; }
img, svg { max-width: 100%; height: auto; border: 1px solid #eee; }
figure { margin: 1em 0; } figcaption { color: #555; font-size: 0.85em; }
"""


def _esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _number_text(value: Any, count: bool = False, signed: bool = False) -> str:
    """Counts without decimals, differences with their sign (never "-0.00"), else 2 decimals."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    if count:
        return f"{value:.0f}"
    if signed:
        return f"{round(value, 2) + 0.0:+.2f}"
    return f"{value:.2f}"


def _cell(value: Any, group: str | None = None, key: str | None = None,
          count: bool = False) -> str:
    """A numeric table cell; with ``group``/``key`` it names its place in metrics.json.

    A difference (the catalog's unit "points") is shown with its sign.
    """
    attrs = ' class="num"'
    signed = False
    if group is not None and key is not None:
        exact = "null" if value is None else repr(value)
        attrs += (f' data-group="{_esc(group)}" data-key="{_esc(key)}" '
                  f'data-value="{_esc(exact)}"')
        found = metric(group, key)
        signed = found is not None and found.unit == "points"
    return f"<td{attrs}>{_esc(_number_text(value, count, signed))}</td>"


def _groups(metrics: dict) -> list[str]:
    return [k for k, v in metrics.items() if k not in _NOT_GROUPS and isinstance(v, dict)]


def _headline(metrics: dict) -> str:
    cells = [(g, k) for g, k in (*HEADLINE_SEMANTIC, *HEADLINE_INSTANCE)
             if k in metrics.get(g, {})]
    if not cells:
        return ""
    head = "".join(
        f'<th class="{"sem" if g.startswith("semantic") else "inst"}">{_esc(label(g, k))}</th>'
        for g, k in cells)
    row = "".join(_cell(metrics[g][k], g, k) for g, k in cells)
    return (f"<h2>Semantic vs instance</h2>\n<p class=\"note\">Percent. Blue: the semantic "
            "view (pixels pooled per class); orange: the instance view (every object on its "
            f"own) and COCO mask AP.</p>\n<table><tr>{head}</tr><tr>{row}</tr></table>")


def _errors(metrics: dict) -> str:
    """One table of error types: count (the error assignment's), what fixing each gains."""
    counts = metrics.get("contrast")
    if not counts:
        return ""
    acc = metrics.get("accounting") or {}
    details = metrics.get("details", {})
    deltas = [k for k, _ in ACCOUNTED if k in acc]
    head = "".join(f"<th>+ {_esc(accounting_side_label(details, k))}</th>" for k in deltas)
    rows = []
    for d in ERROR_TYPE_DEFS:
        rows.append(
            f"<tr><td>{_esc(d.name)}</td>{_cell(counts.get(d.name), 'contrast', d.name, True)}"
            f"<td>{_esc(d.counted)}</td>"
            + "".join(_cell(acc.get(f"delta_{k}-{d.name}"), "accounting", f"delta_{k}-{d.name}")
                      for k in deltas)
            + f"<td>{_esc(d.meaning)}</td></tr>")
    if acc:
        rows.append(
            f"<tr><td>all</td>{_cell(acc.get('count-all'), 'accounting', 'count-all', True)}"
            "<td>errors</td>"
            + "".join(_cell(acc.get(f"delta_{k}-all"), "accounting", f"delta_{k}-all")
                      for k in deltas)
            + "<td>every error fixed at once</td></tr>")
    others = "".join(
        f"<tr><td>{_esc(label(g, k))}</td>{_cell(counts.get(k), g, k, True)}"
        f"<td>{_esc(metric(g, k).meaning)}</td></tr>"
        for g, k in OTHER_COUNTS if k in counts)
    note = ("Every prediction and object has at most one error type, from one assignment "
            "(docs/EVALUATION.md has the rules). "
            + ("Each gain: an oracle fixes only that type and the metrics are recomputed "
               "(percent points)." if acc else "The gap accounting is off: counts only."))
    return ("<h2>Error types</h2>\n"
            f'<p class="note">{_esc(note)}</p>\n'
            f"<table><tr><th>error type</th><th>count</th><th>counted</th>{head}"
            f"<th>what it is</th></tr>{''.join(rows)}</table>\n"
            "<table><tr><th>not an error type</th><th>count</th><th>what it is</th></tr>"
            f"{others}</table>")


def _sentence(metrics: dict) -> str:
    text = metrics.get("details", {}).get("explanation")
    return f'<p class="sentence" id="explanation">{_esc(text)}</p>' if text else ""


def _per_class(metrics: dict) -> str:
    rows = metrics.get("details", {}).get("per_class") or []
    if not rows:
        return ""
    known = {c.key: c for c in PER_CLASS_COLUMNS}
    columns = list(rows[0])
    head = "".join(f"<th>{_esc(known[c].label if c in known else c)}</th>" for c in columns)
    body = []
    for row in rows:
        cells = []
        for c in columns:
            value = row.get(c)
            if c == "class":
                cells.append(f"<td>{_esc(value)}</td>")
            else:
                cells.append(_cell(value, f"per_class/{row.get('class')}", c,
                                   count=isinstance(value, int)))
        body.append("<tr>" + "".join(cells) + "</tr>")
    return ("<h2>Per class</h2>\n<p class=\"note\">IoUs and AP in percent; counts of "
            f"instances.</p>\n<table><tr>{head}</tr>{''.join(body)}</table>")


def _all_groups(metrics: dict) -> str:
    parts = ["<h2>Every result group</h2>\n<p class=\"note\">All numbers of metrics.json "
             "(percent, except counts), with the catalog's label.</p>"]
    for group in _groups(metrics):
        values = metrics[group]
        rows = "".join(f"<tr><td>{_esc(k)}</td><td>{_esc(label(group, k))}</td>"
                       f"{_cell(v, group, k, _is_count(group, k))}</tr>"
                       for k, v in values.items()
                       if v is None or isinstance(v, (int, float)))
        parts.append(f"<h3>{_esc(group)}</h3>\n<table><tr><th>key</th><th>metric</th>"
                     f"<th>value</th></tr>{rows}</table>")
    return "\n".join(parts)


def _rules(metrics: dict) -> str:
    rules = metrics.get("details", {}).get("absent_class_rules") or {}
    items = [f"<li>{_esc(name)} ({_esc(rule['rule'])}): {_esc(', '.join(rule['classes']))}</li>"
             for name, rule in rules.items() if rule.get("classes")]
    if not items:
        return ""
    return "<h2>Absent-class rules applied</h2>\n<ul>" + "".join(items) + "</ul>"


def _comparison(comparison: dict) -> str:
    names = comparison.get("names", {})
    a, b = names.get("a", "A"), names.get("b", "B")
    rows = []
    for r in comparison["rows"]:
        count = _is_count(r["group"], r["key"])
        interval = (f"[{_number_text(r['low'], count)}, {_number_text(r['high'], count)}]"
                    if r["low"] is not None else "n/a")
        rows.append(
            f'<tr class="{"differs" if r["differs"] else ""}"><td>{_esc(r["label"])}</td>'
            f"{_cell(r['a'], count=count)}{_cell(r['b'], count=count)}"
            f"{_cell(r['delta'], count=count)}<td class=\"num\">{_esc(interval)}</td>"
            f"<td>{'yes' if r['differs'] else 'no'}</td></tr>")
    restricted = (comparison.get("coverage") or {}).get("common_images_only")
    scope = (f'<p class="warning">Compared on the {comparison.get("num_images")} GT images that '
             "both files cover (--common-images); the other GT images are left out.</p>\n"
             if restricted else "")
    return (
        "<h2>A vs B</h2>\n"
        f"<p>A: {_esc(a)}<br>B: {_esc(b)}</p>\n{scope}"
        "<table><tr><th>metric</th><th>A</th><th>B</th><th>B &minus; A</th>"
        "<th>95% interval of B &minus; A</th><th>a difference?</th></tr>"
        + "".join(rows) + "</table>\n"
        f'<p class="sentence">{_esc(comparison["sentence"])}</p>'
    )


def _svg(text: str, caption: str) -> str:
    """An SVG file's drawing, inline (no XML prolog; HTML needs no namespace attribute)."""
    start = text.find("<svg")
    drawing = text[start:].replace(' xmlns="http://www.w3.org/2000/svg"', "", 1)
    return f"<figure>{drawing}<figcaption>{_esc(caption)}</figcaption></figure>"


def _image(data: bytes, caption: str) -> str:
    encoded = base64.b64encode(data).decode("ascii")
    return (f'<figure><img alt="{_esc(caption)}" src="data:image/png;base64,{encoded}">'
            f"<figcaption>{_esc(caption)}</figcaption></figure>")


def _header(metrics: dict) -> str:
    dataset = metrics.get("dataset", "")
    num_images = metrics.get("details", {}).get("num_images")
    parts = [f"<h1>SegContrast evaluation: {_esc(dataset)}</h1>"]
    if num_images is not None:
        parts.append(f"<p>{num_images} images.</p>")
    source = metrics.get("source") or {}
    items = [f"<li>{_esc(k.replace('_', ' '))}: {_esc(v)}</li>"
             for k, v in source.items() if k not in ("notes", "coverage") and v is not None]
    notes = [*source.get("notes", []), AP_RULE]
    area_rule = AP_AREA_RULES.get((metrics.get("settings") or {}).get("ap_area"))
    if area_rule and "segm" in metrics:
        notes.append(area_rule)
    if items:
        parts.append("<ul>" + "".join(items) + "</ul>")
    coverage = source.get("coverage")
    if coverage:
        style = "warning" if coverage_is_partial(coverage) else "note"
        parts.append(f'<p class="{style}" id="coverage">{_esc(coverage_sentence(coverage))}</p>')
    parts.append("".join(f'<p class="note">{_esc(n)}</p>' for n in notes))
    return "\n".join(parts)


def _settings(metrics: dict) -> str:
    settings = metrics.get("settings") or {}
    if not settings:
        return ""
    rows = "".join(f"<tr><td>{_esc(k)}</td><td>{_esc(v)}</td></tr>" for k, v in settings.items())
    return f"<h2>Settings</h2>\n<table>{rows}</table>"


def render_report(metrics: dict, plots: list[tuple[str, bytes]],
                  overlays: list[tuple[str, bytes]], comparison: dict | None = None) -> str:
    """The page as one HTML string.

    Args:
        metrics: the content of ``metrics.json``.
        plots: ``(file name, SVG bytes)`` of the plots.
        overlays: ``(file name, PNG bytes)`` of the worst-image overlays, worst first.
        comparison: the content of ``comparison.json``, shown first.

    Returns:
        The HTML document.
    """
    body = [_header(metrics)]
    if comparison:
        body.append(_comparison(comparison))
    body += [_sentence(metrics), _headline(metrics), _errors(metrics), _per_class(metrics)]
    if plots:
        body.append("<h2>Plots</h2>")
        body += [_svg(data.decode("utf-8"), name) for name, data in plots]
    if overlays:
        body.append("<h2>Worst images</h2>\n<p class=\"note\">Ground truth (left) and "
                    "prediction (right), worst instance mIoU first.</p>")
        body += [_image(data, name) for name, data in overlays]
    body += [_all_groups(metrics), _rules(metrics), _settings(metrics)]
    title = f"SegContrast: {metrics.get('dataset', '')}"
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{_esc(title)}</title><style>{_STYLE}</style></head><body>\n"
            + "\n".join(part for part in body if part) + "\n</body></html>\n")


def _read_files(pattern: str, first: tuple[str, ...] = ()) -> list[tuple[str, bytes]]:
    """The files matching ``pattern``: those named in ``first`` in that order, then the rest."""
    order = {name: i for i, name in enumerate(first)}
    out = []
    for path in sorted(glob.glob(pattern),
                       key=lambda p: (order.get(os.path.basename(p), len(order)), p)):
        with open(path, "rb") as f:
            out.append((os.path.basename(path), f.read()))
    return out


def write_html_report(folder: str) -> str:
    """Write ``report.html`` of an evaluation folder (atomically).

    Args:
        folder: holds ``metrics.json``, the plots (``*.svg``), ``worst_images/*.png`` and, after
            a comparison, ``comparison.json``.

    Returns:
        The path of the page.
    """
    with open(os.path.join(folder, "metrics.json"), encoding="utf-8") as f:
        metrics = json.load(f)
    comparison = None
    compared = os.path.join(folder, "comparison.json")
    if os.path.isfile(compared):
        with open(compared, encoding="utf-8") as f:
            comparison = json.load(f)
    page = render_report(metrics, _read_files(os.path.join(folder, "*.svg"), PLOT_FILES),
                         _read_files(os.path.join(folder, "worst_images", "*.png")), comparison)
    path = os.path.join(folder, REPORT_NAME)
    atomic_write(path, lambda f: f.write(page), mode="w")
    return path

"""Results for people and programs: the log table, ``metrics.json`` and ``per_image.csv``.

Every file is written to a temporary file in the same folder and then renamed over the target
(``os.replace``), so a reader never sees a half-written file.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Sequence
from typing import Any

from ...utils import atomic_write
from ..catalog import (
    ACCOUNTED,
    ERROR_TYPE_DEFS,
    ERROR_TYPES,
    HEADLINE_INSTANCE,
    HEADLINE_SEMANTIC,
    OTHER_COUNTS,
    PER_CLASS_COLUMNS,
    definitions_of,
    label,
)
from ..records import ImageRecord
from ..summary import Summary
from .table import pipe_table

__all__ = [
    "PER_IMAGE_COLUMNS",
    "accounting_side_label",
    "coverage_is_partial",
    "coverage_sentence",
    "format_report",
    "metrics_document",
    "write_metrics_json",
    "write_per_image_csv",
]

# per_image.csv: the image, its two mIoUs, then every count of its error assignment.
PER_IMAGE_COLUMNS = (
    "image_id",
    "semantic_mIoU",
    "instance_mIoU",
    "n_gt",
    "n_crowd",
    "n_pred",
    "matched",
    "false_positives",
    *ERROR_TYPES,
)


def coverage_is_partial(coverage: dict[str, Any]) -> bool:
    """Whether some GT images have no results, or were left out of the numbers."""
    n = coverage["gt_images"]
    return coverage["images_with_results"] < n or coverage.get("scored_images", n) < n


def coverage_sentence(coverage: dict[str, Any]) -> str:
    """How many ground-truth images a results file covers, and what that means for the numbers.

    Args:
        coverage: ``metrics.json``'s ``source.coverage``: ``gt_images``,
            ``images_with_results``, ``scored_images`` and ``common_images_only``.
    """
    n, m = coverage["gt_images"], coverage["images_with_results"]
    scored = coverage.get("scored_images", n)
    share = f"{100.0 * m / n:.1f}%" if n else "n/a"
    if coverage.get("common_images_only"):
        return (f"Scored on the {scored} of the {n} GT images that both results files cover "
                f"(--common-images): the other {n - scored} are left out of every number "
                f"(this file has results for {m} GT images).")
    if m == n:
        return f"The results cover all {n} GT images."
    return (f"The results cover only {m} of the {n} GT images ({share}): the other {n - m} are "
            "scored as images without predictions (every object on them counts as missed).")


def _json_ready(value: Any) -> Any:
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {str(k): _json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_ready(v) for v in value]
    return value


def metrics_document(summary: Summary, extra: dict[str, Any]) -> dict[str, Any]:
    """What ``metrics.json`` holds: result groups at the top level (NaN as None), details.

    ``details`` holds the absent-class rules and the classes they touched, per-class rows and
    the confusion matrix; ``metric_definitions`` the catalog's label, unit and meaning of
    every key of the groups; ``extra`` adds settings and the dataset name.
    """
    content = dict(summary.results)
    content["details"] = summary.details
    content["metric_definitions"] = definitions_of(summary.results)
    content.update(extra)
    return _json_ready(content)


def write_metrics_json(path: str, summary: Summary, extra: dict[str, Any]) -> None:
    """Write ``metrics.json`` (:func:`metrics_document`), atomically."""
    text = json.dumps(metrics_document(summary, extra), indent=2)
    atomic_write(path, lambda f: f.write(text), mode="w")


def _fmt(value: float, digits: int = 2) -> str:
    return "" if math.isnan(value) else f"{value:.{digits}f}"


def write_per_image_csv(path: str, images: Sequence[ImageRecord]) -> None:
    """``per_image.csv``: one row per image, mIoUs in percent (empty when undefined).

    A ``semantic_mIoU_from_instances`` column follows ``semantic_mIoU`` when the model gave
    both semantic labels and instances.
    """
    two_semantic = any(not math.isnan(r.semantic_miou_from_instances) for r in images)
    columns = list(PER_IMAGE_COLUMNS)
    if two_semantic:
        columns.insert(columns.index("semantic_mIoU") + 1, "semantic_mIoU_from_instances")
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(columns)
    for r in images:
        values = {
            "image_id": r.image_id,
            "semantic_mIoU": _fmt(r.semantic_miou * 100, 4),
            "semantic_mIoU_from_instances": _fmt(r.semantic_miou_from_instances * 100, 4),
            "instance_mIoU": _fmt(r.instance_miou * 100, 4),
            **r.counts,
        }
        writer.writerow([values[c] for c in columns])
    text = buffer.getvalue()
    atomic_write(path, lambda f: f.write(text), mode="w")


def _table(rows: list[list[Any]], headers: list[str],
           colalign: Sequence[str] | None = None) -> str:
    return pipe_table(rows, headers, colalign)


def _per_class_table(summary: Summary) -> str:
    """Per class: each semantic column, instance IoU, AP and the counts present."""
    res = summary.results
    rows_in = summary.details["per_class"]
    # the per-class column, and the group and key of its mean
    means = {"semantic_IoU": ("semantic", "mIoU"),
             "semantic_from_instances_IoU": ("semantic_from_instances", "mIoU"),
             "instance_IoU": ("instance", "class_mIoU"), "AP": ("segm", "AP")}
    totals = {"gt_instances": "n_gt", "matched": "matched", "predictions": "n_pred"}
    columns = [c for c in PER_CLASS_COLUMNS if rows_in and c.key in rows_in[0]]
    rows = [[r["class"], *(str(r[c.key]) if c.is_count else _fmt(r[c.key]) for c in columns)]
            for r in rows_in]
    counts = summary.details["counts"]
    rows.append(["(mean)", *(str(int(counts.get(totals[c.key], 0))) if c.is_count
                             else _fmt(res[means[c.key][0]][means[c.key][1]]) for c in columns)])
    headers = ["class", *(c.label for c in columns)]
    return _table(rows, headers, ("left", *("right",) * len(columns)))


def _headline_table(summary: Summary) -> str:
    """The scores side by side: the semantic view's left, the instance view's right."""
    res = summary.results

    def present(cells: Sequence[tuple[str, str]]) -> list[tuple[str, str]]:
        return [(g, k) for g, k in cells if k in res.get(g, {})]

    left, right = present(HEADLINE_SEMANTIC), present(HEADLINE_INSTANCE)
    rows = []
    for i in range(max(len(left), len(right))):
        row = []
        for side in (left, right):
            if i < len(side):
                g, k = side[i]
                row += [label(g, k), _fmt(res[g][k])]
            else:
                row += ["", ""]
        rows.append(row)
    headers = ["semantic (pixels pooled per class)", "", "instance (every object on its own)", ""]
    if not right:
        rows = [r[:2] for r in rows]
        headers = headers[:2]
    return _table(rows, headers, ("left", "right", "left", "right")[:len(headers)])


def accounting_side_label(summary_details: dict, key: str) -> str:
    """The label of one of the accounting's metrics (its semantic side: the painted instances).

    Args:
        summary_details: the summary's (or metrics.json's) ``details``.
        key: "semantic_mIoU", "instance_mIoU", "PQ" or "AP".
    """
    group, source = dict(ACCOUNTED)[key]
    if key == "semantic_mIoU":
        group = (summary_details.get("accounting") or {}).get("semantic_group", group)
    return label(group, source)


def _error_table(summary: Summary) -> str:
    """One row per error type: its count and, with the accounting, what fixing it gains."""
    res = summary.results
    counts = res["contrast"]
    acc = res.get("accounting")
    metrics = [k for k, _ in ACCOUNTED if acc and k in acc]
    rows = []
    for d in ERROR_TYPE_DEFS:
        rows.append([d.name, str(int(counts[d.name])), d.counted,
                     *(_signed(acc[f"delta_{k}-{d.name}"]) for k in metrics), d.meaning])
    if acc:
        rows.append(["all", str(int(acc["count-all"])), "errors",
                     *(_signed(acc[f"delta_{k}-all"]) for k in metrics),
                     "every error fixed at once"])
        rows.append(["(original)", "", "", *(_fmt(acc[k]) for k in metrics), ""])
    headers = ["error type", "count", "counted",
               *(f"+ {accounting_side_label(summary.details, k)}" for k in metrics),
               "what it is"]
    return _table(rows, headers,
                  ("left", "right", "left", *("right",) * len(metrics), "left"))


def _other_counts(summary: Summary) -> str:
    counts = summary.results["contrast"]
    parts = [f"{label(g, k)} {int(counts[k])}" for g, k in OTHER_COUNTS if k in counts]
    return "Not error types: " + ", ".join(parts) + "."


def _panoptic_table(summary: Summary) -> str:
    """PQ, SQ, RQ and the segment counts: things, with background, and per category."""
    res = summary.results["panoptic"]
    rows = []
    for entry in summary.details["panoptic_per_class"][1:]:
        rows.append([entry["category"], _fmt(entry["PQ"]), _fmt(entry["SQ"]), _fmt(entry["RQ"]),
                     entry["TP"], entry["FP"], entry["FN"]])
    rows.append(["(things)", _fmt(res["PQ"]), _fmt(res["SQ"]), _fmt(res["RQ"]),
                 int(res["TP"]), int(res["FP"]), int(res["FN"])])
    bg = summary.details["panoptic_per_class"][0]
    rows.append(["background", _fmt(bg["PQ"]), _fmt(bg["SQ"]), _fmt(bg["RQ"]), bg["TP"],
                 bg["FP"], bg["FN"]])
    rows.append(["(all, with background)", _fmt(res["PQ_all"]), _fmt(res["SQ_all"]),
                 _fmt(res["RQ_all"]), "", "", ""])
    return _table([[str(c) for c in r] for r in rows],
                  ["category", "PQ", "SQ", "RQ", "TP", "FP", "FN"],
                  ("left", *("right",) * 6))


def _signed(value: float) -> str:
    if math.isnan(value):
        return "n/a"
    return f"{round(value, 2) + 0.0:+.2f}"


def format_report(summary: Summary, dataset_name: str) -> str:
    """The log report, in the order every report reads.

    The sentence; the scores side by side; one table of error types (each type's count from
    the error assignment and, with the accounting, what fixing it gains on each metric) and
    the counts that are not error types; per class; PQ; the absent-class rules that applied.
    """
    res = summary.results
    rules = []
    for key, entry in summary.details["absent_class_rules"].items():
        if entry["classes"]:
            rules.append(f"  {key} ({entry['rule']}): {', '.join(entry['classes'])}")
    lines = [
        f"SegContrast evaluation of {dataset_name} ({summary.details['num_images']} images), "
        "percent except counts:",
        summary.details["explanation"],
        "",
        "Scores, semantic vs instance:",
        _headline_table(summary),
        "",
    ]
    if "contrast" in res:
        title = ("Error types (each prediction and object has at most one), and what fixing "
                 "only that type gains (percent points, exact recomputation):"
                 if "accounting" in res else
                 "Error types (each prediction and object has at most one; the gap accounting "
                 "is off):")
        lines += [title, _error_table(summary), _other_counts(summary), ""]
    lines += [
        "Per class, semantic vs instance:" if "instance" in res else "Per class:",
        _per_class_table(summary),
        "",
    ]
    if "panoptic" in res:
        lines += ["Panoptic quality (things; background as one stuff segment per image):",
                  _panoptic_table(summary), ""]
    lines += ["Absent-class rules applied:" if rules else "Absent-class rules applied: none.",
              *rules]
    return "\n".join(lines)

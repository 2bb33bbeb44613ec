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

from tabulate import tabulate

from ...utils import atomic_write
from ..records import ImageRecord
from ..summary import Summary

__all__ = [
    "CONTRAST_MEANINGS",
    "PER_IMAGE_COLUMNS",
    "coverage_is_partial",
    "coverage_sentence",
    "format_report",
    "metrics_document",
    "write_metrics_json",
    "write_per_image_csv",
]

PER_IMAGE_COLUMNS = (
    "image_id",
    "semantic_mIoU",
    "instance_mIoU",
    "n_gt",
    "n_pred",
    "merged",
    "split",
    "missed",
    "false_positives",
    "duplicates",
    "class_confusions",
    "n_crowd",
)

_CONTRAST_MEANINGS = (
    ("merged", "predictions covering more than half of each of >= 2 objects of their class"),
    ("split", "objects holding more than half of each of >= 2 non-duplicate predictions"),
    ("duplicates", "false positives with IoU >= threshold with a matched prediction"),
    ("class_confusions", "false positives with IoU >= threshold with an object of another class"),
    ("missed", "objects without a match"),
    ("false_positives", "predictions without a match (not in a crowd region)"),
    ("matched", "matched pairs (one-to-one, Hungarian, IoU >= threshold)"),
    ("ignored", "unmatched predictions lying in a crowd region"),
)
CONTRAST_MEANINGS = _CONTRAST_MEANINGS  # each contrast count and what it counts


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
    the confusion matrix; ``extra`` adds settings and the dataset name.
    """
    content = dict(summary.results)
    content["details"] = summary.details
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


def _table(rows: list[list[Any]], headers: list[str]) -> str:
    return tabulate(rows, headers=headers, tablefmt="pipe", numalign="right")


def _per_class_table(summary: Summary) -> str:
    """Per class: each semantic column, instance IoU, AP and the counts present."""
    res = summary.results
    columns = [("semantic_IoU", "semantic IoU", "semantic", "mIoU")]
    if "semantic_from_instances" in res:
        columns = [("semantic_IoU", "semantic IoU (head)", "semantic", "mIoU"),
                   ("semantic_from_instances_IoU", "semantic IoU (painted instances)",
                    "semantic_from_instances", "mIoU")]
    if "instance" in res:
        columns += [("instance_IoU", "instance IoU", "instance", "class_mIoU"),
                    ("AP", "mask AP", "segm", "AP")]
    counts = [key for key in ("gt_instances", "matched", "predictions")
              if key in summary.details["per_class"][0]] if summary.details["per_class"] else []
    rows = [[r["class"], *(_fmt(r[key]) for key, *_ in columns), *(r[c] for c in counts)]
            for r in summary.details["per_class"]]
    totals = summary.details["counts"]
    total_keys = {"gt_instances": "n_gt", "matched": "matched", "predictions": "n_pred"}
    rows.append(["(mean)", *(_fmt(res[group][key]) for _, _, group, key in columns),
                 *(int(totals.get(total_keys[c], sum(r[c] for r in summary.details["per_class"])))
                   for c in counts)])
    headers = ["class", *(label for _, label, *_ in columns),
               *({"gt_instances": "GT inst"}.get(c, c) for c in counts)]
    return _table(rows, headers)


def _headline_table(summary: Summary) -> str:
    res = summary.results
    cells = [("sem mIoU", "semantic", "mIoU"), ("sem mIoU/img", "semantic", "mIoU_per_image")]
    if "semantic_from_instances" in res:
        cells = [("sem mIoU (head)", "semantic", "mIoU"),
                 ("sem mIoU (painted)", "semantic_from_instances", "mIoU"),
                 ("sem mIoU/img (head)", "semantic", "mIoU_per_image")]
    if "instance" in res:
        cells += [("inst mIoU", "instance", "mIoU"), ("inst matched", "instance", "matched_mIoU"),
                  ("F1", "instance", "F1"), ("boundary IoU", "instance", "boundary_IoU"),
                  ("AP", "segm", "AP"), ("AP50", "segm", "AP50"), ("AP75", "segm", "AP75")]
    if "panoptic" in res:
        cells += [("PQ", "panoptic", "PQ"), ("SQ", "panoptic", "SQ"), ("RQ", "panoptic", "RQ")]
    return _table([[_fmt(res[g].get(k, math.nan)) for _, g, k in cells]],
                  [label for label, _, _ in cells])


_ACCOUNTING_MEANINGS = {
    "merged": "one prediction on >= 2 objects: split into its parts on each",
    "split": "one object in >= 2 predictions: pieces joined",
    "duplicate": "extra prediction on a found object: removed",
    "class_confusion": "object found with the wrong class: relabelled",
    "localisation": "prediction beside its object (IoU 0.1 to threshold): moved onto it",
    "mask_quality": "matched, IoU < 1: mask made exact",
    "missed": "object nothing explains: added",
    "background": "prediction on no object: removed",
    "in_crowd": "prediction ignored in a crowd region: removed",
    "low_score": "prediction below the score threshold (AP only): removed",
    "all": "every fix together",
}


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
    return _table(rows, ["category", "PQ", "SQ", "RQ", "TP", "FP", "FN"])


def _accounting_table(summary: Summary) -> str:
    """Per error type: count and the gain of each headline metric if only it were fixed."""
    acc = summary.results["accounting"]
    metrics = [k for k in ("semantic_mIoU", "instance_mIoU", "PQ", "AP") if k in acc]
    labels = {"semantic_mIoU": "d sem mIoU", "instance_mIoU": "d inst mIoU", "PQ": "d PQ",
              "AP": "d AP"}
    rows = []
    for row in summary.details["accounting"]["rows"]:
        rows.append([row["error"], row["count"],
                     *(_signed(row[f"delta_{k}"]) for k in metrics),
                     _ACCOUNTING_MEANINGS.get(row["error"], "")])
    rows.append(["(original)", "", *(_fmt(acc[k]) for k in metrics), ""])
    return tabulate(rows, headers=["error", "count", *(labels[k] for k in metrics), "fix"],
                    tablefmt="pipe", disable_numparse=True,
                    colalign=("left", "right", *("right",) * len(metrics), "left"))


def _signed(value: float) -> str:
    return "" if math.isnan(value) else f"{value + 0.0:+.2f}"


def format_report(summary: Summary, dataset_name: str) -> str:
    """The log report.

    The accounting's sentence (when on), headline metrics, a per-class semantic vs instance
    table, the PQ table, the accounting table, the contrast counts with their meaning, the
    absent-class rules that applied, and the explanation sentence.
    """
    res = summary.results
    rules = []
    for key, entry in summary.details["absent_class_rules"].items():
        if entry["classes"]:
            rules.append(f"  {key} ({entry['rule']}): {', '.join(entry['classes'])}")
    lines = [
        f"SegContrast evaluation of {dataset_name} ({summary.details['num_images']} images), "
        "percent except counts:",
    ]
    if "accounting" in res:
        lines += [summary.details["accounting"]["sentence"], ""]
    lines += [
        _headline_table(summary),
        "",
        "Per class, semantic vs instance:" if "instance" in res else "Per class:",
        _per_class_table(summary),
        "",
    ]
    if "panoptic" in res:
        lines += ["Panoptic quality (things; background as one stuff segment per image):",
                  _panoptic_table(summary), ""]
    if "accounting" in res:
        lines += ["Gap accounting: what each metric gains if only that error is fixed "
                  "(exact recomputation; percent points):", _accounting_table(summary), ""]
    if "contrast" in res:
        contrast = _table(
            [[key, int(res["contrast"][key]), meaning] for key, meaning in _CONTRAST_MEANINGS],
            ["count", "value", "meaning"],
        )
        lines += ["Where they disagree:", contrast, ""]
    lines += [
        "Absent-class rules applied:" if rules else "Absent-class rules applied: none.",
        *rules,
        summary.details["explanation"],
    ]
    return "\n".join(lines)

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

from ..utils import atomic_write
from .records import ImageRecord
from .summary import Summary

__all__ = [
    "PER_IMAGE_COLUMNS",
    "format_report",
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


def _json_ready(value: Any) -> Any:
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {str(k): _json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_ready(v) for v in value]
    return value


def write_metrics_json(path: str, summary: Summary, extra: dict[str, Any]) -> None:
    """Write ``metrics.json``: result groups at the top level (NaN as null), plus details.

    ``details`` holds the absent-class rules and the classes they touched, per-class rows and
    the confusion matrix; ``extra`` adds settings and the dataset name.
    """
    content = dict(summary.results)
    content["details"] = summary.details
    content.update(extra)
    text = json.dumps(_json_ready(content), indent=2)
    atomic_write(path, lambda f: f.write(text), mode="w")


def _fmt(value: float, digits: int = 2) -> str:
    return "" if math.isnan(value) else f"{value:.{digits}f}"


def write_per_image_csv(path: str, images: Sequence[ImageRecord]) -> None:
    """``per_image.csv``: one row per image, mIoUs in percent (empty when undefined)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(PER_IMAGE_COLUMNS)
    for r in images:
        c = r.counts
        writer.writerow(
            [
                r.image_id,
                _fmt(r.semantic_miou * 100, 4),
                _fmt(r.instance_miou * 100, 4),
                c["n_gt"],
                c["n_pred"],
                c["merged"],
                c["split"],
                c["missed"],
                c["false_positives"],
                c["duplicates"],
                c["class_confusions"],
                c["n_crowd"],
            ]
        )
    text = buffer.getvalue()
    atomic_write(path, lambda f: f.write(text), mode="w")


def format_report(summary: Summary, dataset_name: str) -> str:
    """The log report.

    Headline metrics, a per-class semantic vs instance table, the contrast counts with their
    meaning, the absent-class rules that applied, and the explanation sentence.
    """
    res = summary.results
    sem, inst, segm = res["semantic"], res["instance"], res["segm"]
    rows = [
        [
            r["class"],
            _fmt(r["semantic_IoU"]),
            _fmt(r["instance_IoU"]),
            _fmt(r["AP"]),
            r["gt_instances"],
            r["matched"],
            r["predictions"],
        ]
        for r in summary.details["per_class"]
    ]
    rows.append(
        [
            "(mean)",
            _fmt(sem["mIoU"]),
            _fmt(inst["class_mIoU"]),
            _fmt(segm["AP"]),
            int(res["contrast"]["gt_instances"]),
            int(res["contrast"]["matched"]),
            int(res["contrast"]["predictions"]),
        ]
    )
    table = tabulate(
        rows,
        headers=[
            "class",
            "semantic IoU",
            "instance IoU",
            "mask AP",
            "GT inst",
            "matched",
            "predictions",
        ],
        tablefmt="pipe",
        numalign="right",
    )
    headline = tabulate(
        [
            [
                _fmt(sem["mIoU"]),
                _fmt(sem["mIoU_per_image"]),
                _fmt(inst["mIoU"]),
                _fmt(inst["matched_mIoU"]),
                _fmt(inst["F1"]),
                _fmt(inst.get("boundary_IoU", math.nan)),
                _fmt(segm["AP"]),
                _fmt(segm["AP50"]),
                _fmt(segm["AP75"]),
            ]
        ],
        headers=[
            "sem mIoU",
            "sem mIoU/img",
            "inst mIoU",
            "inst matched",
            "F1",
            "boundary IoU",
            "AP",
            "AP50",
            "AP75",
        ],
        tablefmt="pipe",
        numalign="right",
    )
    contrast = tabulate(
        [[key, int(res["contrast"][key]), meaning] for key, meaning in _CONTRAST_MEANINGS],
        headers=["count", "value", "meaning"],
        tablefmt="pipe",
    )
    rules = []
    for key, entry in summary.details["absent_class_rules"].items():
        if entry["classes"]:
            rules.append(f"  {key} ({entry['rule']}): {', '.join(entry['classes'])}")
    lines = [
        f"SegContrast evaluation of {dataset_name} ({int(res['contrast']['images'])} images), "
        "percent except counts:",
        headline,
        "",
        "Per class, semantic vs instance:",
        table,
        "",
        "Where they disagree:",
        contrast,
        "",
        "Absent-class rules applied:" if rules else "Absent-class rules applied: none.",
        *rules,
        summary.details["explanation"],
    ]
    return "\n".join(lines)

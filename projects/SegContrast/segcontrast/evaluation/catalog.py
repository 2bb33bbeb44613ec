"""The metric catalog: every number the evaluator reports, with its label, unit and meaning.

One place for the names a person reads. The log table, ``metrics.json``'s
``metric_definitions``, ``report.html``, the plots, ``--compare``, the threshold sweep, the demo
and the study all take their labels from here, and the error types' names, counts and sentences
from :data:`ERROR_TYPE_DEFS`. Plain Python, no imports beyond the standard library: it is on
the ``--help`` path.

A key with ``<class>`` stands for one key per thing class (``IoU-<class>``: ``IoU-cat``...).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

__all__ = [
    "ACCOUNTED",
    "COMPARED",
    "DEMO_ROWS",
    "ERROR_TYPES",
    "ERROR_TYPE_DEFS",
    "HEADLINE_INSTANCE",
    "HEADLINE_SEMANTIC",
    "METRICS",
    "NEGLIGIBLE",
    "OTHER_COUNTS",
    "PER_CLASS_COLUMNS",
    "STUDY_ROWS",
    "SWEEP_ROWS",
    "ErrorTypeDef",
    "MetricDef",
    "definitions_of",
    "error_type",
    "label",
    "metric",
]

PERCENT, POINTS, COUNT = "%", "points", "count"
# Changes smaller than this (percent points) round to 0.0 at one decimal: the sentences call
# them nothing, and never call a larger one nothing.
NEGLIGIBLE = 0.05


@dataclass(frozen=True)
class MetricDef:
    """One reported number.

    Attributes:
        group: its group in ``metrics.json`` ("semantic", "instance", ...).
        key: its key in the group (``<class>`` stands for each class name).
        label: what every table, plot and sentence calls it.
        unit: "%" (percent), "points" (percent points, a difference) or "count".
        meaning: one line: what it is.
    """

    group: str
    key: str
    label: str
    unit: str
    meaning: str

    @property
    def is_count(self) -> bool:
        """Whether it is shown without decimals."""
        return self.unit == COUNT

    def as_dict(self) -> dict[str, str]:
        """JSON-ready."""
        return asdict(self)


@dataclass(frozen=True)
class ErrorTypeDef:
    """One error type of the assignment: every error of a prediction or object has one.

    Attributes:
        name: its key ("merged"; ``contrast/<name>``, ``accounting/count-<name>``).
        counted: what its count counts: "predictions" or "objects".
        singular: the noun for one ("merged prediction").
        plural: the noun for several ("merged predictions").
        fix: what the oracle's fix does, as a condition ("if separated").
        meaning: one line: what it is and its fix.
        invisible_to: per side ("semantic_mIoU", "instance_mIoU"), why that side does not
            see it, said only where its gain on that side is negligible.
    """

    name: str
    counted: str
    singular: str
    plural: str
    fix: str
    meaning: str
    invisible_to: tuple[tuple[str, str], ...] = ()

    @property
    def label(self) -> str:
        """The table's name of the type."""
        return self.name.replace("_", " ")

    def noun(self, count: int) -> str:
        """``count`` and the noun: "1 split object", "2 split objects"."""
        return f"{count} {self.singular if count == 1 else self.plural}"

    def why_invisible(self, side: str) -> str:
        """Why ``side`` cannot see this type ("" when it can)."""
        return dict(self.invisible_to).get(side, "")


_NO_MATCH = ("instance_mIoU", "it scores each object by its match, and these predictions "
             "match no object")
_RIGHT_CLASS = ("semantic_mIoU", "it pools each class's pixels, and these have the right "
                "class either way")

# In the assignment's order (the first row that applies): segcontrast.evaluation.accounting.
ERROR_TYPE_DEFS = (
    ErrorTypeDef("merged", "predictions", "merged prediction", "merged predictions",
                 "if separated", "a prediction covering more than half of each of two or more "
                 "objects of its class; fix: replaced by its part of each", (_RIGHT_CLASS,)),
    ErrorTypeDef("split", "objects", "split object", "split objects", "if joined",
                 "an object holding more than half of each of two or more predictions of its "
                 "class; fix: the pieces joined", (_RIGHT_CLASS,)),
    ErrorTypeDef("duplicate", "predictions", "duplicate", "duplicates", "if removed",
                 "an unmatched prediction with IoU >= threshold with a matched prediction or "
                 "object of its class; fix: removed",
                 (_NO_MATCH, ("semantic_mIoU", "it paints a found object's pixels once, "
                                               "however often it is predicted"))),
    ErrorTypeDef("class_confusion", "predictions", "class confusion", "class confusions",
                 "if relabelled", "an unmatched prediction with IoU >= threshold with an "
                 "object of another class; fix: given that class"),
    ErrorTypeDef("localisation", "predictions", "misplaced prediction", "misplaced predictions",
                 "if moved onto their objects", "an unmatched prediction whose best IoU with an "
                 "object of its class is 0.1 or more, below the threshold; fix: moved onto it"),
    ErrorTypeDef("mask_quality", "predictions", "imprecise mask", "imprecise masks",
                 "if exact", "a matched prediction with IoU < 1; fix: made exact"),
    ErrorTypeDef("missed", "objects", "missed object", "missed objects", "if found",
                 "an object without a match that no type above explains; fix: added"),
    ErrorTypeDef("background", "predictions", "prediction on no object",
                 "predictions on no object", "if removed", "an unmatched prediction with IoU "
                 "< 0.1 with every object of its class and < threshold with every other; "
                 "fix: removed", (_NO_MATCH,)),
    ErrorTypeDef("in_crowd", "predictions", "prediction in a crowd region",
                 "predictions in crowd regions", "if removed", "a prediction the matching "
                 "ignores in a crowd region of its class (its pixels outside the region are "
                 "wrong pixels); fix: removed", (_NO_MATCH,)),
    ErrorTypeDef("low_score", "predictions", "low-score prediction", "low-score predictions",
                 "if removed", "a prediction below the score threshold: outside the semantic "
                 "and instance sides and PQ; AP ranks it, so removing it is no fix there "
                 "(its AP delta is left out)", (_NO_MATCH,)),
)
ERROR_TYPES = tuple(d.name for d in ERROR_TYPE_DEFS)
_ERROR_TYPES = {d.name: d for d in ERROR_TYPE_DEFS}

# The accounting's headline metrics: its key, the metric it recomputes (group, key). Its
# semantic side is always the painted instances: "semantic" for an instance model,
# "semantic_from_instances" when the model has a semantic head too.
ACCOUNTED = (
    ("semantic_mIoU", ("semantic", "mIoU")),
    ("instance_mIoU", ("instance", "mIoU")),
    ("PQ", ("panoptic", "PQ")),
    ("AP", ("segm", "AP")),
)


def _semantic(group: str, painted: bool) -> list[MetricDef]:
    what = "the instances painted as labels" if painted else "the semantic view"
    suffix = " (painted instances)" if painted else ""
    return [
        MetricDef(group, "mIoU", f"semantic mIoU{suffix}", PERCENT,
                  f"mean over thing classes of pixel IoU (pixels pooled over images), {what}"),
        MetricDef(group, "mIoU_per_image", f"semantic mIoU per image{suffix}", PERCENT,
                  "each image's mIoU over the classes present in it, averaged over images"),
        MetricDef(group, "fwIoU", f"frequency-weighted IoU{suffix}", PERCENT,
                  "IoU of every label weighted by its share of ground-truth pixels"),
        MetricDef(group, "pixel_acc", f"pixel accuracy{suffix}", PERCENT,
                  "share of non-ignored pixels with the right label"),
        MetricDef(group, "mean_acc", f"mean class accuracy{suffix}", PERCENT,
                  "mean over labels with ground truth of the share of their pixels found"),
        MetricDef(group, "mDice", f"semantic mDice{suffix}", PERCENT,
                  "mean over thing classes of 2 TP / (GT + predicted)"),
        MetricDef(group, "mIoU_with_background", f"semantic mIoU with background{suffix}",
                  PERCENT, "mIoU with the background label counted as a class"),
        MetricDef(group, "IoU-background", f"background IoU{suffix}", PERCENT,
                  "pixel IoU of the background label"),
        MetricDef(group, "IoU-<class>", f"semantic IoU{suffix}", PERCENT,
                  "pixel IoU of one class"),
    ]


_COUNTS = (
    MetricDef("contrast", "matched", "matched pairs", COUNT,
              "prediction-object pairs of the instance matching (per class, one to one, "
              "IoU >= threshold): not an error"),
    MetricDef("contrast", "false_positives", "false positives", COUNT,
              "kept predictions without a match, outside crowd regions (precision's "
              "denominator): duplicates, class confusions, misplaced predictions, predictions "
              "on no object and unmatched merged or split pieces"),
    *(MetricDef("contrast", d.name, f"{d.label} ({d.counted})", COUNT, d.meaning)
      for d in ERROR_TYPE_DEFS),
    MetricDef("contrast", "gt_instances", "objects", COUNT,
              "non-crowd ground-truth objects"),
    MetricDef("contrast", "predictions", "predictions", COUNT,
              "predictions kept by the score threshold"),
    MetricDef("contrast", "images", "images", COUNT, "images scored"),
    MetricDef("contrast", "semantic_absent_classes", "semantic absent classes", COUNT,
              "classes with neither ground-truth nor predicted pixels (left out of means)"),
    MetricDef("contrast", "semantic_only_predicted_classes", "semantic only-predicted classes",
              COUNT, "classes with predicted pixels only (IoU 0, counted)"),
    MetricDef("contrast", "instance_absent_classes", "instance absent classes", COUNT,
              "classes with neither objects nor predictions (left out of means)"),
    MetricDef("contrast", "instance_only_predicted_classes", "instance only-predicted classes",
              COUNT, "classes with predictions only (IoU 0, counted in class_mIoU)"),
)


def _accounting() -> list[MetricDef]:
    out = []
    for key, (group, source) in ACCOUNTED:
        base = next(m for m in _BASE if m.group == group and m.key == source)
        out.append(MetricDef("accounting", key, base.label, PERCENT,
                             f"the original {base.label} the deltas start from"))
    for d in (*ERROR_TYPE_DEFS, None):
        name = d.name if d else "all"
        what = f"{d.label} errors" if d else "every error at once"
        out.append(MetricDef("accounting", f"count-{name}",
                             f"{d.label} ({d.counted})" if d else "all errors", COUNT,
                             d.meaning if d else "every error of every type"))
        for key, (group, source) in ACCOUNTED:
            base = next(m for m in _BASE if m.group == group and m.key == source)
            out.append(MetricDef("accounting", f"delta_{key}-{name}",
                                 f"{base.label} gain, {d.label if d else 'all fixed'}", POINTS,
                                 f"{base.label} with {what} fixed minus the original"))
    return out


_BASE = (
    *_semantic("semantic", False),
    *_semantic("semantic_from_instances", True),
    MetricDef("instance", "mIoU", "instance mIoU", PERCENT,
              "mean over objects of the IoU with their match, a missed object counting 0"),
    MetricDef("instance", "matched_mIoU", "instance mIoU of matched objects", PERCENT,
              "mean IoU over the matched objects only"),
    MetricDef("instance", "class_mIoU", "instance class mIoU", PERCENT,
              "mean over classes of their objects' instance IoU (comparable to semantic mIoU)"),
    MetricDef("instance", "precision", "instance precision", PERCENT,
              "matched / (matched + false positives)"),
    MetricDef("instance", "recall", "instance recall", PERCENT, "matched / objects"),
    MetricDef("instance", "F1", "instance F1", PERCENT,
              "harmonic mean of instance precision and recall"),
    MetricDef("instance", "boundary_IoU", "boundary IoU", PERCENT,
              "mean over matched pairs of the IoU of their boundary bands"),
    MetricDef("instance", "IoU-<class>", "instance IoU", PERCENT,
              "instance mIoU of one class's objects"),
    MetricDef("segm", "AP", "mask AP", PERCENT,
              "COCO mask AP, IoU 0.50:0.95, as pycocotools' COCOeval"),
    MetricDef("segm", "AP50", "mask AP50", PERCENT, "COCO mask AP at IoU 0.5"),
    MetricDef("segm", "AP75", "mask AP75", PERCENT, "COCO mask AP at IoU 0.75"),
    MetricDef("segm", "APs", "mask AP small", PERCENT, "mask AP of objects under 32^2 pixels"),
    MetricDef("segm", "APm", "mask AP medium", PERCENT, "mask AP of objects of 32^2 to 96^2"),
    MetricDef("segm", "APl", "mask AP large", PERCENT, "mask AP of objects over 96^2 pixels"),
    MetricDef("segm", "AP-<class>", "mask AP", PERCENT, "mask AP of one class"),
    *_COUNTS,
    MetricDef("panoptic", "PQ", "PQ", PERCENT,
              "panoptic quality over the thing classes, as panopticapi"),
    MetricDef("panoptic", "SQ", "SQ", PERCENT, "segmentation quality: mean IoU of matched "
              "segments"),
    MetricDef("panoptic", "RQ", "RQ", PERCENT, "recognition quality: TP / (TP + FP/2 + FN/2)"),
    MetricDef("panoptic", "PQ_all", "PQ with background", PERCENT,
              "PQ over the thing classes and the background"),
    MetricDef("panoptic", "SQ_all", "SQ with background", PERCENT, "SQ with the background"),
    MetricDef("panoptic", "RQ_all", "RQ with background", PERCENT, "RQ with the background"),
    MetricDef("panoptic", "TP", "panoptic TP", COUNT, "matched thing segments"),
    MetricDef("panoptic", "FP", "panoptic FP", COUNT, "unmatched predicted thing segments"),
    MetricDef("panoptic", "FN", "panoptic FN", COUNT, "unmatched ground-truth thing segments"),
    MetricDef("panoptic", "PQ-background", "background PQ", PERCENT, "PQ of the background"),
    MetricDef("panoptic", "PQ-<class>", "PQ", PERCENT, "PQ of one class"),
)

# The per-class table (``details.per_class``): one row per class.
PER_CLASS_COLUMNS = (
    MetricDef("per_class", "semantic_IoU", "semantic IoU", PERCENT, "pixel IoU of the class"),
    MetricDef("per_class", "semantic_from_instances_IoU", "semantic IoU (painted instances)",
              PERCENT, "pixel IoU of the class, the instances painted as labels"),
    MetricDef("per_class", "instance_IoU", "instance IoU", PERCENT,
              "mean IoU of the class's objects with their match, a missed one counting 0"),
    MetricDef("per_class", "AP", "mask AP", PERCENT, "COCO mask AP of the class"),
    MetricDef("per_class", "gt_instances", "objects", COUNT, "the class's non-crowd objects"),
    MetricDef("per_class", "matched", "matched", COUNT, "the class's matched objects"),
    MetricDef("per_class", "predictions", "predictions", COUNT,
              "predictions of the class kept by the score threshold"),
)

METRICS: tuple[MetricDef, ...] = (*_BASE, *_accounting(), *PER_CLASS_COLUMNS)
_BY_KEY = {(m.group, m.key): m for m in METRICS}

# The side-by-side scores every report opens with (those present).
HEADLINE_SEMANTIC = (("semantic", "mIoU"), ("semantic_from_instances", "mIoU"),
                     ("semantic", "mIoU_per_image"))
HEADLINE_INSTANCE = (("instance", "mIoU"), ("instance", "matched_mIoU"), ("instance", "F1"),
                     ("instance", "boundary_IoU"), ("segm", "AP"), ("segm", "AP50"),
                     ("segm", "AP75"), ("panoptic", "PQ"), ("panoptic", "SQ"),
                     ("panoptic", "RQ"))
# Counts that are not error types, shown under the error-type table.
OTHER_COUNTS = (("contrast", "matched"), ("contrast", "false_positives"),
                ("contrast", "gt_instances"), ("contrast", "predictions"))
# --compare's rows: the headline metrics with a bootstrap, then every count of one image.
COMPARED = (
    ("semantic", "mIoU"), ("semantic_from_instances", "mIoU"), ("instance", "mIoU"),
    ("segm", "AP"), ("segm", "AP50"), ("instance", "boundary_IoU"),
    *(("contrast", name) for name in ERROR_TYPES),
    ("contrast", "matched"), ("contrast", "false_positives"),
)
# The threshold sweep's columns.
SWEEP_ROWS = (("segm", "AP"), ("segm", "AP75"), ("semantic", "mIoU"), ("instance", "mIoU"),
              ("instance", "boundary_IoU"))
# The demo's side-by-side table.
DEMO_ROWS = (
    ("semantic", "mIoU"), ("semantic", "mIoU_per_image"), ("instance", "mIoU"),
    ("instance", "matched_mIoU"), ("instance", "F1"), ("instance", "boundary_IoU"),
    ("segm", "AP"), ("segm", "AP50"), ("segm", "AP75"), ("panoptic", "PQ"), ("panoptic", "SQ"),
    ("panoptic", "RQ"), ("contrast", "merged"), ("contrast", "split"), ("contrast", "missed"),
)
# The loss study's tables and charts (bench/run_study.py).
STUDY_ROWS = (("segm", "AP"), ("segm", "AP75"), ("semantic", "mIoU"), ("instance", "mIoU"),
              ("instance", "boundary_IoU"), ("contrast", "merged"), ("contrast", "split"))


def _template(key: str) -> str | None:
    """``IoU-cat`` -> ``IoU-<class>`` (keys with a per-class suffix), else None."""
    for prefix in ("IoU-", "AP-", "PQ-"):
        if key.startswith(prefix) and key != "IoU-background" and key != "PQ-background":
            return prefix + "<class>"
    return None


def metric(group: str, key: str) -> MetricDef | None:
    """The definition of ``group/key`` (per-class keys by their template), None if unknown."""
    found = _BY_KEY.get((group, key))
    if found is None and _template(key):
        found = _BY_KEY.get((group, _template(key)))
    return found


def label(group: str, key: str) -> str:
    """What every report calls ``group/key`` (its key where the catalog does not know it)."""
    found = metric(group, key)
    if found is None:
        return key
    if "<class>" in found.key:
        return f"{found.label} {key.split('-', 1)[1]}"
    return found.label


def error_type(name: str) -> ErrorTypeDef:
    """The error type called ``name``."""
    return _ERROR_TYPES[name]


def definitions_of(groups: dict[str, dict]) -> list[dict[str, str]]:
    """``metrics.json``'s ``metric_definitions``: every key of ``groups`` the catalog knows.

    Per-class keys appear once, as their template (``IoU-<class>``).
    """
    out, seen = [], set()
    for group, values in groups.items():
        for key in values:
            found = metric(group, key)
            if found is not None and (found.group, found.key) not in seen:
                seen.add((found.group, found.key))
                out.append(found.as_dict())
    return out

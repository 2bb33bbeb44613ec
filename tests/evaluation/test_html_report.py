"""report.html: written by the training evaluator, self-contained, and its numbers are the
numbers of metrics.json."""

import html
import json
import re
from html.parser import HTMLParser

import pytest
from segcontrast.engine.evaluator import SegContrastEvaluator
from segcontrast.evaluation.catalog import ERROR_TYPES, label, metric
from segcontrast.evaluation.report.html import AP_RULE, write_html_report

from .synthetic import register_synthetic_dataset, synthetic_dataset, synthetic_predictions


class _Cells(HTMLParser):
    """Every element with data-group / data-key / data-value, with its text; every img src."""

    def __init__(self):
        super().__init__()
        self.cells, self.images, self.svgs, self._open = [], [], 0, None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "img":
            self.images.append(attrs.get("src", ""))
        if tag == "svg":
            self.svgs += 1
        if "data-group" in attrs:
            self._open = [attrs["data-group"], attrs["data-key"], attrs["data-value"], ""]

    def handle_data(self, data):
        if self._open is not None:
            self._open[3] += data

    def handle_endtag(self, tag):
        if self._open is not None and tag == "td":
            self.cells.append(tuple(self._open))
            self._open = None


def _parse(path):
    parser = _Cells()
    parser.feed(path.read_text())
    return parser


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory):
    dicts = synthetic_dataset(6, height=96, width=128, num_classes=5, seed=9)
    register_synthetic_dataset("segcontrast_test_html", dicts, 5)
    out = tmp_path_factory.mktemp("html")
    ev = SegContrastEvaluator("segcontrast_test_html", str(out), distributed=False,
                              num_worst_images=2, score_threshold=0.0)
    for d in dicts:
        ev.process([{"image_id": d["image_id"]}],
                   [{"instances": synthetic_predictions(d, num_classes=5, seed=9)}])
    ev.evaluate()
    return out


def _shown(value, count, signed=False):
    if value is None:
        return "n/a"
    if count:
        return f"{value:.0f}"
    return f"{round(value, 2) + 0.0:+.2f}" if signed else f"{value:.2f}"


def test_the_training_evaluator_writes_a_self_contained_report(evaluated):
    page = (evaluated / "report.html").read_text()
    parsed = _parse(evaluated / "report.html")
    svgs = sorted(p.name for p in evaluated.glob("*.svg"))
    pngs = sorted(p.name for p in (evaluated / "worst_images").glob("*.png"))
    # per-class IoU, confusion matrix and error types inline; two worst images as PNG
    assert svgs == ["confusion_matrix.svg", "error_types.svg", "per_class_iou.svg"]
    assert len(pngs) == 2 and len(parsed.images) == 2 and parsed.svgs == 3
    assert all(src.startswith("data:image/png;base64,") for src in parsed.images)
    assert not re.search(r"https?://|<link|<script|href=|url\(", page)
    for text in ("Semantic vs instance", "Error types", "Per class", "Worst images",
                 AP_RULE.split(",")[0]):
        assert text in page
    explanation = json.loads((evaluated / "metrics.json").read_text())["details"]["explanation"]
    assert html.escape(explanation) in page


def test_every_number_on_the_page_is_the_number_in_metrics_json(evaluated):
    metrics = json.loads((evaluated / "metrics.json").read_text())
    cells = _parse(evaluated / "report.html").cells
    assert len(cells) > 50
    per_class = {row["class"]: row for row in metrics["details"]["per_class"]}
    seen = set()
    for group, key, exact, text in cells:
        if group.startswith("per_class/"):
            value = per_class[group.split("/", 1)[1]][key]
        else:
            value = metrics[group][key]
            seen.add((group, key))
        assert exact == ("null" if value is None else repr(value)), (group, key)
        found = metric(group, key)
        count = isinstance(value, int) or (found is not None and found.unit == "count")
        signed = found is not None and found.unit == "points"  # a gain: with its sign
        assert text == _shown(value, count, signed), (group, key, text)
    every = {(g, k) for g, values in metrics.items() if isinstance(values, dict)
             and g not in ("details", "settings") for k in values}
    assert every <= seen, every - seen


def test_groups_it_does_not_know_appear_and_a_comparison_comes_first(evaluated, tmp_path):
    for name in ("metrics.json", "per_class_iou.svg"):
        (tmp_path / name).write_bytes((evaluated / name).read_bytes())
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    metrics["panoptic"] = {"PQ": 41.25, "SQ": None}
    (tmp_path / "metrics.json").write_text(json.dumps(metrics))
    comparison = {"names": {"a": "a.json", "b": "b.json"}, "num_images": 6, "samples": 10,
                  "seed": 0, "sentence": "B differs from A where the interval excludes 0.",
                  "rows": [{"group": "instance", "key": "mIoU", "label": "instance mIoU",
                            "a": 50.0, "b": 60.0, "delta": 10.0, "low": 2.0, "high": 18.0,
                            "differs": True}]}
    (tmp_path / "comparison.json").write_text(json.dumps(comparison))
    page = open(write_html_report(str(tmp_path))).read()
    cells = {(g, k): t for g, k, _, t in _parse(tmp_path / "report.html").cells}
    assert cells[("panoptic", "PQ")] == "41.25" and cells[("panoptic", "SQ")] == "n/a"
    assert page.index("A vs B") < page.index("Semantic vs instance")
    assert "[2.00, 18.00]" in page and comparison["sentence"] in page


def test_the_page_reads_sentence_scores_error_types_per_class_plots(evaluated):
    page = (evaluated / "report.html").read_text()
    metrics = json.loads((evaluated / "metrics.json").read_text())
    sentence = html.escape(metrics["details"]["explanation"])
    order = [page.index(text) for text in (
        sentence, "<h2>Semantic vs instance", "<h2>Error types", "<h2>Per class", "<h2>Plots",
        "<figcaption>error_types.svg", "<figcaption>per_class_iou.svg",
        "<figcaption>confusion_matrix.svg", "<h2>Worst images", "<h2>Every result group")]
    assert order == sorted(order)
    assert "-0.00" not in page
    assert page.index(">PQ<") < page.index("<h2>Error types")  # PQ among the scores
    # the error-type table: one row per type, labelled as in the log and the plots
    table = page[page.index("<h2>Error types"):page.index("<h2>Per class")]
    assert [t for t in ERROR_TYPES if f"<td>{t}</td>" in table] == list(ERROR_TYPES)
    for group, key in (("semantic", "mIoU"), ("instance", "mIoU"), ("segm", "AP50")):
        assert f">{html.escape(label(group, key))}</th>" in page

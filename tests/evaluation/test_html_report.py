"""report.html: written by the training evaluator, self-contained, and its numbers are the
numbers of metrics.json."""

import html
import json
import re
from html.parser import HTMLParser

import pytest
from segcontrast.engine.evaluator import SegContrastEvaluator
from segcontrast.evaluation.report.html import AP_RULE, write_html_report

from .synthetic import register_synthetic_dataset, synthetic_dataset, synthetic_predictions


class _Cells(HTMLParser):
    """Every element with data-group / data-key / data-value, with its text; every img src."""

    def __init__(self):
        super().__init__()
        self.cells, self.images, self._open = [], [], None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "img":
            self.images.append(attrs.get("src", ""))
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


def _shown(value, count):
    if value is None:
        return "n/a"
    return f"{value:.0f}" if count else f"{value:.2f}"


def test_the_training_evaluator_writes_a_self_contained_report(evaluated):
    page = (evaluated / "report.html").read_text()
    parsed = _parse(evaluated / "report.html")
    pngs = sorted(p.name for p in evaluated.glob("*.png")) + sorted(
        p.name for p in (evaluated / "worst_images").glob("*.png"))
    # per-class IoU, confusion matrix, accounting, two worst images
    assert len(pngs) == 5 and len(parsed.images) == len(pngs)
    assert all(src.startswith("data:image/png;base64,") for src in parsed.images)
    assert not re.search(r"https?://|<link|<script|href=|url\(", page)
    for text in ("Semantic vs instance", "Where the two views disagree", "Per class",
                 "Worst images", AP_RULE.split(",")[0]):
        assert text in page
    assert json.loads((evaluated / "metrics.json").read_text())["details"]["explanation"] in page


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
        count = (group == "contrast" or isinstance(value, int) or key.startswith("count-")
                 or (group, key) in {("panoptic", "TP"), ("panoptic", "FP"), ("panoptic", "FN")})
        assert text == _shown(value, count), (group, key, text)
    every = {(g, k) for g, values in metrics.items() if isinstance(values, dict)
             and g not in ("details", "settings") for k in values}
    assert every <= seen, every - seen


def test_groups_it_does_not_know_appear_and_a_comparison_comes_first(evaluated, tmp_path):
    for name in ("metrics.json", "per_class_iou.png"):
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


def test_the_page_opens_with_what_each_error_costs(evaluated):
    page = (evaluated / "report.html").read_text()
    metrics = json.loads((evaluated / "metrics.json").read_text())
    sentence = html.escape(metrics["details"]["accounting"]["sentence"])
    assert sentence in page
    assert page.index("What each error costs") < page.index("Where the two views disagree")
    assert page.index(">PQ<") < page.index("What each error costs")  # PQ in the headline

"""What tools/evaluate.py shows: one error assignment behind every count of the log, metrics.json,
per_image.csv, report.html and the plots; the catalog's labels everywhere; names escaped; and
no plotting library on the default path (the plots are SVG written by the project)."""

import csv
import html
import json
import re
import subprocess
import sys
from html.parser import HTMLParser
from xml.etree import ElementTree

import pytest
from segcontrast.evaluation.catalog import ERROR_TYPE_DEFS, ERROR_TYPES, OTHER_COUNTS, label

from tests.evaluation.results_files import write_synthetic_files

from .conftest import REPO, run_tool, tool_env

SVG = "{http://www.w3.org/2000/svg}"
# class names a page or a drawing must escape
NAMES = ['<b>nucleus</b>', 'a & b', 'say "cheese"', "it's", "plain"]


@pytest.fixture(scope="module")
def scored(tmp_path_factory):
    """One real run of tools/evaluate.py on files whose class names need escaping."""
    folder = tmp_path_factory.mktemp("evaluate_report")
    gt, results, _ = write_synthetic_files(folder, 10, num_classes=len(NAMES), height=72,
                                           width=96, instances_per_image=6, seed=12)
    content = json.loads(gt.read_text())
    for category, name in zip(content["categories"], NAMES, strict=True):
        category["name"] = name
    gt.write_text(json.dumps(content))
    out = folder / "ev"
    result = run_tool("evaluate.py", "--gt", str(gt), "--results", str(results), "--output",
                      str(out), "--workers", "1", "TEST.SEGCONTRAST.SCORE_THRESHOLD", "0.3")
    assert result.returncode == 0, result.stderr[-3000:]
    return {"out": out, "stdout": result.stdout, "gt": gt, "results": results,
            "metrics": json.loads((out / "metrics.json").read_text())}


def _log_table(stdout: str) -> dict[str, list[str]]:
    """The log's error-type table: {type: its cells}."""
    start = stdout.index("Error types")
    rows = {}
    for line in stdout[start:].splitlines()[1:]:
        if not line.startswith("|"):
            break
        cells = [c.strip() for c in line.strip("|").split("|")]
        rows[cells[0]] = cells[1:]
    return rows


def _page_cells(page: str) -> dict[tuple[str, str], str]:
    cells = {}
    for group, key, text in re.findall(
            r'data-group="([^"]*)" data-key="([^"]*)" data-value="[^"]*">([^<]*)</td>', page):
        cells.setdefault((html.unescape(group), html.unescape(key)), html.unescape(text))
    return cells


def test_every_count_comes_from_the_one_assignment(scored):
    metrics, out = scored["metrics"], scored["out"]
    contrast, acc = metrics["contrast"], metrics["accounting"]
    log = _log_table(scored["stdout"])
    page = _page_cells((out / "report.html").read_text())
    with open(out / "per_image.csv") as f:
        per_image = list(csv.DictReader(f))
    labels = [t.text for t in ElementTree.parse(out / "error_types.svg").getroot().iter(
        f"{SVG}text")]
    assert sum(contrast[t] for t in ERROR_TYPES) > 0
    for d in ERROR_TYPE_DEFS:
        count = int(contrast[d.name])
        assert acc[f"count-{d.name}"] == count, d.name  # the accounting's rows
        assert log[d.name][:2] == [str(count), d.counted], d.name  # the log
        assert page[("contrast", d.name)] == str(count), d.name  # report.html
        assert sum(int(r[d.name]) for r in per_image) == count, d.name  # per_image.csv
        assert f"{d.name} ({count} {d.counted})" in labels, d.name  # error_types.svg
    assert acc["count-all"] == sum(contrast[t] for t in ERROR_TYPES)
    # the counts that are not error types: the same in each place, and they add up
    for group, key in OTHER_COUNTS:
        assert page[(group, key)] == str(int(contrast[key]))
        assert f"{label(group, key)} {int(contrast[key])}" in scored["stdout"]
    assert contrast["matched"] + contrast["false_positives"] + contrast["in_crowd"] \
        == contrast["predictions"]
    assert sum(int(r["matched"]) for r in per_image) == contrast["matched"]
    # the sentence: the same in the log, the file and the page, its counts the assignment's
    sentence = metrics["details"]["explanation"]
    assert sentence in scored["stdout"]
    assert html.escape(sentence) in (out / "report.html").read_text()
    named = 0
    for d in ERROR_TYPE_DEFS:
        nouns = rf"(\d+) (?:{re.escape(d.plural)}|{re.escape(d.singular)})\b"
        for count in re.findall(nouns, sentence):
            assert int(count) == contrast[d.name], (d.name, count, sentence)
            named += 1
    assert named >= 2, sentence
    assert "-0.0" not in sentence and "-0.0" not in scored["stdout"]


def test_the_labels_are_the_catalogs_in_the_log_and_the_page(scored):
    page = (scored["out"] / "report.html").read_text()
    for group, key in (("semantic", "mIoU"), ("semantic", "mIoU_per_image"),
                       ("instance", "mIoU"), ("instance", "matched_mIoU"), ("segm", "AP50"),
                       ("panoptic", "PQ")):
        assert f"| {label(group, key)} " in scored["stdout"], (group, key)
        assert f">{html.escape(label(group, key))}</th>" in page, (group, key)
    definitions = {(d["group"], d["key"]): d for d in scored["metrics"]["metric_definitions"]}
    for group in ("semantic", "instance", "segm", "contrast", "panoptic", "accounting"):
        for key in scored["metrics"][group]:
            template = re.sub(r"^(IoU|AP|PQ)-(?!background$).*", r"\1-<class>", key)
            assert (group, template) in definitions, (group, key)
    assert definitions[("segm", "AP50")]["label"] == "mask AP50"
    assert definitions[("contrast", "split")]["unit"] == "count"


def test_names_are_escaped_in_the_page_and_the_plots(scored):
    out = scored["out"]
    page = (out / "report.html").read_text()
    assert "<b>nucleus</b>" not in page and html.escape("<b>nucleus</b>") in page

    class Tags(HTMLParser):
        def __init__(self):
            super().__init__()
            self.tags, self.attrs = set(), []

        def handle_starttag(self, tag, attrs):
            self.tags.add(tag)
            self.attrs += [v for _, v in attrs if v]

    parsed = Tags()
    parsed.feed(page)
    assert "b" not in parsed.tags  # the name stayed text, in every table and drawing
    assert 'per_class/say "cheese"' in parsed.attrs  # an attribute keeps its quotes
    for svg in ("per_class_iou.svg", "confusion_matrix.svg", "error_types.svg"):
        root = ElementTree.parse(out / svg).getroot()  # well-formed whatever the names
        texts = {t.text for t in root.iter(f"{SVG}text")}
        if svg != "error_types.svg":
            assert set(NAMES) <= texts, svg


def _fresh_run(tmp_path, gt, results, *extra) -> dict:
    """tools/evaluate.py's main in a fresh interpreter: the modules it loaded."""
    out = tmp_path / "fresh"
    code = (
        "import sys\n"
        "from segcontrast.cli.evaluate import main\n"
        f"code = main({[ '--gt', str(gt), '--results', str(results), '--output', str(out), *extra]!r})\n"  # noqa: E501
        "print('LOADED=' + ','.join(sorted(sys.modules)))\n"
        "sys.exit(code)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=300, cwd=REPO, env=tool_env())
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = [x for x in proc.stdout.splitlines() if x.startswith("LOADED=")][-1]
    return {"modules": set(filter(None, line[len("LOADED="):].split(","))), "out": out}


def test_a_default_run_imports_no_plotting_library(scored, tmp_path):
    run = _fresh_run(tmp_path, scored["gt"], scored["results"])
    assert not any(m.split(".")[0] == "matplotlib" for m in run["modules"]), run["modules"]
    assert {p.name for p in run["out"].glob("*.svg")} == {
        "per_class_iou.svg", "confusion_matrix.svg", "error_types.svg"}


def test_a_default_run_loads_no_module_it_does_not_use(scored, tmp_path):
    # each of these costs 10 to 40 ms of start-up and a default run without images needs none:
    # Pillow (reading images), tabulate and portalocker (their package-metadata look-ups),
    # xml (escaping), numpy.ma (numpy's np.unique without flags imports it)
    loaded = _fresh_run(tmp_path, scored["gt"], scored["results"])["modules"]
    unused = {"PIL", "tabulate", "portalocker", "xml", "numpy.ma"}
    assert not {m for m in loaded if m in unused or m.split(".")[0] in unused}


def test_overlays_are_drawn_without_matplotlib_too(scored, tmp_path):
    run = _fresh_run(tmp_path, scored["gt"], scored["results"], "--overlays",
                     "TEST.SEGCONTRAST.NUM_WORST_IMAGES", "2")
    assert not any(m.split(".")[0] == "matplotlib" for m in run["modules"]), run["modules"]
    overlays = sorted((run["out"] / "worst_images").glob("*.png"))
    assert len(overlays) == 2 and overlays[0].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_api_gives_the_same_sentence_and_names_pq_and_ap_when_asked(scored):
    from segcontrast import evaluate

    result = evaluate(scored["gt"], scored["results"], score_threshold=0.3)
    sentence = scored["metrics"]["details"]["explanation"]
    assert result.explanation == sentence
    longer = result.explain(also=("PQ", "AP"))
    assert longer.startswith(sentence[:-1] + "; PQ ")
    assert "; mask AP loses most to " in longer

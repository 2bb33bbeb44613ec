"""tools/evaluate.py's area rule for APs/APm/APl: a results file with boxes scores as Detectron2's
COCOEvaluator scores it (pycocotools with each result's bbox removed before loadRes); --ap-area
box (TEST.SEGCONTRAST.AP_AREA box) as pycocotools scores the file as it is. The log, metrics.json
and report.html say which rule was used."""

import html
import json
import math

import pytest
from segcontrast.cli.evaluate import main
from segcontrast.evaluation.metrics.coco_ap import AP_AREA_RULES

from tests.evaluation.results_files import STAT_NAMES, cocoeval_stats, write_synthetic_files

from .conftest import run_tool

FAST = ["TEST.SEGCONTRAST.NUM_WORST_IMAGES", "0", "TEST.SEGCONTRAST.ACCOUNTING", "False"]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """Synthetic GT and results as Detectron2 writes them (with XYWH boxes of the polygons)."""
    folder = tmp_path_factory.mktemp("ap_area")
    gt, results, _ = write_synthetic_files(folder, 8, num_classes=4, category_ids=[3, 7, 11, 20],
                                           height=72, width=96, instances_per_image=5, seed=4)
    return {"gt": gt, "results": results, "list": json.loads(results.read_text())}


def _same(a, b):
    return (a is None and math.isnan(b)) or (a is not None and abs(a - b) <= 1e-9)


def _assert_equal(segm: dict, reference: dict) -> None:
    for key in STAT_NAMES:
        assert _same(segm[key], reference[key]), (key, segm[key], reference[key])


def test_boxes_in_the_results_do_not_change_the_area_ranges_by_default(files, tmp_path):
    by_mask = cocoeval_stats(files["gt"], files["list"], "mask")
    by_box = cocoeval_stats(files["gt"], files["list"], "box")
    assert any(not _same(by_mask[k], by_box[k]) for k in ("APs", "APm", "APl")), \
        "the case needs results whose box and mask areas fall into different ranges"
    assert all(r.get("bbox") for r in files["list"])
    out = tmp_path / "out"
    result = run_tool("evaluate.py", "--gt", str(files["gt"]), "--results",
                      str(files["results"]), "--output", str(out), *FAST)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    metrics = json.loads((out / "metrics.json").read_text())
    _assert_equal(metrics["segm"], by_mask)
    assert metrics["settings"]["ap_area"] == "mask"
    assert any("The results carry boxes: pycocotools on this file as it is would take the "
               "boxes' w * h" in n for n in metrics["source"]["notes"])
    assert AP_AREA_RULES["mask"] in result.stdout
    page = html.unescape((out / "report.html").read_text())
    # the rule once, and what it means for this file
    assert page.count(AP_AREA_RULES["mask"]) == 1 and page.count("The results carry boxes") == 1
    assert page.count("take each prediction's mask area") == 1


def test_ap_area_box_is_pycocotools_on_the_file_as_it_is(files, tmp_path, capsys):
    by_box = cocoeval_stats(files["gt"], files["list"], "box")
    outputs = {}
    for how, extra in (("flag", ["--ap-area", "box"]),
                       ("key", ["TEST.SEGCONTRAST.AP_AREA", "box"])):
        out = outputs[how] = tmp_path / how
        code = main([*map(str, ["--gt", files["gt"], "--results", files["results"], "--output",
                                out]), *extra, *FAST])
        stdout = capsys.readouterr().out
        assert code == 0
        assert AP_AREA_RULES["box"] in stdout
        metrics = json.loads((out / "metrics.json").read_text())
        _assert_equal(metrics["segm"], by_box)
        assert metrics["settings"]["ap_area"] == "box"
        assert AP_AREA_RULES["box"] in html.unescape((out / "report.html").read_text())


def test_an_unknown_area_rule_is_refused(files, tmp_path, capsys):
    code = main([*map(str, ["--gt", files["gt"], "--results", files["results"], "--output",
                            tmp_path / "out"]), "TEST.SEGCONTRAST.AP_AREA", "bbox"])
    err = capsys.readouterr().err
    assert code == 2 and "TEST.SEGCONTRAST.AP_AREA = 'bbox' is not allowed" in err
    assert "Traceback" not in err and not (tmp_path / "out").exists()
    with pytest.raises(SystemExit) as info:  # argparse: exit 2 with its usage line
        main(["--gt", "g", "--results", "r", "--output", "o", "--ap-area", "bbox"])
    assert info.value.code == 2
    assert "--ap-area: invalid choice" in capsys.readouterr().err

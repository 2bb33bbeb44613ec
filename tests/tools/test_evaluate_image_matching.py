"""tools/evaluate.py finds each result's image by its id or by its file, never silently the wrong
one: Ultralytics writes an image's file stem as its image_id (an integer for a numeric stem),
which on a dataset of numbered files can also be the id of another image.

Each case gets either the AP pycocotools gives the results on their right images, or exit 2
naming --match-file-names."""

import json
import math

import pytest
from segcontrast.cli.evaluate import main

from tests.evaluation.results_files import STAT_NAMES, cocoeval_stats, write_synthetic_files

from .conftest import run_tool

FAST = ["TEST.SEGCONTRAST.NUM_WORST_IMAGES", "0", "TEST.SEGCONTRAST.ACCOUNTING", "False"]
# ids 1..8 -> numbers 1..8, no image keeping its own: every stem is another image's id
DERANGED = {1: 3, 2: 1, 3: 2, 4: 5, 5: 4, 6: 8, 7: 6, 8: 7}


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("matching")
    gt, results, _ = write_synthetic_files(folder, 8, num_classes=3, category_ids=[1, 2, 3],
                                           height=64, width=80, instances_per_image=4, seed=2)
    plain = folder / "plain"
    assert main([*map(str, ["--gt", gt, "--results", results, "--output", plain]), *FAST]) == 0
    return {"folder": folder, "gt": json.loads(gt.read_text()),
            "results": json.loads(results.read_text()),
            "plain": json.loads((plain / "metrics.json").read_text())}


def _gt_named(files, tmp_path, name_of) -> tuple:
    """The ground truth with image i named ``name_of(i)``; also returns id -> stem."""
    gt = json.loads(json.dumps(files["gt"]))
    for image in gt["images"]:
        image["file_name"] = name_of(image["id"])
    path = tmp_path / "gt.json"
    path.write_text(json.dumps(gt))
    return path, {i["id"]: i["file_name"].rsplit(".", 1)[0] for i in gt["images"]}


def _results(files, tmp_path, image_id_of, file_name_of=None):
    results = json.loads(json.dumps(files["results"]))
    for r in results:
        if file_name_of is not None:
            r["file_name"] = file_name_of(r["image_id"])
        r["image_id"] = image_id_of(r["image_id"])
    path = tmp_path / "results.json"
    path.write_text(json.dumps(results))
    return path, results


def _score(capsys, gt, results, out, *extra):
    code = main([*map(str, ["--gt", gt, "--results", results, "--output", out]), *extra, *FAST])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _assert_right_images(files, out, gt_path) -> dict:
    """Scored as the results on their right images: pycocotools and the plain run agree."""
    metrics = json.loads((out / "metrics.json").read_text())
    reference = cocoeval_stats(gt_path, files["results"])  # the results with the right ids
    for key in STAT_NAMES:
        a, b = metrics["segm"][key], reference[key]
        assert (a is None and math.isnan(b)) or abs(a - b) <= 1e-9, key
    for group in ("semantic", "instance", "segm", "contrast"):
        assert metrics[group] == files["plain"][group], group
    return metrics


def _assert_refused(code, out, err, *fragments):
    assert code == 2, err
    assert "Traceback" not in err and not out.exists()
    for fragment in fragments:
        assert fragment in err, err


def test_integer_stems_that_are_also_other_images_ids_are_refused_then_matched(files, tmp_path,
                                                                               capsys):
    gt, stems = _gt_named(files, tmp_path, lambda i: f"{DERANGED[i]}.jpg")
    results, _ = _results(files, tmp_path, lambda i: int(stems[i]))  # as Ultralytics writes
    out = tmp_path / "out"
    result = run_tool("evaluate.py", "--gt", str(gt), "--results", str(results), "--output",
                      str(out), *FAST)
    _assert_refused(result.returncode, out, result.stderr, "image_id 1 is the id of image 1 "
                    "('3.jpg') but the file stem of image 2 ('1.jpg')", "--match-file-names",
                    "--match-image-ids", "Ultralytics writes each image's file stem")
    code, _, err = _score(capsys, gt, results, out, "--match-file-names")
    assert code == 0, err
    _assert_right_images(files, out, gt)
    # --match-image-ids: the user's word, scored as pycocotools scores the file as it is
    code, _, err = _score(capsys, gt, results, tmp_path / "ids", "--match-image-ids")
    assert code == 0, err
    as_ids = json.loads((tmp_path / "ids" / "metrics.json").read_text())["segm"]["AP"]
    assert abs(as_ids - cocoeval_stats(gt, json.loads(results.read_text()))["AP"]) <= 1e-9
    assert as_ids < files["plain"]["segm"]["AP"] - 10


def test_zero_padded_string_stems_are_matched_by_file_name(files, tmp_path, capsys):
    # int("000000000003") is 3, but the file 000000000003.jpg is image 1
    gt, stems = _gt_named(files, tmp_path, lambda i: f"{DERANGED[i]:012d}.jpg")
    results, _ = _results(files, tmp_path, lambda i: stems[i])
    for extra in ((), ("--match-file-names",)):
        out = tmp_path / f"out{len(extra)}"
        code, stdout, err = _score(capsys, gt, results, out, *extra)
        assert code == 0, err
        metrics = _assert_right_images(files, out, gt)
        said = "image_ids are not image ids of the ground truth: each result was matched"
        assert (said in stdout) == (not extra)
        assert any(said in n for n in metrics["source"]["notes"]) == (not extra)


def test_integer_stems_that_are_not_all_ids_are_matched_by_file_name(files, tmp_path, capsys):
    gt, stems = _gt_named(files, tmp_path, lambda i: f"{DERANGED[i] - 1}.jpg")  # 0.jpg .. 7.jpg
    results, _ = _results(files, tmp_path, lambda i: int(stems[i]))
    out = tmp_path / "out"
    code, stdout, err = _score(capsys, gt, results, out)
    assert code == 0, err
    assert "matched to its image by its file name" in stdout
    _assert_right_images(files, out, gt)


def test_a_file_name_that_names_another_image_than_the_image_id(files, tmp_path, capsys):
    # Ultralytics 8.3: the stem as image_id and the file's name; the two agree against the ids
    gt, stems = _gt_named(files, tmp_path, lambda i: f"{DERANGED[i]}.jpg")
    results, _ = _results(files, tmp_path, lambda i: int(stems[i]),
                          lambda i: f"/data/val/{stems[i]}.jpg")
    out = tmp_path / "ultralytics"
    code, stdout, err = _score(capsys, gt, results, out)
    assert code == 0, err
    assert "name other images than their 'file_name's and file stems do" in stdout
    _assert_right_images(files, out, gt)
    # tools/predict.py numbers images its own way: its ids are other images' ids here
    gt, _ = _gt_named(files, tmp_path, lambda i: f"cell_{i}.png")
    results, listed = _results(files, tmp_path, lambda i: DERANGED[i],
                               lambda i: f"out/cell_{i}.png")
    out = tmp_path / "predict"
    code, _, err = _score(capsys, gt, results, out)
    _assert_refused(code, out, err, "image_id 1 is the id of image 1 ('cell_1.png') but file_name "
                    "'out/cell_2.png' is image 2 ('cell_2.png')", "--match-file-names")
    code, _, err = _score(capsys, gt, results, out, "--match-file-names")
    assert code == 0, err
    _assert_right_images(files, out, gt)
    # one file name is no image of the ground truth: the others still contradict their ids
    listed[0]["file_name"] = "elsewhere.png"
    results.write_text(json.dumps(listed))
    out = tmp_path / "contradicted"
    code, _, err = _score(capsys, gt, results, out)
    r = listed[1]
    _assert_refused(code, out, err, "image_id_contradicts_file_name",
                    f"result 1 (image_id {r['image_id']}, category_id {r['category_id']})",
                    "--match-file-names")

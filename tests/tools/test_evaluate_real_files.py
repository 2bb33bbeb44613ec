"""tools/evaluate.py on files as real tools write them: LVIS-style crowded images (300 results and
300 objects in one image), a Roboflow export (placeholder category 0, annotation id 0, a string
info.year), ids written as floats (``50.0``), and RLE counts with a non-ASCII character. Each
scores as pycocotools scores it, or is refused with exit 2 and one message naming the result."""

import json
import math

import numpy as np
import pycocotools.mask as mask_util
import pytest
from segcontrast.cli.evaluate import main

from tests.evaluation.results_files import STAT_NAMES, cocoeval_stats, write_synthetic_files

from .conftest import run_tool

FAST = ["TEST.SEGCONTRAST.NUM_WORST_IMAGES", "0"]


def _rle(mask: np.ndarray) -> dict:
    encoded = mask_util.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": list(mask.shape), "counts": encoded["counts"].decode("ascii")}


def _assert_equal(segm: dict, reference: dict) -> None:
    for key in STAT_NAMES:
        a, b = segm[key], reference[key]
        assert (a is None and math.isnan(b)) or abs(a - b) <= 1e-9, (key, a, b)


def _score(capsys, gt, results, out, *extra):
    code = main([*map(str, ["--gt", gt, "--results", results, "--output", out]), *extra, *FAST])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _refused(capsys, gt, results, out, *fragments):
    code, stdout, err = _score(capsys, gt, results, out)
    assert code == 2, stdout[-2000:] + err[-2000:]
    assert "Traceback" not in err and not out.exists()
    for fragment in fragments:
        assert fragment in err, err
    return err


def _crowded_files(folder):
    """One 240x320 image with 300 objects and 300 results (of two classes), one small image."""
    rng = np.random.default_rng(3)
    h, w = 240, 320
    annotations, results, gt_masks = [], [], []
    for n in range(300):  # a 20 x 15 grid of 16-pixel cells, one object in each
        y, x = 16 * (n // 20), 16 * (n % 20)
        mask = np.zeros((h, w), bool)
        mask[y + rng.integers(0, 4):y + rng.integers(8, 16),
             x + rng.integers(0, 4):x + rng.integers(8, 16)] = True
        mask &= rng.random((h, w)) < 0.9
        gt_masks.append(mask)
        annotations.append({"id": n + 1, "image_id": 1, "category_id": 1 + n % 2,
                            "iscrowd": int(n % 97 == 0), "area": float(mask.sum()),
                            "bbox": [float(v) for v in mask_util.toBbox(_rle(mask))],
                            "segmentation": _rle(mask)})
    for n in range(300):
        if n < 260:  # found, a little off, now and then with the other class
            mask = np.roll(gt_masks[n], int(rng.integers(-2, 3)), axis=int(rng.integers(0, 2)))
            category = 1 + n % 2 if rng.random() < 0.9 else 2 - n % 2
        else:
            mask = np.zeros((h, w), bool)
            y, x = rng.integers(0, h - 30), rng.integers(0, w - 30)
            mask[y:y + rng.integers(3, 30), x:x + rng.integers(3, 30)] = True
            category = int(rng.integers(1, 3))
        results.append({"image_id": 1, "category_id": category, "segmentation": _rle(mask),
                        "score": float(rng.uniform(0.05, 1.0)),
                        "bbox": [float(v) for v in mask_util.toBbox(_rle(mask))]})
    small = np.zeros((40, 50), bool)
    small[5:20, 10:30] = True
    annotations.append({"id": 301, "image_id": 2, "category_id": 1, "iscrowd": 0,
                        "area": float(small.sum()), "bbox": [10.0, 5.0, 20.0, 15.0],
                        "segmentation": _rle(small)})
    results.append({"image_id": 2, "category_id": 1, "segmentation": _rle(small), "score": 0.8})
    gt = {"images": [{"id": 1, "file_name": "crowded.png", "height": h, "width": w},
                     {"id": 2, "file_name": "small.png", "height": 40, "width": 50}],
          "categories": [{"id": 1, "name": "cell"}, {"id": 2, "name": "debris"}],
          "annotations": annotations}
    (folder / "gt.json").write_text(json.dumps(gt))
    (folder / "results.json").write_text(json.dumps(results))
    return folder / "gt.json", folder / "results.json", results


def test_300_results_and_300_objects_in_one_image_score_as_pycocotools(tmp_path):
    gt, results, listed = _crowded_files(tmp_path)
    out = tmp_path / "out"
    run = run_tool("evaluate.py", "--gt", str(gt), "--results", str(results), "--output",
                   str(out), *FAST)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert "Traceback" not in run.stderr
    metrics = json.loads((out / "metrics.json").read_text())
    _assert_equal(metrics["segm"], cocoeval_stats(gt, listed))
    assert metrics["details"]["counts"]["n_gt"] == 301 - 4  # 4 crowd regions (n % 97 == 0)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("real_files")
    gt, results, _ = write_synthetic_files(folder, 6, num_classes=3, category_ids=[2, 5, 9],
                                           height=60, width=80, instances_per_image=4, seed=5)
    return {"gt": gt, "gt_dict": json.loads(gt.read_text()), "results": results,
            "list": json.loads(results.read_text())}


def _write(path, content):
    path.write_text(json.dumps(content))
    return path


def test_ids_written_as_integral_floats_are_taken_as_pycocotools_takes_them(files, tmp_path,
                                                                            capsys):
    floats = json.loads(json.dumps(files["list"]))
    for r in floats:
        r["category_id"] = float(r["category_id"])
        r["image_id"] = float(r["image_id"])
    path = _write(tmp_path / "floats.json", floats)
    code, _, err = _score(capsys, files["gt"], path, tmp_path / "floats")
    assert code == 0, err
    metrics = json.loads((tmp_path / "floats" / "metrics.json").read_text())
    _assert_equal(metrics["segm"], cocoeval_stats(files["gt"], floats))
    code, _, err = _score(capsys, files["gt"], files["results"], tmp_path / "ints")
    assert code == 0, err
    ints = json.loads((tmp_path / "ints" / "metrics.json").read_text())
    for group in ("semantic", "instance", "segm", "contrast"):
        assert metrics[group] == ints[group], group
    # a float that is no integer is no id; the message shows the ids around it
    bad = json.loads(json.dumps(files["list"]))
    bad[2]["category_id"] = 5.5
    _refused(capsys, files["gt"], _write(tmp_path / "half.json", bad), tmp_path / "out",
             f"result 2 (image_id {bad[2]['image_id']}, category_id 5.5): category_id 5.5 is "
             "not a category of the ground truth (ids 2, 5, 9)")


def test_an_unknown_category_among_90_is_shown_beside_its_neighbours(files, tmp_path, capsys):
    gt = json.loads(json.dumps(files["gt_dict"]))
    taken = {c["id"] for c in gt["categories"]}
    gt["categories"] += [{"id": i, "name": f"extra{i}"} for i in range(1, 91)
                         if i not in taken and i != 50]
    gt_path = _write(tmp_path / "gt90.json", gt)
    bad = json.loads(json.dumps(files["list"]))
    bad[4]["category_id"] = 50
    _refused(capsys, gt_path, _write(tmp_path / "fifty.json", bad), tmp_path / "out",
             f"result 4 (image_id {bad[4]['image_id']}, category_id 50): category_id 50 is not "
             "a category of the ground truth (ids 1 to 90; nearest to 50: 47, 48, 49, 51, 52, 53)")


def test_rle_counts_with_a_non_ascii_character_name_the_result(files, tmp_path, capsys):
    bad = json.loads(json.dumps(files["list"]))
    counts = bad[3]["segmentation"]["counts"]
    bad[3]["segmentation"]["counts"] = counts[:2] + "\u00e9" + counts[3:]
    _refused(capsys, files["gt"], _write(tmp_path / "accent.json", bad), tmp_path / "out",
             f"result 3 (image_id {bad[3]['image_id']}, category_id {bad[3]['category_id']}): "
             "compressed RLE counts contain '\u00e9' at position 2, outside COCO's alphabet")


def _roboflow(files) -> tuple[dict, dict]:
    """The ground truth as Roboflow exports it (one class 'Tumor', category 1; placeholder
    category 0 'Tumor'; annotation ids from 0; info.year a string), and pycocotools' view of it
    after the loader's one change (annotation id 0 renumbered)."""
    gt = json.loads(json.dumps(files["gt_dict"]))
    gt["info"] = {"year": "2024", "version": "3", "description": "Exported from roboflow.com"}
    gt["categories"] = [{"id": 0, "name": "Tumor", "supercategory": "none"},
                        {"id": 1, "name": "Tumor", "supercategory": "Tumor"}]
    for n, a in enumerate(gt["annotations"]):
        a.update(id=n, category_id=1)
    reference = json.loads(json.dumps(gt))
    reference["annotations"][0]["id"] = len(gt["annotations"])
    return gt, reference


def test_a_roboflow_export_scores_without_its_placeholder_category(files, tmp_path, capsys):
    gt, reference = _roboflow(files)
    gt_path = _write(tmp_path / "_annotations.coco.json", gt)
    results = json.loads(json.dumps(files["list"]))
    for r in results:
        r["category_id"] = 1
    results_path = _write(tmp_path / "results.json", results)
    out = tmp_path / "out"
    run = run_tool("evaluate.py", "--gt", str(gt_path), "--results", str(results_path),
                   "--output", str(out), *FAST)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert "Traceback" not in run.stderr
    assert "category_duplicate_name_unused" in run.stdout + run.stderr  # the loader's count
    metrics = json.loads((out / "metrics.json").read_text())
    _assert_equal(metrics["segm"], cocoeval_stats(reference, results))
    assert metrics["class_names"] == ["Tumor"]
    assert [r["class"] for r in metrics["details"]["per_class"]] == ["Tumor"]
    assert any("Category id 0 of the ground truth is left out of the per-class tables" in n
               for n in metrics["source"]["notes"])
    # a result of the placeholder is refused, saying which category to use
    results[1]["category_id"] = 0
    _refused(capsys, gt_path, _write(tmp_path / "zero.json", results), tmp_path / "refused",
             f"result 1 (image_id {results[1]['image_id']}, category_id 0): category_id 0 is "
             "not a class of the ground truth: category id 0 ('Tumor') has no annotations",
             "results must use category id 1")


def test_an_integer_no_float_can_hold_is_named_not_a_traceback(tmp_path):
    # JSON integers have no size limit: one past float's range is a bad value, not a crash.
    huge = "1" + "0" * 400
    square = [[2, 2, 12, 2, 12, 12, 2, 12]]
    gt = ('{"images": [{"id": 1, "file_name": "a.png", "height": 20, "width": 20}], '
          '"categories": [{"id": 1, "name": "cell"}], "annotations": [{"id": 1, "image_id": 1, '
          f'"category_id": 1, "iscrowd": 0, "area": {huge}, "bbox": [2, 2, 10, 10], '
          f'"segmentation": {square}}}]}}')
    (tmp_path / "gt.json").write_text(gt)
    (tmp_path / "ok_gt.json").write_text(gt.replace(huge, "100"))
    results = (f'[{{"image_id": 1, "category_id": 1, "score": {huge}, '
               f'"segmentation": {square}}}]')
    (tmp_path / "results.json").write_text(results)
    (tmp_path / "ok.json").write_text(results.replace(huge, "0.9"))
    for gt_file, results_file, named in (("gt.json", "ok.json", "gt.json"),
                                         ("ok_gt.json", "results.json", "results.json")):
        done = run_tool("evaluate.py", "--gt", str(tmp_path / gt_file), "--results",
                        str(tmp_path / results_file), "--output", str(tmp_path / "out"))
        assert done.returncode == 2, done.stderr[-2000:]
        assert "Traceback" not in done.stderr and named in done.stderr, done.stderr[-2000:]
    ok = run_tool("evaluate.py", "--gt", str(tmp_path / "ok_gt.json"), "--results",
                  str(tmp_path / "ok.json"), "--output", str(tmp_path / "out"))
    assert ok.returncode == 0, ok.stderr[-2000:]

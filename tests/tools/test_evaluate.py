"""tools/evaluate.py: scoring results files, bad input, --semantic-dir, --compare, and the round
trip from a trained model's eval-only run."""

import contextlib
import csv
import io
import json
import math
import os
from pathlib import Path

import numpy as np
import pytest
from panopticapi.evaluation import pq_compute
from PIL import Image
from pycocotools.coco import COCO
from segcontrast.cli.evaluate import main
from segcontrast.evaluation import score_files

from tests.evaluation.results_files import results_of_image, write_synthetic_files

from .conftest import dataset_args, run_tool

CATEGORY_IDS = [3, 7, 11, 20]
FAST = ["TEST.SEGCONTRAST.NUM_WORST_IMAGES", "0"]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A small synthetic GT file and two results files (two noise seeds)."""
    folder = tmp_path_factory.mktemp("evaluate_files")
    gt, results, dicts = write_synthetic_files(folder, 8, num_classes=4,
                                               category_ids=CATEGORY_IDS, height=72,
                                               width=96, instances_per_image=5, seed=4)
    other = folder / "other.json"  # the same images, predictions of another noise seed
    other.write_text(json.dumps([r for d in dicts for r in results_of_image(d, CATEGORY_IDS,
                                                                            seed=9)]))
    return {"gt": gt, "results": results, "other": other, "dicts": dicts,
            "list": json.loads(results.read_text())}


def _run(capsys, *argv):
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _refused(capsys, tmp_path, results, *fragments, extra=(), gt=None):
    out = tmp_path / "out"
    code, stdout, stderr = _run(capsys, "--gt", gt or _GT_FILE[0], "--results", results,
                                "--output", out, *extra, *FAST)
    assert code == 2, stdout[-2000:] + stderr[-2000:]
    assert "Traceback" not in stderr and "Traceback" not in stdout
    for fragment in fragments:
        assert fragment in stderr, stderr
    assert not out.exists(), "nothing is written after a failed run"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out.")], "temporary left"
    return stderr


_GT_FILE = [None]  # the module's ground truth, for _refused


@pytest.fixture(autouse=True)
def _default_gt(files):
    _GT_FILE[0] = files["gt"]


def _write(tmp_path, content, name="bad.json") -> Path:
    path = tmp_path / name
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    return path


def _mutated(files, index, **changes):
    results = json.loads(json.dumps(files["list"]))
    for key, value in changes.items():
        if value is None:
            results[index].pop(key, None)
        else:
            results[index][key] = value
    return results


def _where(files, index):
    r = files["list"][index]
    return f"result {index} (image_id {r['image_id']}, category_id {r['category_id']})"


def test_not_json_and_truncated_json(files, tmp_path, capsys):
    bad = _write(tmp_path, "this is not json")
    _refused(capsys, tmp_path, bad, str(bad), "results file is not valid JSON")
    text = files["results"].read_text()
    cut = _write(tmp_path, text[: len(text) // 2], "cut.json")
    _refused(capsys, tmp_path, cut, str(cut), "results file is truncated")
    _refused(capsys, tmp_path, tmp_path / "nope.json", "nope.json", "does not exist")


def test_an_object_where_a_list_is_expected(files, tmp_path, capsys):
    bad = _write(tmp_path, {"annotations": files["list"]})
    _refused(capsys, tmp_path, bad, str(bad), "holds an object at the top level",
             "expected a COCO results list", "annotations")


def test_box_only_results_say_that_segm_results_are_needed(files, tmp_path, capsys):
    boxes = [{k: v for k, v in r.items() if k != "segmentation"} for r in files["list"]]
    _refused(capsys, tmp_path, _write(tmp_path, boxes), "box (detection) results",
             "segm results are needed")
    one = _mutated(files, 4, segmentation=None)
    _refused(capsys, tmp_path, _write(tmp_path, one), _where(files, 4), "no 'segmentation'")


def test_unknown_image_and_category_ids(files, tmp_path, capsys):
    bad = _mutated(files, 2, image_id=999)
    r = files["list"][2]
    _refused(capsys, tmp_path, _write(tmp_path, bad),
             f"result 2 (image_id 999, category_id {r['category_id']})",
             "image_id 999 is not an image of the ground truth")
    bad = _mutated(files, 5, category_id=4)
    r = files["list"][5]
    _refused(capsys, tmp_path, _write(tmp_path, bad),
             f"result 5 (image_id {r['image_id']}, category_id 4)",
             "category_id 4 is not a category of the ground truth (ids 3, 7, 11, 20)")


def test_rle_of_the_wrong_size_and_bad_polygons(files, tmp_path, capsys):
    seg = dict(files["list"][1]["segmentation"], size=[10, 10])
    _refused(capsys, tmp_path, _write(tmp_path, _mutated(files, 1, segmentation=seg)),
             _where(files, 1), "RLE size [10, 10] (height, width) differs from the image's "
             "[72, 96]")
    odd = _mutated(files, 3, segmentation=[[1, 1, 20, 1, 20, 20, 5]])
    _refused(capsys, tmp_path, _write(tmp_path, odd), _where(files, 3), "7 coordinates, an odd "
             "number")
    word = _mutated(files, 3, segmentation=[[1, 1, 20, "one", 20, 20]])
    _refused(capsys, tmp_path, _write(tmp_path, word), _where(files, 3),
             "coordinates must be finite numbers")


@pytest.mark.parametrize("score,message", [(None, "no 'score'"),
                                           (float("nan"), "score is nan (not finite)"),
                                           ("high", "score is 'high' (a string)")])
def test_missing_nan_or_non_numeric_score(files, tmp_path, capsys, score, message):
    bad = _mutated(files, 6, score=score)  # None: the key is removed
    _refused(capsys, tmp_path, _write(tmp_path, bad), _where(files, 6), message)


def test_compressed_counts_that_do_not_decode(files, tmp_path, capsys):
    seg = dict(files["list"][7]["segmentation"], counts=":")  # one run of 10 pixels
    _refused(capsys, tmp_path, _write(tmp_path, _mutated(files, 7, segmentation=seg)),
             _where(files, 7), "RLE counts add up to 10 pixels, expected height * width = 6912")


def test_every_problem_is_reported_at_once(files, tmp_path, capsys):
    bad = _mutated(files, 1, image_id=999)
    bad[3]["category_id"] = 4
    del bad[5]["score"]
    bad[8]["segmentation"] = {"size": [10, 10], "counts": "PQ"}
    err = _refused(capsys, tmp_path, _write(tmp_path, bad), "4 problems",
                   "result 1 (image_id 999", "result 3 (", "result 5 (", "result 8 (")
    assert "unknown_image_id: 1" in err and "bad_score: 1" in err


def test_an_empty_list_scores_everything_as_missed_and_says_so(files, tmp_path, capsys):
    out = tmp_path / "empty"
    code, stdout, _ = _run(capsys, "--gt", files["gt"], "--results", _write(tmp_path, []),
                           "--output", out, *FAST)
    assert code == 0
    assert "holds no results (an empty list): every object counts as missed" in stdout
    metrics = json.loads((out / "metrics.json").read_text())
    n_gt = sum(not a["iscrowd"] for d in files["dicts"] for a in d["annotations"])
    assert metrics["contrast"]["missed"] == n_gt and metrics["instance"]["mIoU"] == 0
    assert metrics["segm"]["AP"] == 0
    assert "holds no results" in (out / "report.html").read_text()


def test_bad_ground_truth_config_and_output_folder(files, tmp_path, capsys):
    gt = _write(tmp_path, {"images": [], "annotations": []}, "gt_bad.json")
    _refused(capsys, tmp_path, files["results"], str(gt), "categories", gt=gt)
    _refused(capsys, tmp_path, files["results"], "TEST.SEGCONTRAST.* KEY VALUE",
             extra=["MODEL.DEVICE", "cpu"])
    _refused(capsys, tmp_path, files["results"], "IOU_THRESHOLD",
             extra=["TEST.SEGCONTRAST.IOU_THRESHOLD", "2.0"])
    taken = tmp_path / "out"
    taken.mkdir()
    (taken / "notes.txt").write_text("mine")
    code, _, err = _run(capsys, "--gt", files["gt"], "--results", files["results"], "--output",
                        taken, *FAST)
    assert code == 2 and f"--output {taken} is not a folder tools/evaluate.py wrote" in err
    assert "holds notes.txt" in err
    assert (taken / "notes.txt").read_text() == "mine"


def _png(path, array):
    Image.fromarray(np.asarray(array)).save(path)


def _reference_semantic_gt(gt_json: Path, num_classes: int) -> dict:
    """Each image's semantic ground truth, painted here from pycocotools' decoded masks."""
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO(str(gt_json))
    cats = {c: k for k, c in enumerate(sorted(coco.getCatIds()))}
    out = {}
    for image_id, info in coco.imgs.items():
        h, w = info["height"], info["width"]
        classes = np.zeros((num_classes, h, w), bool)
        crowd = np.zeros((h, w), bool)
        for ann in coco.imgToAnns[image_id]:
            mask = coco.annToMask(ann).astype(bool)
            if ann["iscrowd"]:
                crowd |= mask
            else:
                classes[cats[ann["category_id"]]] |= mask
        count = classes.sum(axis=0)
        labels = np.where(count == 1, classes.argmax(axis=0) + 1, 0).astype(np.uint8)
        labels[count > 1] = 255
        labels[(count == 0) & crowd] = 255
        out[image_id] = (info["file_name"], labels)
    return out


def test_semantic_dir_equals_an_independent_confusion_matrix(files, tmp_path, capsys):
    k = len(CATEGORY_IDS)
    reference = _reference_semantic_gt(files["gt"], k)
    folder = tmp_path / "labels"
    folder.mkdir()
    rng = np.random.default_rng(0)
    conf = np.zeros((k + 1, k + 1), np.int64)
    for n, (_, (file_name, gt)) in enumerate(sorted(reference.items())):
        pred = np.where(gt == 255, 0, gt).astype(np.uint8)
        noise = rng.random(gt.shape) < 0.2
        pred[noise] = rng.integers(0, k + 1, size=int(noise.sum()))
        stem = Path(file_name).stem
        if n % 2:
            _png(folder / f"{stem}_semantic.png", pred)
            # tools/predict.py puts an RGB overlay next to each label PNG: never read
            _png(folder / f"{stem}.png", np.zeros((*gt.shape, 3), np.uint8))
        else:
            _png(folder / f"{stem}.png", pred)
        valid = gt != 255
        conf += np.bincount(gt[valid].astype(np.int64) * (k + 1) + pred[valid],
                            minlength=(k + 1) ** 2).reshape(k + 1, k + 1)
    out = tmp_path / "sem"
    code, _, err = _run(capsys, "--gt", files["gt"], "--results", files["results"],
                        "--semantic-dir", folder, "--output", out, *FAST)
    assert code == 0, err
    metrics = json.loads((out / "metrics.json").read_text())
    tp = np.diag(conf).astype(float)
    iou = tp / (conf.sum(0) + conf.sum(1) - tp)
    for c in range(k):
        assert metrics["semantic"][f"IoU-class{c}"] == pytest.approx(iou[c + 1] * 100, abs=1e-9)
    assert metrics["semantic"]["mIoU"] == pytest.approx(np.mean(iou[1:]) * 100, abs=1e-9)
    assert metrics["semantic"]["IoU-background"] == pytest.approx(iou[0] * 100, abs=1e-9)
    # the painted instances are the second semantic column, as without --semantic-dir
    plain = tmp_path / "plain"
    assert _run(capsys, "--gt", files["gt"], "--results", files["results"], "--output", plain,
                *FAST)[0] == 0
    without = json.loads((plain / "metrics.json").read_text())
    assert metrics["semantic_from_instances"] == without["semantic"]
    assert metrics["instance"] == without["instance"] and metrics["segm"] == without["segm"]
    with open(out / "per_image.csv") as f:
        assert "semantic_mIoU_from_instances" in next(csv.reader(f))


def test_semantic_pngs_of_the_wrong_size_or_with_labels_above_k(files, tmp_path, capsys):
    folder = tmp_path / "labels"
    folder.mkdir()
    images = json.loads(files["gt"].read_text())["images"]
    for n, image in enumerate(images):
        shape = (image["height"], image["width"]) if n != 2 else (10, 10)
        labels = np.zeros(shape, np.uint8)
        if n == 5:
            labels[0, :3] = 9
        _png(folder / f"{Path(image['file_name']).stem}.png", labels)
    err = _refused(capsys, tmp_path, files["results"], str(folder),
                   f"image_id {images[2]['id']}", "is 10x10 (width x height); the image is 96x72",
                   extra=["--semantic-dir", folder])
    assert f"image_id {images[5]['id']}" not in err  # labels are read while scoring
    _png(folder / f"{Path(images[2]['file_name']).stem}.png", np.zeros((72, 96), np.uint8))
    _refused(capsys, tmp_path, files["results"], f"image_id {images[5]['id']}",
             "holds label 9 in 3 pixel(s); labels must be 0 (background) to 4",
             extra=["--semantic-dir", folder])
    os.remove(folder / f"{Path(images[0]['file_name']).stem}.png")
    _refused(capsys, tmp_path, files["results"], "no label PNG", extra=["--semantic-dir", folder])


def test_match_file_names_takes_the_image_from_the_file_name(files, tmp_path, capsys):
    names = {i["id"]: i["file_name"] for i in json.loads(files["gt"].read_text())["images"]}
    renumbered = json.loads(json.dumps(files["list"]))
    order = {image_id: n for n, image_id in enumerate(sorted(names, reverse=True))}
    for r in renumbered:
        r["file_name"] = f"/somewhere/{names[r['image_id']]}"
        r["image_id"] = order[r["image_id"]] + 1000  # numbered as tools/predict.py does
    path = _write(tmp_path, renumbered, "predictions.json")
    # no image_id is an image of the ground truth, every file_name is: matched by file name,
    # and said so
    auto = tmp_path / "auto"
    code, stdout, _ = _run(capsys, "--gt", files["gt"], "--results", path, "--output", auto,
                           *FAST)
    assert code == 0
    warning = "image_ids are not image ids of the ground truth: each result was matched"
    assert warning in stdout
    assert any(warning in n for n in json.loads((auto / "metrics.json").read_text())["source"][
        "notes"])
    _refused(capsys, tmp_path, path, "is not an image of the ground truth (8 images, ids 1, 2",
             "--match-file-names", extra=["--match-image-ids"])
    out, plain = tmp_path / "by_name", tmp_path / "by_id"
    assert _run(capsys, "--gt", files["gt"], "--results", path, "--match-file-names",
                "--output", out, *FAST)[0] == 0
    assert _run(capsys, "--gt", files["gt"], "--results", files["results"], "--output", plain,
                *FAST)[0] == 0
    a, b, c = (json.loads((p / "metrics.json").read_text()) for p in (out, plain, auto))
    for group in ("semantic", "instance", "segm", "contrast"):
        assert a[group] == b[group] == c[group], group
    # Ultralytics: no file_name, the file stem as image_id
    stems = [{k: v for k, v in r.items() if k != "file_name"} for r in renumbered]
    for r, original in zip(stems, renumbered, strict=True):
        r["image_id"] = "img_" + Path(original["file_name"]).stem
    gt = json.loads(files["gt"].read_text())
    for image in gt["images"]:
        image["file_name"] = "img_" + image["file_name"]
    gt_path = _write(tmp_path, gt, "gt_named.json")
    _refused(capsys, tmp_path, _write(tmp_path, stems, "ultra.json"), "--match-file-names",
             gt=gt_path, extra=["--match-image-ids"])
    out = tmp_path / "by_stem"
    assert _run(capsys, "--gt", gt_path, "--results", tmp_path / "ultra.json",
                "--match-file-names", "--output", out, *FAST)[0] == 0
    c = json.loads((out / "metrics.json").read_text())
    for group in ("semantic", "instance", "segm", "contrast"):
        assert c[group] == b[group], group


def test_the_cli_scores_two_files_and_writes_every_output(files, tmp_path, capsys):
    out = tmp_path / "ab"
    # an earlier evaluation of this tool there is replaced
    assert _run(capsys, "--gt", files["gt"], "--results", files["other"], "--output", out,
                *FAST)[0] == 0
    result = run_tool("evaluate.py", "--gt", str(files["gt"]), "--results", str(files["results"]),
                      "--compare", str(files["other"]), "--bootstrap", "200", "--output",
                      str(out), "TEST.SEGCONTRAST.SCORE_THRESHOLD", "0.3")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    metrics = json.loads((out / "metrics.json").read_text())
    other = json.loads((out / "compare" / "metrics.json").read_text())
    comparison = json.loads((out / "comparison.json").read_text())
    stdout = result.stdout
    assert "SegContrast evaluation of gt.json (8 images)" in stdout
    assert metrics["details"]["explanation"] in stdout
    assert comparison["sentence"] in stdout
    assert "Mask AP keeps the 100 highest-scoring predictions per image and class" in stdout
    assert f"-> {out}" in stdout
    assert metrics["settings"]["score_threshold"] == 0.3
    assert metrics["source"]["results_file"] == str(files["results"])
    for name in ("per_image.csv", "report.html", "log.txt", "per_class_iou.svg",
                 "confusion_matrix.svg", "error_types.svg"):
        assert (out / name).is_file(), name
    assert (out / "compare" / "report.html").is_file()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".ab.")]
    rows = {(r["group"], r["key"]): r for r in comparison["rows"]}
    for group, key in (("semantic", "mIoU"), ("instance", "mIoU"), ("segm", "AP"),
                       ("segm", "AP50"), ("instance", "boundary_IoU"), ("contrast", "merged")):
        row = rows[(group, key)]
        assert row["a"] == metrics[group][key] and row["b"] == other[group][key]
        assert math.isclose(row["delta"], row["b"] - row["a"])
        assert row["low"] <= row["high"]
    page = (out / "report.html").read_text()
    assert page.index("A vs B") < page.index("Semantic vs instance")
    assert "| semantic mIoU " in (out / "log.txt").read_text()


@pytest.mark.slow
def test_round_trip_from_an_eval_only_run_gives_identical_numbers(tiny_data, tiny_config,
                                                                  tmp_path, capsys):
    config = tiny_config("mask_rcnn_focal")
    trained = tmp_path / "train"
    threshold = ["TEST.SEGCONTRAST.SCORE_THRESHOLD", "0.05"]
    result = run_tool("train_net.py", "--config", config, *dataset_args(tiny_data),
                      "OUTPUT_DIR", str(trained))
    assert result.returncode == 0, result.stderr[-3000:]
    evaluated = tmp_path / "eval_only"
    result = run_tool("train_net.py", "--config", config, "--eval-only", *dataset_args(tiny_data),
                      "MODEL.WEIGHTS", str(trained / "model_final.pth"),
                      "TEST.SEGCONTRAST.COCO_EVALUATOR", "True", *threshold,
                      "OUTPUT_DIR", str(evaluated))
    assert result.returncode == 0, result.stderr[-3000:]
    inference = evaluated / "inference" / "tiny_val"
    assert (inference / "report.html").is_file()  # training's evaluator writes the page too
    results = inference / "coco" / "coco_instances_results.json"
    assert json.loads(results.read_text()), "the model predicted nothing: nothing to compare"
    out = tmp_path / "from_file"
    code, _, err = _run(capsys, "--gt", tiny_data["val"], "--results", results, "--images",
                        tiny_data["image_root"], "--output", out, *threshold)
    assert code == 0, err
    in_process = json.loads((inference / "metrics.json").read_text())
    from_file = json.loads((out / "metrics.json").read_text())
    for group in ("semantic", "instance", "segm", "contrast"):
        assert from_file[group] == in_process[group], group
    # per image too: the same masks, the same bits
    assert (out / "per_image.csv").read_text() == (inference / "per_image.csv").read_text()


@pytest.fixture
def task_sizes(monkeypatch):
    """Set the bounds of a worker's task; return the sizes of the tasks the runs made."""
    made = []

    def split(image_ids, workers):
        tasks = split_into_tasks(image_ids, workers)
        made.append([len(t) for t in tasks])
        return tasks

    def bounds(smallest, largest):
        monkeypatch.setattr(score_files, "_MIN_IMAGES_PER_TASK", smallest)
        monkeypatch.setattr(score_files, "_MAX_IMAGES_PER_TASK", largest)
        return made

    split_into_tasks = score_files._split_into_tasks
    monkeypatch.setattr(score_files, "_split_into_tasks", split)
    return bounds


def test_the_worst_images_do_not_depend_on_the_workers_and_their_tasks(tmp_path, capsys,
                                                                        task_sizes):
    # 60 images: several tasks per worker, so each worker's worst images so far are carried
    # from task to task (score_files) and only newcomers are sent back
    gt, results, _ = write_synthetic_files(tmp_path, 60, num_classes=4,
                                           category_ids=CATEGORY_IDS, height=24, width=32,
                                           instances_per_image=3, seed=5)
    outputs = {}
    runs = {1: (1, 8, 64), 2: (2, 8, 64), 3: (3, 8, 64), "2, tasks of 1 to 16": (2, 1, 16)}
    for run, (workers, smallest, largest) in runs.items():
        made = task_sizes(smallest, largest)
        out = tmp_path / f"w{len(outputs)}"
        code, _, err = _run(capsys, "--gt", gt, "--results", results, "--workers", workers,
                            "--output", out, "--overlays", "TEST.SEGCONTRAST.NUM_WORST_IMAGES",
                            "6")
        assert code == 0, err
        outputs[run] = out
    # the last run's tasks: large first, shrinking to one image at the end
    sizes = made[-1]
    assert sum(sizes) == 60 and sizes == sorted(sizes, reverse=True), sizes
    assert sizes[0] == 7 and sizes[-3:] == [1, 1, 1], sizes
    names = {w: sorted(p.name for p in (out / "worst_images").iterdir())
             for w, out in outputs.items()}
    assert len(names[1]) == 6
    metrics = {w: json.loads((out / "metrics.json").read_text()) for w, out in outputs.items()}
    per_image = {w: (out / "per_image.csv").read_text() for w, out in outputs.items()}
    for workers in outputs:
        assert names[workers] == names[1], workers
        assert per_image[workers] == per_image[1], workers
        for key in ("semantic", "instance", "segm", "contrast", "accounting", "details"):
            assert metrics[workers][key] == metrics[1][key], (workers, key)


def test_the_numbers_do_not_depend_on_the_number_of_workers(files, tmp_path, capsys,
                                                            task_sizes):
    made = task_sizes(2, 2)  # 8 images: 4 tasks for the 3 workers
    outputs = {}
    for workers in (1, 3):
        out = tmp_path / f"w{workers}"
        code, _, err = _run(capsys, "--gt", files["gt"], "--results", files["results"],
                            "--workers", workers, "--output", out, "--overlays",
                            "--panoptic-out", tmp_path / f"panoptic{workers}",
                            "TEST.SEGCONTRAST.NUM_WORST_IMAGES", "3")
        assert code == 0, err
        outputs[workers] = out
    assert made[-1] == [2, 2, 2, 2]
    one, three = (json.loads((outputs[w] / "metrics.json").read_text()) for w in (1, 3))
    for key in ("semantic", "instance", "segm", "contrast", "panoptic", "accounting", "details"):
        assert one[key] == three[key], key
    # --panoptic-out: COCO panoptic files that panopticapi scores as the evaluator did
    for workers in (1, 3):
        folder = tmp_path / f"panoptic{workers}" / files["gt"].stem
        with contextlib.redirect_stdout(io.StringIO()):
            theirs = pq_compute(str(folder / "panoptic_gt.json"),
                                str(folder / "panoptic_pred.json"))
        assert abs(theirs["All"]["pq"] * 100 - one["panoptic"]["PQ_all"]) < 1e-9
    assert (outputs[1] / "per_image.csv").read_text() == (outputs[3] / "per_image.csv").read_text()
    assert sorted(p.name for p in (outputs[1] / "worst_images").iterdir()) == sorted(
        p.name for p in (outputs[3] / "worst_images").iterdir())
    # a problem found by a worker is reported like one found here
    bad = _mutated(files, len(files["list"]) - 1, segmentation=dict(
        files["list"][-1]["segmentation"], counts=":"))
    _refused(capsys, tmp_path, _write(tmp_path, bad), _where(files, len(files["list"]) - 1),
             extra=["--workers", "3"])

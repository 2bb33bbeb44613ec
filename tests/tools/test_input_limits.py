"""Size limits and label PNG modes, through the real tools (issue 19, items 9 and 11).

A 100000x100000 ground-truth image was accepted by tools/evaluate.py, and then a valid result was
blamed for an RLE "of the wrong size" (pycocotools' 32-bit pixel count wrapped around); a
200,000-point polygon took 29 s and 5.5 GB. Both are refused up front now, naming the file, the
item and the limit (segcontrast/data/limits.py), with exit code 2. A 1-bit label PNG is named
as one. The validator's side is in tests/data/make_corpus.py (cases image_too_large and
polygon_too_many_points); one of them runs through tools/validate_dataset.py here.
"""

from __future__ import annotations

import json
import subprocess
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pycocotools.mask as mask_util
import pytest
from PIL import Image
from segcontrast.data.limits import MAX_IMAGE_PIXELS, MAX_IMAGE_SIDE, MAX_POLYGON_POINTS

from tests.evaluation.results_files import write_synthetic_files

from .conftest import run_tool

pytestmark = pytest.mark.slow

HUGE = 100_000


def _square(x0: float, y0: float, x1: float, y1: float) -> list[float]:
    return [x0, y0, x1, y0, x1, y1, x0, y1]


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict:
    folder = tmp_path_factory.mktemp("limits")
    # A 100000x100000 image with one square object, and a correct result for it (an RLE of
    # the image's size; pycocotools encodes it, only its 32-bit pixel count wraps around).
    huge_gt = {"images": [{"id": 1, "file_name": "slide.png", "height": HUGE, "width": HUGE}],
               "categories": [{"id": 1, "name": "cell"}],
               "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "iscrowd": 0,
                                "segmentation": [_square(10, 10, 100, 100)]}]}
    rle = mask_util.frPyObjects([_square(10, 10, 100, 100)], HUGE, HUGE)[0]
    huge_results = [{"image_id": 1, "category_id": 1, "score": 0.9,
                     "segmentation": {"size": [HUGE, HUGE], "counts": rle["counts"].decode()}}]
    paths = {"huge_gt": folder / "huge_gt.json", "huge_results": folder / "huge_results.json"}
    paths["huge_gt"].write_text(json.dumps(huge_gt))
    paths["huge_results"].write_text(json.dumps(huge_results))
    # An ordinary ground truth; result 2 has a polygon of 50,004 points inside its image.
    gt, results, _ = write_synthetic_files(folder / "small", 3, num_classes=2, height=40,
                                           width=48, instances_per_image=2, seed=3)
    listed = json.loads(results.read_text())
    listed[2]["segmentation"] = [_square(5, 5, 20, 20) * 12501]
    paths["gt"], paths["long_polygon"] = gt, folder / "long_polygon.json"
    paths["results"] = results
    paths["long_polygon"].write_text(json.dumps(listed))
    paths["result_2"] = listed[2]
    # Label PNGs of the right size, the second one saved as a 1-bit image.
    labels = folder / "labels"
    labels.mkdir()
    for n, image in enumerate(json.loads(gt.read_text())["images"]):
        array = np.zeros((image["height"], image["width"]), np.uint8)
        array[5:15, 5:15] = 1
        path = labels / f"{image['file_name']}.semantic.png"
        if n == 1:
            Image.fromarray(array * 255).convert("1").save(path)
            paths["one_bit"] = path
        else:
            Image.fromarray(array).save(path)
    paths["labels"] = labels
    return paths


@pytest.fixture(scope="module")
def runs(files, tmp_path_factory) -> dict[str, subprocess.CompletedProcess]:
    out = tmp_path_factory.mktemp("limits_out")
    corpus_case = out / "corpus"
    corpus_case.mkdir()
    (corpus_case / "images").mkdir()
    too_large = {"images": [{"id": 7, "file_name": "big.png", "height": 1000,
                             "width": MAX_IMAGE_SIDE + 1}],
                 "categories": [{"id": 1, "name": "cell"}],
                 "annotations": [{"id": 1, "image_id": 7, "category_id": 1, "iscrowd": 0,
                                  "segmentation": [_square(1, 1, 9, 9)]}]}
    (corpus_case / "ann.json").write_text(json.dumps(too_large))
    commands = {
        "huge": ["evaluate.py", "--gt", str(files["huge_gt"]), "--results",
                 str(files["huge_results"]), "--output", str(out / "huge")],
        "long_polygon": ["evaluate.py", "--gt", str(files["gt"]), "--results",
                         str(files["long_polygon"]), "--output", str(out / "long_polygon")],
        "one_bit": ["evaluate.py", "--gt", str(files["gt"]), "--results", str(files["results"]),
                    "--semantic-dir", str(files["labels"]), "--output", str(out / "one_bit")],
        "validate": ["validate_dataset.py", str(corpus_case / "ann.json"),
                     str(corpus_case / "images")],
    }
    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(lambda command: run_tool(*command), commands.values()))
    return dict(zip(commands, results, strict=True))


def _refused(result: subprocess.CompletedProcess, *fragments: str) -> None:
    assert result.returncode == 2, result.stdout[-2000:] + result.stderr[-2000:]
    assert "Traceback" not in result.stdout + result.stderr
    for fragment in fragments:
        assert fragment in result.stdout + result.stderr, result.stdout + result.stderr


def test_limits_are_far_above_real_data():
    assert MAX_IMAGE_SIDE >= 50_000 and MAX_IMAGE_PIXELS >= 10**9
    assert MAX_IMAGE_PIXELS < 2**32  # what pycocotools counts in
    assert MAX_POLYGON_POINTS >= 50_000


def test_a_huge_ground_truth_image_is_refused_not_the_result(runs, files):
    _refused(runs["huge"], str(files["huge_gt"]), "image 1 ('slide.png')", "image_too_large",
             "the image is 100000x100000 (width x height)", "50,000 pixels a side",
             "MAX_IMAGE_SIDE")
    assert "huge_results.json" not in runs["huge"].stderr  # the result is not blamed


def test_a_result_polygon_with_too_many_points_is_refused(runs, files):
    r = files["result_2"]
    _refused(runs["long_polygon"], str(files["long_polygon"]),
             f"result 2 (image_id {r['image_id']}, category_id {r['category_id']})",
             "its polygons have 50,004 points in all, above the limit of 50,000",
             "MAX_POLYGON_POINTS", "store the mask as RLE")


def test_validate_dataset_names_an_image_above_the_side_limit(runs):
    _refused(runs["validate"], "image 7 ('big.png')", "image_too_large",
             f"the image is {MAX_IMAGE_SIDE + 1}x1000 (width x height)")


def test_a_one_bit_label_png_is_named_in_words(runs, files):
    _refused(runs["one_bit"], str(files["one_bit"]), "is a 1-bit (black and white) image",
             "expected a single-channel label PNG of 8 or 16 bits")
    assert "a 1 image" not in runs["one_bit"].stderr

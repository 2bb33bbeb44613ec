"""Ground-truth annotations and results follow one set of segmentation rules (issue 20): the
same bad segmentation gets the same problem code from the dataset validator and from a results
file's check, and what one of them accepts the other accepts too."""

from __future__ import annotations

import pytest
from segcontrast.data.segmentation import check_segmentation
from segcontrast.evaluation.results_file import ResultsFileError, check_results

HEIGHT, WIDTH = 20, 30

BAD = {
    "a flat list of numbers": ([1, 2, 3, 4, 5, 6], "polygon_malformed"),
    "a polygon holding a string": ([[1, 2, "x", 4, 5, 6]], "polygon_malformed"),
    "an RLE wrapped in a list": ([{"size": [HEIGHT, WIDTH], "counts": "0"}], "polygon_malformed"),
    "a polygon far outside the image": ([[0, 0, 500, 0, 500, 10]], "polygon_outside_image"),
    "an RLE of another size": ({"size": [HEIGHT + 1, WIDTH], "counts": [0, 5, 10]},
                               "rle_size_mismatch"),
    "compressed counts with a non-ASCII character": ({"size": [HEIGHT, WIDTH],
                                                      "counts": "0é1"}, "rle_malformed"),
    "a number": (7, "segmentation_malformed"),
}


def _result_codes(segmentation) -> list[str]:
    result = {"image_id": 1, "category_id": 1, "score": 0.9, "segmentation": segmentation}
    try:
        check_results("results.json", [result], {1: (HEIGHT, WIDTH)}, {1: 0})
    except ResultsFileError as err:
        return [p.code for p in err.problems]
    return []


@pytest.mark.parametrize("case", list(BAD))
def test_a_bad_segmentation_gets_one_code_from_both_checks(case):
    segmentation, code = BAD[case]
    gt_codes = [c for severity, c, _ in check_segmentation(segmentation, HEIGHT, WIDTH).issues
                if severity == "fatal"]
    assert gt_codes == [code]
    assert _result_codes(segmentation) == [code]


@pytest.mark.parametrize("segmentation", [
    [[1, 1, 10, 1, 10, 10]],
    [[1, 1, 10, 1, 10, 10], [12, 12, 20, 12, 20, 18]],
    {"size": [HEIGHT, WIDTH], "counts": [5, 10, HEIGHT * WIDTH - 15]},
], ids=["one polygon", "two polygons", "uncompressed RLE"])
def test_what_the_validator_keeps_a_results_file_accepts(segmentation):
    checked = check_segmentation(segmentation, HEIGHT, WIDTH)
    assert checked.segmentation is not None and not checked.issues
    assert _result_codes(segmentation) == []

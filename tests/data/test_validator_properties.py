"""Property tests of the validator on randomly broken COCO files (hypothesis): it never raises,
only reports; its report and dicts do not depend on the order of images and annotations; and it
never opens a file outside the image root unless allowed."""

import copy
import json
import math
import os
import re
from pathlib import Path
from unittest import mock

import numpy as np
import pycocotools.mask as mask_util
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image
from segcontrast.data import ValidationReport, coco_loader
from segcontrast.data.coco_loader import load_coco_file

H, W = 24, 32
# Every code datasets/README.md documents for COCO files.
KNOWN_CODES = {
    "file_missing", "file_unreadable", "file_empty", "json_truncated", "json_invalid",
    "json_structure", "no_images", "no_categories", "no_annotations_kept", "category_invalid",
    "category_duplicate_id", "image_invalid", "image_duplicate_id", "image_root_missing",
    "image_outside_root", "image_missing", "image_empty", "image_not_image", "image_truncated",
    "image_corrupt", "image_unreadable", "image_size_mismatch", "annotation_invalid",
    "annotation_duplicate_id", "annotation_missing_image", "unknown_category", "bbox_invalid",
    "bbox_negative", "bbox_outside_image", "bbox_empty", "segmentation_missing",
    "segmentation_empty", "segmentation_malformed", "polygon_malformed", "polygon_outside_image",
    "polygon_odd_length", "polygon_too_few_points", "rle_size_mismatch", "rle_malformed",
    "category_duplicate_name", "category_duplicate_name_unused", "annotation_id_zero",
    "image_too_large", "polygon_too_many_points",
}


def _rle(y0, y1, x0, x1, compressed=True):
    mask = np.zeros((H, W), np.uint8, order="F")
    mask[y0:y1, x0:x1] = 1
    rle = mask_util.encode(mask)
    if compressed:
        return {"size": [H, W], "counts": rle["counts"].decode()}
    flat = mask.flatten(order="F")
    edges = np.flatnonzero(np.diff(flat)) + 1
    return {"size": [H, W], "counts": np.diff(np.concatenate([[0], edges, [flat.size]])).tolist()}


BASE = {
    "images": [
        {"id": 1, "file_name": "a.png", "height": H, "width": W},
        {"id": 2, "file_name": "b.jpg", "height": H, "width": W},
        {"id": 5, "file_name": "c.png", "height": H, "width": W},
    ],
    "categories": [{"id": 9, "name": "x"}, {"id": 4, "name": "y"}],
    "annotations": [
        {"id": 1, "image_id": 1, "category_id": 9, "iscrowd": 0, "bbox": [2, 2, 10, 6],
         "area": 60.0, "segmentation": [[2, 2, 12, 2, 12, 8, 2, 8]]},
        {"id": 2, "image_id": 1, "category_id": 4, "iscrowd": 0, "bbox": [14, 10, 8, 8],
         "segmentation": _rle(10, 18, 14, 22)},
        {"id": 3, "image_id": 2, "category_id": 9, "iscrowd": 1,
         "segmentation": _rle(0, 5, 0, 5, compressed=False)},
        {"id": 7, "image_id": 5, "category_id": 4, "bbox": [1, 1, 5, 5],
         "segmentation": [[1, 1, 6, 1, 6, 6], [8, 8, 9, 8, 9, 9, 8, 9]]},
        {"id": 8, "image_id": 5, "category_id": 9, "bbox": [20, 3, 4, 4],
         "segmentation": [[20, 3, 24, 3, 24, 7, 20, 7]]},
    ],
}


def _paths(obj, prefix=()):
    yield prefix
    if isinstance(obj, dict):
        for key, value in obj.items():
            yield from _paths(value, (*prefix, key))
    elif isinstance(obj, list):
        for i, value in enumerate(obj):
            yield from _paths(value, (*prefix, i))


PATHS = list(_paths(BASE))[1:]
TRICKY_NAMES = ["../a.png", "/etc/passwd", "sub/../../a.png", "a.png", "b.jpg", "", "nope.png",
                "a.png\x00", ".", "..", "c.png/../../x"]

scalars = (st.none() | st.booleans() | st.integers(-3, 60) | st.integers(-2**63, 2**63)
           | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=6)
           | st.sampled_from(TRICKY_NAMES))
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=6) | st.dictionaries(
        st.sampled_from(["id", "size", "counts", "name", "x"]), inner, max_size=3),
    max_leaves=12,
)


def _get(obj, path):
    for key in path:
        obj = obj[key]
    return obj


@st.composite
def broken_coco(draw):
    coco = copy.deepcopy(BASE)
    for _ in range(draw(st.integers(1, 4))):
        path = draw(st.sampled_from(PATHS))
        try:
            parent = _get(coco, path[:-1])
            key = path[-1]
            parent[key]  # noqa: B018  (the path may be gone after an earlier mutation)
        except (KeyError, IndexError, TypeError):
            continue
        if not isinstance(parent, (dict, list)):  # an earlier mutation left a string there
            continue
        action = draw(st.sampled_from(["replace", "replace", "delete", "duplicate", "copy_id"]))
        if action == "replace":
            parent[key] = draw(values)
        elif action == "delete":
            del parent[key]
        elif action == "duplicate" and isinstance(parent, list):
            parent.append(copy.deepcopy(parent[key]))
        elif action == "copy_id" and isinstance(parent, dict):
            parent[key] = draw(st.sampled_from([1, 2, 4, 5, 9, 99]))
    return coco


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    folder = tmp_path_factory.mktemp("props")
    images = folder / "images"
    images.mkdir()
    rng = np.random.default_rng(0)
    for name in ("a.png", "b.jpg", "c.png"):
        Image.fromarray((rng.random((H, W, 3)) * 255).astype(np.uint8)).save(images / name)
    Image.fromarray(np.zeros((H, W, 3), np.uint8)).save(folder / "outside.png")
    return folder


def _validate(root, coco, **kw):
    path = root / "ann.json"
    path.write_text(json.dumps(coco))
    return load_coco_file(path, root / "images", **kw)


def _check_dicts(loaded):
    classes = len(loaded.thing_classes)
    for record in loaded.dicts:
        assert os.path.isabs(record["file_name"])
        for ann in record["annotations"]:
            assert 0 <= ann["category_id"] < classes
            assert len(ann["bbox"]) == 4 and all(math.isfinite(v) for v in ann["bbox"])
            segm = ann["segmentation"]
            if isinstance(segm, dict):
                assert isinstance(segm["counts"], str)
                mask = mask_util.decode({"size": segm["size"], "counts": segm["counts"].encode()})
                assert mask.shape == (record["height"], record["width"]) and mask.any()
            else:
                assert segm and all(len(p) >= 6 and len(p) % 2 == 0 for p in segm)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(coco=broken_coco())
def test_never_raises_only_reports(root, coco):
    loaded = _validate(root, coco)
    report = loaded.report
    assert isinstance(report, ValidationReport)
    for problem in report.problems:
        assert problem.severity in ("fatal", "dropped", "changed")
        assert problem.code in KNOWN_CODES, problem.format()
        assert problem.file == str(root / "ann.json")
        assert problem.message
    report.format_summary()
    if report.ok:
        _check_dicts(loaded)
    else:
        assert loaded.dicts == []


def _signature(loaded):
    report = loaded.report
    problems = sorted((p.severity, p.code, repr(p.image_id), repr(p.annotation_id))
                      for p in report.problems)
    result = (problems, report.ok, report.num_kept_annotations, report.mask_format)
    if report.ok:
        result += (loaded.thing_classes, loaded.dicts)
    return result


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(coco=broken_coco(), data=st.data())
def test_results_do_not_depend_on_item_order(root, coco, data):
    first = _signature(_validate(root, coco))
    shuffled = copy.deepcopy(coco)
    for key in ("images", "annotations"):
        if isinstance(shuffled.get(key), list):
            shuffled[key] = data.draw(st.permutations(shuffled[key]))
    assert _signature(_validate(root, shuffled)) == first


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(coco=broken_coco(), names=st.lists(st.sampled_from(TRICKY_NAMES + ["../outside.png"]),
                                          min_size=1, max_size=3))
def test_never_opens_files_outside_the_root(root, coco, names):
    if isinstance(coco.get("images"), list):
        for image, name in zip(coco["images"], names, strict=False):
            if isinstance(image, dict):
                image["file_name"] = name
    opened = []
    real = coco_loader.inspect_image

    def spy(path):
        opened.append(path)
        return real(path)

    with mock.patch.object(coco_loader, "inspect_image", spy):
        _validate(root, coco)
    images = str(root / "images")
    assert all(os.path.commonpath([images, p]) == images for p in opened), opened


def _documented_codes() -> set[str]:
    readme = (Path(__file__).resolve().parents[2] / "datasets" / "README.md").read_text()
    rows = [line for line in readme.splitlines() if line.startswith("| `")]
    return {code for row in rows for code in re.findall(r"`([a-z0-9_]+)`", row.split("|")[1])}


def _codes_in_source() -> set[str]:
    # the validator (segcontrast/data) and the Detectron2 registration (segcontrast/datasets)
    package = Path(coco_loader.__file__).parent
    files = [*package.glob("*.py"), *(package.parent / "datasets").glob("*.py")]
    text = "\n".join(p.read_text() for p in files)
    patterns = [r'"(?:fatal|dropped|changed)",\s*"([a-z0-9_]+)"', r'Error\(\s*"([a-z0-9_]+)"',
                r'SegmentationProblem\(\s*"([a-z0-9_]+)"',
                r'\.single\(\s*"([a-z0-9_]+)"', r'code = "([a-z_]+)" if .* else "([a-z_]+)"',
                r'code\s*[=!]=\s*"([a-z_]+)"']
    found = set()
    for pattern in patterns:
        for match in re.findall(pattern, text):
            found.update([match] if isinstance(match, str) else match)
    # Literal["fatal", "dropped", "changed"] matches the first pattern
    return found - {"fatal", "dropped", "changed"}


def test_every_code_is_documented_in_datasets_readme():
    documented = _documented_codes()
    in_source = _codes_in_source()
    assert KNOWN_CODES <= documented
    assert in_source - documented == set()
    assert documented - in_source == set()  # no rule documented that the code does not have

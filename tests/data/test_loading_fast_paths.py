"""The loader's fast paths give what the full checks give.

* orjson parses a file into json's values, and leaves to json what it would read differently
  (integers beyond 64 bits) or refuses (NaN, Infinity, invalid JSON: json words the problem);
* a plainly valid annotation is kept exactly as every check would keep it; anything else goes
  through the checks (and their messages).
"""

import copy
import json
import math

import numpy as np
import pycocotools.mask as mask_util
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from segcontrast.data import coco_json, coco_loader, limits
from segcontrast.data.validation import ValidationReport

DOCUMENTS = [
    b'{"a": [1, 2.5, -3, 1e-3, "x\\u00e9\\"y"], "b": {"c": null, "d": true}}',
    b'[1, 123456789012345678901234567890, 3]',
    b'[-12345678901234567890]',
    b'["12345678901234567890123", 1]',
    b'{"a": 1, "a": 2}',
    b'\xef\xbb\xbf{"bom": [1]}',
    b'[NaN, Infinity, -Infinity]',
    b'[1e400]',
]


@pytest.mark.parametrize("raw", DOCUMENTS)
def test_parsed_values_are_jsons(tmp_path, raw):
    path = tmp_path / "f.json"
    path.write_bytes(raw)
    found = coco_json.read_json_file(str(path), ValidationReport(json_file=str(path),
                                                                  image_root=""))
    expected = json.loads(raw.decode("utf-8-sig"))
    assert json.dumps(found) == json.dumps(expected)
    assert [type(v) for v in (found if isinstance(found, list) else found.values())] == \
        [type(v) for v in (expected if isinstance(expected, list) else expected.values())]


def test_invalid_json_is_worded_by_json(tmp_path):
    path = tmp_path / "f.json"
    path.write_bytes(b'{"images": [1, 2,')
    report = ValidationReport(json_file=str(path), image_root="")
    assert coco_json.read_json_file(str(path), report) is None
    assert report.fatal[0].code == "json_truncated"


def _dataset(rng: np.random.Generator, fatal: bool) -> dict:
    images = [{"id": i, "file_name": f"{i}.png", "height": 40, "width": 50} for i in (1, 2)]
    annotations = []
    polygons = [
        [[1, 1, 30, 2, 20, 25]],                                   # ints
        [[0.5, 0.5, 49.9, 0.5, 49.9, 39.9, 0.5, 39.9]],            # floats
        [[-1.0, -1.0, 51.0, 0.0, 25.0, 41.0]],                     # at the tolerance
        [[1, 1, 10, 1, 10, 10], [20, 20, 30, 20, 30, 30]],         # two polygons
        [[1, 1, 10, 1, 10, 10], [1, 2]],                           # one too short: dropped
        [[1, 1, 10, 1, 10]],                                       # odd length
        [],                                                        # empty
        {"size": [40, 50], "counts": [5, 10, 1985]},               # RLE
    ]
    if fatal:
        polygons += [
            [[1, 1, 10, 1, 60, 10]],                               # outside the image
            [[1, 1, 10, 1, float("nan"), 10]],                     # not finite
            [[1, 1, True, 1, 10, 10]],                             # a bool
        ]
    for k in range(60):
        ann = {"id": k + 1, "image_id": 1 + k % 2, "category_id": 1 + k % 3,
               "segmentation": polygons[k % len(polygons)]}
        if rng.random() < 0.7:
            ann["bbox"] = [float(v) for v in rng.uniform(0, 20, 4)]
        if rng.random() < 0.3:
            ann["bbox"] = [1, 2, 0, 5]  # empty box: dropped
        if rng.random() < 0.6:
            ann["area"] = float(rng.uniform(1, 100)) if rng.random() < 0.8 else 7
        if rng.random() < 0.2:
            ann["iscrowd"] = int(rng.random() < 0.5)
        if fatal and rng.random() < 0.05:
            ann["category_id"] = 9  # unknown
        annotations.append(ann)
    categories = [{"id": c, "name": f"c{c}"} for c in (1, 2, 3)]
    return {"images": images, "annotations": annotations, "categories": categories}


@pytest.mark.parametrize("seed", range(6))
def test_plainly_valid_annotations_are_kept_as_the_checks_keep_them(tmp_path, monkeypatch, seed):
    fatal = seed % 2 == 1
    data = _dataset(np.random.default_rng(seed), fatal)
    path = tmp_path / "gt.json"
    path.write_text(json.dumps(data))

    def load():
        loaded = coco_loader.load_coco_file(str(path), str(tmp_path), check_image_files=False)
        problems = [(p.severity, p.code, p.message, p.image_id, p.annotation_id)
                    for p in loaded.report.problems]
        return json.dumps(loaded.dicts, sort_keys=True), problems

    plain_record, kept_fast = coco_loader._plain_record, []

    def counted(*args):
        kept = plain_record(*args)
        kept_fast.append(kept is not None)
        return kept

    monkeypatch.setattr(coco_loader, "_plain_record", counted)
    fast = load()
    assert any(kept_fast) and not all(kept_fast)  # both paths taken
    monkeypatch.setattr(coco_loader, "_FAST_PATH", False)
    kept_fast.clear()
    slow = load()
    assert not kept_fast
    assert fast == slow
    if fatal:
        assert any(p[0] == "fatal" for p in fast[1])
    else:
        assert '"segmentation"' in fast[0] and any(p[0] == "dropped" for p in fast[1])


# Values around every boundary of the fast path's checks, valid and not, for each field.
H, W = 20, 30


def _compressed(mask: np.ndarray) -> str:
    return mask_util.encode(np.asfortranarray(mask.astype(np.uint8)))["counts"].decode()


_SQUARE = np.zeros((H, W), bool)
_SQUARE[3:9, 4:12] = True
_RLE = _compressed(_SQUARE)
_EMPTY_RLE = _compressed(np.zeros((H, W), bool))
_MISSING = object()
# Values around every boundary of the fast path's checks, valid ones first (VALID of each).
IDS = [1, 2, 3, 7, 0, -4, True, 1.0, "5", None, 2**70]
IMAGE_IDS = [1, 2, 3, 99, True, 1.0, "1", None]  # image 3 may be given twice: unsized
CATEGORY_IDS = [1, 2, 5, 6, 8, True, 1.0, None]  # 5 is a namesake of 2, 8 is unknown
ISCROWD = [_MISSING, 0, 1, True, 1.0, 2, -1, None]
AREAS = [_MISSING, 0, 12, 12.5, 0.0, 2**53, -1, -0.5, math.nan, math.inf, 2**60, True, "3",
         None]
BOXES = [
    _MISSING, [1, 2, 10, 5], [1.5, 2.5, 10.0, 5.0], [-1, -1, W + 1, H + 1],
    [-1.01, 0, 5, 5], [0, -1.01, 5, 5], [0, 0, W + 1.01, 5], [0, 0, 5, H + 1.01], [0, 0, 0, 5],
    [0, 0, 5, 0], [0, 0, -3, 5], [0, 0, math.nan, 5], [math.inf, 0, 5, 5],
    [0, -math.inf, 5, 5], [0, 0, True, 5], [0, 0, 5], (1, 2, 3, 4), [0, 0, "5", 5], None,
    [2**60, 0, 5, 5],
]
# With MAX_POLYGON_POINTS patched to 8 (a 9-point polygon is too many).
SEGMENTATIONS = [
    [[1, 1, 20, 2, 10, 15]], [[0.5, 0.5, 29.5, 0.5, 29.5, 19.5, 0.5, 19.5]],
    [[-1.0, -1.0, W + 1.0, 0.0, 15.0, H + 1.0]], [[1, 1, 10, 1, 10, 10], [20, 10, 25, 10, 25, 15]],
    [[float(v) for v in range(16)]], {"size": [H, W], "counts": _RLE},
    [[-1.01, 0, 5, 0, 5, 5]], [[0, -1.01, 5, 0, 5, 5]], [[0, 0, W + 1.5, 0, 5, 5]],
    [[0, 0, 5, H + 1.01, 5, 5]], [[1, 1, 10, 1, 10, 10], [1, 2]], [[1, 1, 10, 1, 10]],
    [[1, 1, 10, 1]], [], [[]], [1, 1, 10, 1, 10, 10], [[1, 1, 10, 1, math.nan, 10]],
    [[1, 1, True, 1, 10, 10]], [[1, 1, "2", 1, 10, 10]], [[1, 1, 2**60, 1, 10, 10]],
    [(1, 1, 10, 1, 10, 10)], [[1, 1, 10, 1, 10, 10], {"size": [H, W], "counts": _RLE}],
    [[float(v) for v in range(18)]], [[1, 1, 10, 1, 10, 10], [float(v) for v in range(12)]],
    {"size": [H, W], "counts": _EMPTY_RLE}, {"size": [W, H], "counts": _RLE},
    {"size": [H, H], "counts": _RLE}, {"size": (H, W), "counts": _RLE},
    {"size": [H, True], "counts": _RLE}, {"size": [H, W], "counts": _RLE[:-1]},
    {"size": [H, W], "counts": _RLE + "0"}, {"size": [H, W], "counts": "é" + _RLE},
    {"size": [H, W], "counts": "\x7f"}, {"size": [H, W], "counts": ""},
    {"size": [H, W], "counts": _RLE.encode()}, {"size": [H, W], "counts": [10, 5, 585]},
    {"size": [H, W]}, {"counts": _RLE}, None, "polygon", 3, _MISSING,
]
FIELDS = {"id": (IDS, 5), "image_id": (IMAGE_IDS, 2), "category_id": (CATEGORY_IDS, 2),
          "iscrowd": (ISCROWD, 3), "area": (AREAS, 6), "bbox": (BOXES, 4),
          "segmentation": (SEGMENTATIONS, 6)}  # values, how many are valid


@st.composite
def gt_datasets(draw) -> dict:
    """A COCO dict: images (one id maybe given twice), categories (two namesakes), and annotations
    with valid fields but (mostly) one, drawn from valid and invalid values."""
    images = [{"id": i, "file_name": f"{i}.png", "height": H, "width": W} for i in (1, 2, 3)]
    if draw(st.booleans()):  # fatal, and image 3 has no size to check its annotations with
        images.append({"id": 3, "file_name": "again.png", "height": H, "width": W})
    categories = [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}, {"id": 5, "name": "b"},
                  {"id": 6, "name": "c"}]
    annotations = []
    for _ in range(draw(st.integers(1, 8))):
        broken = draw(st.sampled_from([None, *FIELDS]))
        ann = {}
        for key, (values, valid) in FIELDS.items():
            value = draw(st.sampled_from(values if key == broken else values[:valid]))
            if value is not _MISSING:
                ann[key] = copy.deepcopy(value)
        annotations.append(ann)
    if draw(st.booleans()):
        annotations.append("not an object")
    return {"images": images, "annotations": annotations, "categories": categories}


def _loaded(data: dict, tmp_path) -> tuple:
    loaded = coco_loader.load_coco_file(str(tmp_path / "gt.json"), str(tmp_path),
                                        check_image_files=False, data=copy.deepcopy(data))
    report = loaded.report
    problems = [(p.severity, p.code, p.message, p.file, p.image_id, p.annotation_id,
                 p.image_file) for p in report.problems]
    # repr tells 1 from 1.0 and True, and shows the keys in their order
    return (repr(loaded.dicts), problems, report.num_kept_annotations, report.mask_format,
            report.left_out_categories, loaded.id_map, loaded.thing_classes)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                   HealthCheck.data_too_large])
@given(data=gt_datasets())
def test_fast_path_gives_what_every_check_gives(tmp_path_factory, data):
    tmp_path = tmp_path_factory.mktemp("gt")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(coco_loader, "MAX_POLYGON_POINTS", 8)
        patch.setattr(limits, "MAX_POLYGON_POINTS", 8)
        fast = _loaded(data, tmp_path)
        patch.setattr(coco_loader, "_FAST_PATH", False)
        slow = _loaded(data, tmp_path)
    assert fast == slow


# Annotations that the fast path keeps, to break one field of at a time.
BASES = [
    {"id": 1, "image_id": 1, "category_id": 1, "segmentation": [[1, 1, 20, 2, 10, 15]],
     "bbox": [1, 1, 19, 14], "area": 100.0, "iscrowd": 0},
    {"id": 7, "image_id": 2, "category_id": 2, "segmentation": {"size": [H, W], "counts": _RLE}},
    {"id": 0, "image_id": 1, "category_id": 6, "iscrowd": 1, "area": 12,
     "segmentation": [[0.5, 0.5, 29.5, 0.5, 29.5, 19.5, 0.5, 19.5]]},
]


@pytest.mark.parametrize("key", FIELDS)
def test_fast_path_gives_what_every_check_gives_for_each_value(tmp_path, monkeypatch, key):
    """Every value of one field (valid and not), in annotations otherwise plainly valid."""
    monkeypatch.setattr(coco_loader, "MAX_POLYGON_POINTS", 8)
    monkeypatch.setattr(limits, "MAX_POLYGON_POINTS", 8)
    plain_record, kept_fast = coco_loader._plain_record, []
    monkeypatch.setattr(coco_loader, "_plain_record",
                        lambda *args: kept_fast.append(plain_record(*args)) or kept_fast[-1])
    data = {"images": [{"id": i, "file_name": f"{i}.png", "height": H, "width": W}
                       for i in (1, 2)],
            "categories": [{"id": 1, "name": "a"}, {"id": 2, "name": "b"},
                           {"id": 5, "name": "b"}, {"id": 6, "name": "c"}]}
    for base in BASES:
        for value in FIELDS[key][0]:
            ann = {k: v for k, v in base.items() if k != key}
            if value is not _MISSING:
                ann[key] = value
            data["annotations"] = [ann]
            monkeypatch.setattr(coco_loader, "_FAST_PATH", True)
            fast = _loaded(data, tmp_path)
            monkeypatch.setattr(coco_loader, "_FAST_PATH", False)
            assert _loaded(data, tmp_path) == fast, (base, key, value)
    assert sum(kept is not None for kept in kept_fast) >= len(BASES)  # the fast path is taken


def test_fast_path_takes_the_common_annotations(tmp_path, monkeypatch):
    """Plain polygons and compressed RLE, with and without bbox and area, and an id 0 that is
    renumbered: all kept by the fast path, as every check keeps them."""
    base = {"image_id": 1, "category_id": 1}
    annotations = [
        {**base, "id": 0, "segmentation": SEGMENTATIONS[0], "bbox": [1, 1, 19, 14],
         "area": 100.0},
        {**base, "id": 4, "segmentation": SEGMENTATIONS[1]},
        {**base, "id": 2, "segmentation": {"size": [H, W], "counts": _RLE}, "iscrowd": 1,
         "bbox": [4, 3, 8, 6], "area": 48},
        {**base, "id": 3, "segmentation": {"size": [H, W], "counts": _RLE}, "area": 48.0},
    ]
    data = {"images": [{"id": 1, "file_name": "1.png", "height": H, "width": W}],
            "annotations": annotations, "categories": [{"id": 1, "name": "a"}]}
    plain_record, taken = coco_loader._plain_record, []
    monkeypatch.setattr(coco_loader, "_plain_record",
                        lambda *args: taken.append(plain_record(*args)) or taken[-1])
    fast = _loaded(data, tmp_path)
    assert len(taken) == 4 and all(t is not None for t in taken)
    assert [p[1] for p in fast[1]] == ["annotation_id_zero"] and fast[3] == "bitmask"
    monkeypatch.setattr(coco_loader, "_FAST_PATH", False)
    taken.clear()
    assert _loaded(data, tmp_path) == fast and not taken

"""The loader's fast paths give what the full checks give.

* orjson parses a file into json's values, and leaves to json what it would read differently
  (integers beyond 64 bits) or refuses (NaN, Infinity, invalid JSON: json words the problem);
* a plainly valid annotation is kept exactly as every check would keep it; anything else goes
  through the checks (and their messages).
"""

import json

import numpy as np
import pytest
from segcontrast.data import coco_json, coco_loader
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

    plainly_valid, kept_fast = coco_loader._plainly_valid, []

    def counted(*args):
        kept = plainly_valid(*args)
        kept_fast.append(kept is not None)
        return kept

    monkeypatch.setattr(coco_loader, "_plainly_valid", counted)
    fast = load()
    assert any(kept_fast) and not all(kept_fast)  # both paths taken
    monkeypatch.setattr(coco_loader, "_plainly_valid", lambda *args: None)
    slow = load()
    assert fast == slow
    if fatal:
        assert any(p[0] == "fatal" for p in fast[1])
    else:
        assert '"segmentation"' in fast[0] and any(p[0] == "dropped" for p in fast[1])

"""The built-in `shapes` generator: deterministic, valid COCO, and full of touching objects of
one class (the case where semantic and instance scores part ways)."""

import hashlib
import json

import cv2
import numpy as np
import pycocotools.mask as mask_util
import pytest
from segcontrast.data.shapes import SHAPE_CLASSES, ShapesConfig, generate_shapes

SMALL = ShapesConfig(num_train=6, num_val=3, image_size=96, seed=3)


def _digest(folder):
    h = hashlib.sha256()
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            h.update(path.relative_to(folder).as_posix().encode())
            h.update(path.read_bytes())
    return h.hexdigest()


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    root = tmp_path_factory.mktemp("shapes")
    return root, generate_shapes(root, SMALL, progress=False)


def test_generation_is_deterministic(shapes, tmp_path):
    root, _ = shapes
    generate_shapes(tmp_path, SMALL, progress=False)
    assert _digest(tmp_path) == _digest(root)
    generate_shapes(tmp_path / "other", ShapesConfig(**{**SMALL.__dict__, "seed": 4}),
                    progress=False)
    assert _digest(tmp_path / "other") != _digest(root)


def test_coco_json_is_consistent_with_the_masks(shapes):
    root, paths = shapes
    data = json.loads(paths["train"].read_text())
    assert [c["name"] for c in data["categories"]] == list(SHAPE_CLASSES)
    assert len(data["images"]) == SMALL.num_train
    ids = [a["id"] for a in data["annotations"]]
    assert len(ids) == len(set(ids))
    for image in data["images"]:
        assert (root / "images" / image["file_name"]).is_file()
        anns = [a for a in data["annotations"] if a["image_id"] == image["id"]]
        assert SMALL.min_objects <= len(anns) <= SMALL.max_objects
        union = np.zeros((image["height"], image["width"]), dtype=int)
        for ann in anns:
            mask = mask_util.decode(ann["segmentation"])
            assert mask.shape == (image["height"], image["width"])
            assert ann["area"] == mask.sum() >= 30
            ys, xs = np.nonzero(mask)
            assert ann["bbox"] == [xs.min(), ys.min(), xs.max() - xs.min() + 1,
                                   ys.max() - ys.min() + 1]
            union += mask
        assert union.max() == 1, "visible masks of one image must not overlap"


def test_many_same_class_objects_touch(shapes):
    _, paths = shapes
    data = json.loads(paths["train"].read_text())
    touching_pairs = 0
    kernel = np.ones((3, 3), np.uint8)
    for image in data["images"]:
        anns = [a for a in data["annotations"] if a["image_id"] == image["id"]]
        masks = [mask_util.decode(a["segmentation"]) for a in anns]
        for i in range(len(anns)):
            grown = cv2.dilate(masks[i], kernel)
            for j in range(i + 1, len(anns)):
                same = anns[i]["category_id"] == anns[j]["category_id"]
                touching_pairs += same and bool((grown & masks[j]).any())
    assert touching_pairs >= len(data["images"])

"""Registering COCO datasets: the --dataset argument, the config, names registered twice,
metadata, and the DatasetCatalog loader that validates first."""

import json
import logging

import numpy as np
import pytest
from detectron2.config import get_cfg
from detectron2.data import DatasetCatalog, MetadataCatalog
from PIL import Image
from segcontrast.config import add_segcontrast_config
from segcontrast.data import DatasetValidationError
from segcontrast.datasets import (
    parse_dataset_arg,
    register_coco_dataset,
    register_datasets_from_config,
    validate_dataset,
)
from segcontrast.datasets.coco import unregister_coco_dataset


@pytest.fixture
def names():
    registered = []
    yield registered
    for name in registered:
        unregister_coco_dataset(name)


def _dataset(folder, *, degenerate=False):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "images").mkdir(exist_ok=True)
    Image.fromarray(np.full((20, 30, 3), 90, np.uint8)).save(folder / "images" / "a.png")
    anns = [{"id": 1, "image_id": 4, "category_id": 12, "bbox": [2, 2, 10, 10],
             "segmentation": [[2, 2, 12, 2, 12, 12, 2, 12]]}]
    if degenerate:
        anns.append({"id": 2, "image_id": 4, "category_id": 12, "bbox": [2, 2, 10, 10],
                     "segmentation": [[2, 2, 12, 2]]})
    coco = {"images": [{"id": 4, "file_name": "a.png", "height": 20, "width": 30}],
            "categories": [{"id": 12, "name": "cell"}], "annotations": anns}
    (folder / "ann.json").write_text(json.dumps(coco))
    return folder / "ann.json", folder / "images"


@pytest.mark.parametrize(
    "spec, expected",
    [
        ("mine=ann/train.json:images/", ("mine", "ann/train.json", "images/")),
        ("a_b=/abs/x.json:/abs/imgs", ("a_b", "/abs/x.json", "/abs/imgs")),
        ("w=C:/d/a.json:C:/d/img", ("w", "C:/d/a.json", "C:/d/img")),  # drive letters
        ("n=dir:with:colons/a.JSON:imgs", ("n", "dir:with:colons/a.JSON", "imgs")),
        ("n=ann.txt:imgs", ("n", "ann.txt", "imgs")),  # no .json: the last ':'
        ("n=a.json:sp ace/ü", ("n", "a.json", "sp ace/ü")),
        ("n=x=y.json:imgs", ("n", "x=y.json", "imgs")),
    ],
)
def test_parse_dataset_arg(spec, expected):
    assert parse_dataset_arg(spec) == expected


@pytest.mark.parametrize(
    "spec, why",
    [
        ("ann.json:imgs", "no '='"),
        ("=ann.json:imgs", "empty or holds whitespace"),
        ("my set=ann.json:imgs", "empty or holds whitespace"),
        ("n=ann.json", "no ':'"),
        ("n=:imgs", "JSON file is empty"),
        ("n=ann.json:", "image root is empty"),
        ("n=ann.json: ", "image root is empty"),
    ],
)
def test_parse_dataset_arg_errors(spec, why):
    with pytest.raises(DatasetValidationError) as info:
        parse_dataset_arg(spec)
    message = str(info.value)
    assert why in message and "NAME=JSON:IMAGE_ROOT" in message and repr(spec) in message
    assert info.value.report.fatal[0].code == "bad_dataset_arg"


def test_register_is_lazy_and_sets_metadata(tmp_path, names):
    json_file = tmp_path / "not_yet.json"
    register_coco_dataset("reg_lazy", json_file, tmp_path / "imgs")
    names.append("reg_lazy")
    meta = MetadataCatalog.get("reg_lazy")
    assert meta.json_file == str(json_file) and meta.image_root == str(tmp_path / "imgs")
    assert meta.evaluator_type == "coco" and meta.allow_outside_root is False
    with pytest.raises(DatasetValidationError) as info:
        DatasetCatalog.get("reg_lazy")
    assert "file_missing" in str(info.value) and str(json_file) in str(info.value)


def test_register_twice(tmp_path, names, monkeypatch):
    json_file, images = _dataset(tmp_path / "one")
    register_coco_dataset("reg_twice", json_file, images)
    names.append("reg_twice")
    monkeypatch.chdir(tmp_path)
    register_coco_dataset("reg_twice", "one/ann.json", "one/images")  # same files: a no-op
    other_json, other_images = _dataset(tmp_path / "two")
    with pytest.raises(DatasetValidationError) as info:
        register_coco_dataset("reg_twice", other_json, other_images)
    assert str(json_file) in str(info.value) and str(other_json) in str(info.value)
    with pytest.raises(DatasetValidationError) as info:
        register_coco_dataset("reg_twice", json_file, images, allow_outside_root=True)
    assert "allow_outside_root=True" in str(info.value)


def test_a_name_detectron2_already_uses_is_refused(tmp_path):
    import detectron2.data.datasets  # noqa: F401  (registers Detectron2's built-in names)

    json_file, images = _dataset(tmp_path)
    with pytest.raises(DatasetValidationError) as info:
        register_coco_dataset("coco_2017_train", json_file, images)
    assert "already registered by Detectron2" in str(info.value)


def test_validate_sets_metadata_logs_drops_and_caches(tmp_path, names, caplog):
    json_file, images = _dataset(tmp_path, degenerate=True)
    register_coco_dataset("reg_valid", json_file, images)
    names.append("reg_valid")
    with caplog.at_level(logging.WARNING, logger="segcontrast.datasets.coco"):
        report = validate_dataset("reg_valid")
    assert report.ok and [p.code for p in report.dropped] == ["polygon_too_few_points"]
    assert "1 item(s) dropped (polygon_too_few_points: 1)" in caplog.text
    meta = MetadataCatalog.get("reg_valid")
    assert meta.thing_classes == ["cell"]
    assert meta.thing_dataset_id_to_contiguous_id == {12: 0}
    assert meta.mask_format == "polygon"
    assert validate_dataset("reg_valid") is report  # cached per process
    dicts = DatasetCatalog.get("reg_valid")
    assert [a["id"] for a in dicts[0]["annotations"]] == [1]
    dicts[0]["annotations"].clear()  # callers may change what they get ...
    assert len(DatasetCatalog.get("reg_valid")[0]["annotations"]) == 1  # ... not the cache


def test_validate_unknown_name():
    with pytest.raises(DatasetValidationError) as info:
        validate_dataset("reg_nobody_registered_this")
    assert "not a registered COCO dataset" in str(info.value)
    assert "--dataset NAME=JSON:IMAGE_ROOT" in str(info.value)


def test_register_from_config(tmp_path, names):
    json_file, images = _dataset(tmp_path)
    cfg = get_cfg()
    add_segcontrast_config(cfg)
    cfg.DATASETS.COCO = [["reg_cfg_a", str(json_file), str(images)],
                         ("reg_cfg_b", str(json_file), str(images))]
    assert register_datasets_from_config(cfg) == ["reg_cfg_a", "reg_cfg_b"]
    names.extend(["reg_cfg_a", "reg_cfg_b"])
    assert validate_dataset("reg_cfg_b").ok
    cfg.DATASETS.COCO = [["reg_cfg_c", str(json_file)]]
    with pytest.raises(DatasetValidationError) as info:
        register_datasets_from_config(cfg)
    assert "DATASETS.COCO entry" in str(info.value)
    assert register_datasets_from_config(get_cfg()) == []  # a config without the key


def test_outside_root_flag_is_part_of_the_registration(tmp_path, names):
    json_file, images = _dataset(tmp_path / "d")
    coco = json.loads(json_file.read_text())
    coco["images"][0]["file_name"] = "../a.png"
    (images / "sub").mkdir()
    bad = tmp_path / "d" / "outside.json"
    bad.write_text(json.dumps(coco))
    register_coco_dataset("reg_out_no", bad, images / "sub")
    register_coco_dataset("reg_out_yes", bad, images / "sub", allow_outside_root=True)
    names.extend(["reg_out_no", "reg_out_yes"])
    with pytest.raises(DatasetValidationError) as info:
        validate_dataset("reg_out_no")
    assert "image_outside_root" in str(info.value) and "image 4" in str(info.value)
    assert validate_dataset("reg_out_yes").ok
    assert DatasetCatalog.get("reg_out_yes")[0]["file_name"] == str(images / "a.png")

"""COCO loading and validation (segcontrast.data.coco_loader): the dicts it builds, and the
problems it finds, checked against pycocotools and hand-made expectations."""

import json

import numpy as np
import pycocotools.mask as mask_util
import pytest
from detectron2.structures import BoxMode
from PIL import Image, ImageFile
from segcontrast.data import validate_coco_file
from segcontrast.data.coco_loader import load_coco_file

# pycocotools 2.0.11 with numpy 2 warns on every decode.

H, W = 30, 40


def _mask(y0, y1, x0, x1):
    mask = np.zeros((H, W), dtype=np.uint8, order="F")
    mask[y0:y1, x0:x1] = 1
    return mask


def _rle(mask):
    rle = mask_util.encode(np.asfortranarray(mask))
    return {"size": [H, W], "counts": rle["counts"].decode()}


def _write(tmp_path, coco, num_images=2, fmt="png"):
    images = tmp_path / "images"
    images.mkdir(exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(1, num_images + 1):
        Image.fromarray((rng.random((H, W, 3)) * 255).astype(np.uint8)).save(
            images / f"{i}.{fmt}")
    path = tmp_path / "ann.json"
    path.write_text(json.dumps(coco))
    return path, images


def _coco(num_images=2, fmt="png"):
    return {
        "images": [{"id": i, "file_name": f"{i}.{fmt}", "height": H, "width": W}
                   for i in range(1, num_images + 1)],
        "categories": [{"id": 40, "name": "b"}, {"id": 2, "name": "a"}, {"id": 17, "name": "c"}],
        "annotations": [
            {"id": 5, "image_id": 1, "category_id": 40, "iscrowd": 0, "bbox": [2, 3, 10, 8],
             "area": 80.0, "segmentation": [[2, 3, 12, 3, 12, 11, 2, 11]]},
            {"id": 3, "image_id": 1, "category_id": 2, "iscrowd": 0,
             "segmentation": _rle(_mask(10, 20, 15, 30))},
            {"id": 9, "image_id": 2, "category_id": 17, "iscrowd": 1,
             "segmentation": {"size": [H, W], "counts": [W * 5, 7, H * W - W * 5 - 7]}},
        ],
    }


def test_noncontiguous_ids_are_mapped_and_names_kept(tmp_path):
    loaded = load_coco_file(*_write(tmp_path, _coco()))
    assert loaded.report.ok and not loaded.report.problems
    assert loaded.thing_classes == ["a", "c", "b"]  # sorted by JSON id 2, 17, 40
    assert loaded.id_map == {2: 0, 17: 1, 40: 2}
    assert loaded.report.categories == [(2, "a"), (17, "c"), (40, "b")]
    by_id = {a["id"]: a for d in loaded.dicts for a in d["annotations"]}
    assert by_id[5]["category_id"] == 2 and by_id[3]["category_id"] == 0
    assert by_id[9]["category_id"] == 1


def test_dicts_follow_the_contract(tmp_path):
    path, images = _write(tmp_path, _coco())
    # The evaluation side's default box mode is BoxMode.XYWH_ABS's value, without Detectron2.
    plain = load_coco_file(path, images)
    assert {a["bbox_mode"] for d in plain.dicts for a in d["annotations"]} == {BoxMode.XYWH_ABS}
    loaded = load_coco_file(path, images, box_mode=BoxMode.XYWH_ABS)
    assert [d["image_id"] for d in loaded.dicts] == [1, 2]
    first = loaded.dicts[0]
    assert first["file_name"] == str((images / "1.png").resolve())
    assert (first["height"], first["width"]) == (H, W)
    assert [a["id"] for a in first["annotations"]] == [3, 5]  # sorted by annotation id
    for record in loaded.dicts:
        for ann in record["annotations"]:
            assert ann["bbox_mode"] is BoxMode.XYWH_ABS
            assert set(ann) == {"bbox", "bbox_mode", "category_id", "iscrowd", "segmentation",
                                "area", "id"}
            assert isinstance(ann["iscrowd"], int) and isinstance(ann["area"], float)


def test_polygon_and_rle_mix_gives_bitmask_and_exact_masks(tmp_path):
    loaded = load_coco_file(*_write(tmp_path, _coco()))
    assert loaded.report.mask_format == "bitmask"
    by_id = {a["id"]: a for d in loaded.dicts for a in d["annotations"]}
    assert isinstance(by_id[5]["segmentation"], list)
    for ann_id, reference in ((3, _mask(10, 20, 15, 30)), (9, None)):
        segm = by_id[ann_id]["segmentation"]
        assert set(segm) == {"size", "counts"} and isinstance(segm["counts"], str)
        decoded = mask_util.decode(segm)
        if reference is None:  # the uncompressed crowd RLE: 7 pixels from column 5
            flat = np.zeros(H * W, np.uint8)
            flat[W * 5: W * 5 + 7] = 1
            reference = flat.reshape((H, W), order="F")
        assert np.array_equal(decoded, reference)


def test_polygons_only_give_polygon_format(tmp_path):
    coco = _coco()
    coco["annotations"] = coco["annotations"][:1]
    assert load_coco_file(*_write(tmp_path, coco)).report.mask_format == "polygon"


def test_missing_bbox_and_area_are_computed_like_pycocotools(tmp_path):
    coco = _coco()
    for ann in coco["annotations"]:
        ann.pop("bbox", None)
        ann.pop("area", None)
    loaded = load_coco_file(*_write(tmp_path, coco))
    by_id = {a["id"]: a for d in loaded.dicts for a in d["annotations"]}
    polygon = coco["annotations"][0]["segmentation"]
    rle = mask_util.merge(mask_util.frPyObjects(polygon, H, W))
    assert by_id[5]["area"] == float(mask_util.area(rle))
    assert by_id[5]["bbox"] == [2.0, 3.0, 10.0, 8.0]
    segm3 = coco["annotations"][1]["segmentation"]
    rle3 = {"size": segm3["size"], "counts": segm3["counts"].encode()}
    assert by_id[3]["area"] == 150.0 == float(mask_util.area(rle3))
    assert by_id[3]["bbox"] == [float(v) for v in mask_util.toBbox(rle3)]


def test_area_from_the_json_is_kept(tmp_path):
    loaded = load_coco_file(*_write(tmp_path, _coco()))
    assert {a["id"]: a["area"] for a in loaded.dicts[0]["annotations"]}[5] == 80.0


def test_every_problem_is_reported_at_once(tmp_path):
    coco = _coco(num_images=3)
    coco["images"][2]["file_name"] = "missing.png"
    coco["annotations"] += [
        {"id": 20, "image_id": 1, "category_id": 99, "bbox": [1, 1, 2, 2],
         "segmentation": [[1, 1, 3, 1, 3, 3]]},
        {"id": 21, "image_id": 2, "category_id": 2, "bbox": [1, 1, -2, 2],
         "segmentation": [[1, 1, 3, 1, 3, 3]]},
        {"id": 22, "image_id": 2, "category_id": 2, "bbox": [1, 1, 2, 2],
         "segmentation": [[1, 1, 3, 1]]},
        {"id": 23, "image_id": 2, "category_id": 2, "segmentation": [1, 1, 3, 1, 3, 3]},
        {"id": 24, "image_id": 2, "category_id": 2, "iscrowd": 2,
         "segmentation": [[1, 1, 3, 1, 3, 3]]},
        {"id": 25, "image_id": 2, "category_id": 2, "bbox": [1, 1, float("nan"), 2],
         "segmentation": [_rle(_mask(1, 2, 1, 2))]},
    ]
    path, images = _write(tmp_path, coco, num_images=2)
    report = validate_coco_file(path, images)
    found = {(p.code, p.annotation_id) for p in report.problems}
    assert found == {
        ("image_missing", None), ("unknown_category", 20), ("bbox_negative", 21),
        ("polygon_too_few_points", 22), ("polygon_malformed", 23), ("annotation_invalid", 24),
        ("bbox_invalid", 25), ("polygon_malformed", 25),
    }
    assert not report.ok
    assert [p.severity for p in report.problems][:7] == ["fatal"] * 7
    assert report.problems[-1].severity == "dropped"
    summary = report.format_summary()
    assert "image 3" in summary and "annotation 21" in summary and str(path) in summary


def test_report_does_not_depend_on_the_order_of_items(tmp_path):
    coco = _coco(num_images=3)
    coco["images"][2]["file_name"] = "missing.png"
    coco["annotations"].append({"id": 30, "image_id": 2, "category_id": 2,
                                "segmentation": [[1, 1, 3, 1]]})
    path, images = _write(tmp_path, coco, num_images=2)
    first = validate_coco_file(path, images).problems
    coco["images"].reverse()
    coco["annotations"].reverse()
    path.write_text(json.dumps(coco))
    assert validate_coco_file(path, images).problems == first


def test_sizes_come_from_headers_without_decoding(tmp_path, monkeypatch):
    coco = _coco(num_images=12)
    path, images = _write(tmp_path, coco, num_images=12)  # 12 images: the threaded path
    for i in (3, 4):
        Image.open(images / f"{i}.png").convert("RGB").save(images / f"{i}.jpg", quality=90)
        coco["images"][i - 1]["file_name"] = f"{i}.jpg"
    path.write_text(json.dumps(coco))

    def no_decoding(self):
        raise AssertionError("pixels were decoded")

    monkeypatch.setattr(ImageFile.ImageFile, "load", no_decoding)
    report = validate_coco_file(path, images)
    assert report.ok and not report.problems, report.format_summary()


@pytest.mark.parametrize(
    "text, code",
    [
        ("\ufeff" + json.dumps(_coco()), None),  # a UTF-8 byte order mark is fine
        ("[" * 100000, "json_invalid"),  # nested too deeply for the parser
        ("[1, 2]", "json_structure"),
        ("null", "json_structure"),
        ('{"images": [], "annotations": [], "categories": []}', "no_images"),
        ('{"images": "x", "annotations": [], "categories": {}}', "json_structure"),
    ],
)

def test_file_level_problems(tmp_path, text, code):
    _, images = _write(tmp_path, _coco())
    path = tmp_path / "file.json"
    path.write_text(text, encoding="utf-8")
    report = validate_coco_file(path, images)
    assert {p.code for p in report.fatal} >= ({code} if code else set())
    if code is None:
        assert report.ok
    elif code.startswith("json"):
        assert len(report.problems) == 1  # one clear problem naming the file
        assert report.problems[0].file == str(path)


def test_binary_missing_and_folder_annotation_files(tmp_path):
    _, images = _write(tmp_path, _coco())
    binary = tmp_path / "b.json"
    binary.write_bytes(b"\x89PNG\r\n\x1a\n\x00\xff\xfe")
    assert [p.code for p in validate_coco_file(binary, images).problems] == ["json_invalid"]
    assert [p.code for p in validate_coco_file(tmp_path / "no.json", images).problems] == [
        "file_missing"]
    assert [p.code for p in validate_coco_file(images, images).problems] == ["file_unreadable"]


def test_integral_float_sizes_are_accepted_and_string_ids_refused(tmp_path):
    coco = _coco()
    coco["images"][0].update(height=float(H), width=float(W))
    coco["images"][1]["id"] = "2"
    report = validate_coco_file(*_write(tmp_path, coco))
    codes = {(p.code, p.image_id, p.annotation_id) for p in report.problems}
    assert codes == {("image_invalid", None, None), ("annotation_missing_image", 2, 9)}
    assert "images[1]" in report.fatal[0].message or "images[1]" in report.fatal[1].message


def test_rle_wrapped_in_a_list_is_malformed(tmp_path):
    coco = _coco()
    coco["annotations"][1]["segmentation"] = [coco["annotations"][1]["segmentation"]]
    report = validate_coco_file(*_write(tmp_path, coco))
    assert [(p.code, p.annotation_id) for p in report.problems] == [("polygon_malformed", 3)]
    assert "RLE must not be wrapped" in report.problems[0].message


def test_bbox_within_one_pixel_of_the_border_is_fine(tmp_path):
    coco = _coco()
    coco["annotations"][0]["bbox"] = [-0.5, -1.0, W + 1.0, H + 0.5]
    assert validate_coco_file(*_write(tmp_path, coco)).ok
    coco["annotations"][0]["bbox"] = [-1.5, 0, 10, 10]
    report = validate_coco_file(*_write(tmp_path, coco))
    assert [p.code for p in report.problems] == ["bbox_outside_image"]

"""Ids and names a user's COCO file may get wrong: annotation id 0 (renumbered, so that AP is
the same as with any other id), duplicate category names (refused, naming both ids, unless one of
them has no annotations: Roboflow's placeholder category, left out), and every message about an
image naming its file."""

import contextlib
import copy
import io
import json

import numpy as np
import pycocotools.mask as mask_util
import pytest
import torch
from detectron2.config import get_cfg
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.structures import Boxes, Instances
from PIL import Image
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval
from segcontrast.config import add_segcontrast_config
from segcontrast.data import DatasetValidationError, validate_coco_file
from segcontrast.datasets import SegContrastDatasetMapper, register_coco_dataset, validate_dataset
from segcontrast.datasets.coco import unregister_coco_dataset
from segcontrast.engine.evaluator import SegContrastEvaluator
from segcontrast.engine.trainer import _coco_evaluator
from segcontrast.evaluation.report import overlays

H, W = 40, 48
# (image id, category id, y0, x0, y1, x1); category ids 7 and 3 (contiguous 1 and 0).
OBJECTS = [(1, 7, 4, 4, 20, 20), (1, 3, 8, 24, 30, 40), (2, 7, 10, 10, 30, 30),
           (2, 3, 2, 32, 12, 46)]


def _mask(y0, x0, y1, x1) -> np.ndarray:
    mask = np.zeros((H, W), np.uint8)
    mask[y0:y1, x0:x1] = 1
    return mask


def _rle(mask: np.ndarray) -> dict:
    encoded = mask_util.encode(np.asfortranarray(mask))
    return {"size": [H, W], "counts": encoded["counts"].decode("ascii")}


def _coco(first_id: int) -> dict:
    """Annotation ids first_id, 11, 12, 13: the first one is the one that varies."""
    annotations = []
    for i, (image_id, cid, y0, x0, y1, x1) in enumerate(OBJECTS):
        annotations.append({"id": first_id if i == 0 else 10 + i, "image_id": image_id,
                            "category_id": cid, "iscrowd": 0, "area": float((y1 - y0) * (x1 - x0)),
                            "bbox": [x0, y0, x1 - x0, y1 - y0],
                            "segmentation": _rle(_mask(y0, x0, y1, x1))})
    return {"images": [{"id": i, "file_name": f"img{i}.png", "height": H, "width": W}
                       for i in (1, 2)],
            "categories": [{"id": 7, "name": "square"}, {"id": 3, "name": "patch"}],
            "annotations": annotations}


@pytest.fixture
def folder(tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    rng = np.random.default_rng(0)
    for i in (1, 2):
        Image.fromarray((rng.random((H, W, 3)) * 255).astype(np.uint8)).save(images / f"img{i}.png")
    return tmp_path


@pytest.fixture
def registered():
    names = []

    def register(name, json_file, image_root):
        register_coco_dataset(name, json_file, image_root)
        names.append(name)
        return name

    yield register
    for name in names:
        unregister_coco_dataset(name)


# Predictions: every object found exactly (score 0.9), plus one false positive (score 0.3).
DETECTIONS = {1: [(1, 4, 4, 20, 20, 0.9), (0, 8, 24, 30, 40, 0.9), (0, 30, 2, 38, 10, 0.3)],
              2: [(1, 10, 10, 30, 30, 0.9), (0, 2, 32, 12, 46, 0.9)]}
CONTIGUOUS_TO_ID = {0: 3, 1: 7}


def _outputs(image_id: int) -> dict:
    dets = DETECTIONS[image_id]
    masks = torch.from_numpy(np.stack([_mask(*d[1:5]) for d in dets]).astype(bool))
    inst = Instances((H, W))
    inst.pred_masks = masks
    inst.pred_boxes = Boxes(torch.tensor([[d[2], d[1], d[4], d[3]] for d in dets],
                                         dtype=torch.float32))
    inst.scores = torch.tensor([d[5] for d in dets], dtype=torch.float32)
    inst.pred_classes = torch.tensor([d[0] for d in dets])
    return {"instances": inst}


def _pycocotools_ap(coco: dict, iou_type: str) -> float:
    """Mask or box AP from pycocotools itself, on a COCO dict as the user wrote it."""
    results = []
    for image_id, dets in DETECTIONS.items():
        for cls, y0, x0, y1, x1, score in dets:
            results.append({"image_id": image_id, "category_id": CONTIGUOUS_TO_ID[cls],
                            "score": score, "segmentation": _rle(_mask(y0, x0, y1, x1)),
                            "bbox": [x0, y0, x1 - x0, y1 - y0]})
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO()
        gt.dataset = copy.deepcopy(coco)
        gt.createIndex()
        evaluation = COCOeval(gt, gt.loadRes(results), iou_type)
        evaluation.evaluate()
        evaluation.accumulate()
        evaluation.summarize()
    return float(evaluation.stats[0]) * 100


def test_annotation_id_zero_is_renumbered_and_counted(folder, registered):
    (folder / "zero.json").write_text(json.dumps(_coco(first_id=0)))
    report = validate_coco_file(folder / "zero.json", folder / "images")
    assert report.ok and [p.code for p in report.changed] == ["annotation_id_zero"]
    assert report.changed[0].annotation_id == 0 and report.changed[0].image_id == 1
    assert "annotation id 0 becomes 14" in report.changed[0].message  # max id 13, plus one
    assert "1 changed item(s)" in report.format_summary()
    name = registered("id_zero_dataset", folder / "zero.json", folder / "images")
    validate_dataset(name)
    ids = [a["id"] for d in DatasetCatalog.get(name) for a in d["annotations"]]
    assert sorted(ids) == [11, 12, 13, 14]


def test_ap_with_an_annotation_id_zero_equals_ap_with_that_id_changed(folder, registered):
    zero, changed = _coco(first_id=0), _coco(first_id=99)
    reference = {t: _pycocotools_ap(changed, t) for t in ("segm", "bbox")}
    # What pycocotools itself makes of id 0: a correct detection that counts as a miss.
    assert _pycocotools_ap(zero, "segm") < reference["segm"] - 1
    (folder / "zero.json").write_text(json.dumps(zero))
    name = registered("id_zero_ap", folder / "zero.json", folder / "images")
    validate_dataset(name)

    ours = SegContrastEvaluator(name, None, distributed=False, score_threshold=0.0)
    detectron2 = _coco_evaluator(name, str(folder / "coco_eval"))
    for evaluator in (ours, detectron2):
        evaluator.reset()
        for image_id in (1, 2):
            evaluator.process([{"image_id": image_id, "file_name": f"img{image_id}.png"}],
                              [_outputs(image_id)])
    assert ours.evaluate()["segm"]["AP"] == pytest.approx(reference["segm"], abs=1e-9)
    with contextlib.redirect_stdout(io.StringIO()):
        theirs = detectron2.evaluate()
    assert theirs["segm"]["AP"] == pytest.approx(reference["segm"], abs=1e-9)
    assert theirs["bbox"]["AP"] == pytest.approx(reference["bbox"], abs=1e-9)


def test_duplicate_category_names_are_fatal_naming_both_ids(folder, registered):
    coco = _coco(first_id=10)
    coco["categories"][1]["name"] = "square"
    (folder / "dup.json").write_text(json.dumps(coco))
    report = validate_coco_file(folder / "dup.json", folder / "images")
    [problem] = report.fatal
    assert problem.code == "category_duplicate_name"
    assert "category name 'square' is used by category ids 3 and 7" in problem.message
    name = registered("dup_names", folder / "dup.json", folder / "images")
    with pytest.raises(DatasetValidationError, match="category ids 3 and 7"):
        validate_dataset(name)


def _roboflow(coco: dict) -> dict:
    """As Roboflow exports: a placeholder category 0 named like a real one, without
    annotations; a string info.year (the annotation id 0 comes from ``_coco(first_id=0)``)."""
    coco = copy.deepcopy(coco)
    coco["info"] = {"year": "2023", "version": "1", "description": "Exported from roboflow.com"}
    coco["categories"] = [{"id": 0, "name": "square", "supercategory": "none"},
                          *({**c, "supercategory": "none"} for c in coco["categories"])]
    return coco


def test_roboflow_placeholder_category_is_left_out_and_both_evaluators_score(folder, registered):
    coco = _roboflow(_coco(first_id=0))
    (folder / "roboflow.json").write_text(json.dumps(coco))
    report = validate_coco_file(folder / "roboflow.json", folder / "images")
    assert report.ok, report.format_summary()
    [dropped] = report.dropped
    assert dropped.code == "category_duplicate_name_unused"
    assert "category id 0 ('square') has no annotations and its name is that of category id 7" \
        in dropped.message
    assert list(report.left_out_categories) == [0]
    assert report.categories == [(3, "patch"), (7, "square")]
    name = registered("roboflow", folder / "roboflow.json", folder / "images")
    validate_dataset(name)
    meta = MetadataCatalog.get(name)
    assert meta.thing_classes == ["patch", "square"]
    assert meta.thing_dataset_id_to_contiguous_id == {3: 0, 7: 1}
    # pycocotools on the file with the placeholder left in (it has no ground truth and no
    # detection, so it takes no part) and annotation id 0 changed, as the loader changes it
    reference = _roboflow(_coco(first_id=99))
    expected = {t: _pycocotools_ap(reference, t) for t in ("segm", "bbox")}
    ours = SegContrastEvaluator(name, None, distributed=False)
    detectron2 = _coco_evaluator(name, str(folder / "coco_eval"))  # training's COCOEvaluator
    for evaluator in (ours, detectron2):
        evaluator.reset()
        for image_id in (1, 2):
            evaluator.process([{"image_id": image_id, "file_name": f"img{image_id}.png"}],
                              [_outputs(image_id)])
    mine = ours.evaluate()["segm"]
    assert mine["AP"] == pytest.approx(expected["segm"], abs=1e-9)
    assert sorted(k for k in mine if k.startswith("AP-")) == ["AP-patch", "AP-square"]
    with contextlib.redirect_stdout(io.StringIO()):
        theirs = detectron2.evaluate()
    assert theirs["segm"]["AP"] == pytest.approx(expected["segm"], abs=1e-9)
    assert theirs["bbox"]["AP"] == pytest.approx(expected["bbox"], abs=1e-9)


def test_a_placeholder_is_left_out_only_while_it_has_no_annotations(folder):
    coco = _roboflow(_coco(first_id=10))
    coco["annotations"][0]["category_id"] = 0  # now both 'square' categories are used
    (folder / "used.json").write_text(json.dumps(coco))
    report = validate_coco_file(folder / "used.json", folder / "images")
    [problem] = report.fatal
    assert problem.code == "category_duplicate_name"
    assert "category name 'square' is used by category ids 0 and 7, each with annotations" \
        in problem.message
    # neither has annotations: the one of the largest id stays
    coco = _roboflow(_coco(first_id=10))
    coco["annotations"] = [a for a in coco["annotations"] if a["category_id"] != 7]
    (folder / "unused.json").write_text(json.dumps(coco))
    report = validate_coco_file(folder / "unused.json", folder / "images")
    assert report.ok and list(report.left_out_categories) == [0]
    assert report.categories == [(3, "patch"), (7, "square")]


def test_messages_about_an_image_name_its_file(folder, tmp_path):
    coco = _coco(first_id=10)
    Image.fromarray(np.zeros((H, W + 2, 3), np.uint8)).save(folder / "images" / "img2.png")
    coco["annotations"][0]["bbox"] = [4, 4, -16, 16]
    (folder / "bad.json").write_text(json.dumps(coco))
    report = validate_coco_file(folder / "bad.json", folder / "images")
    lines = {p.code: p.format() for p in report.fatal}
    assert "image 2 ('img2.png'): image file is 50x40" in lines["image_size_mismatch"]
    assert "image 1 ('img1.png'), annotation 10:" in lines["bbox_negative"]

    cfg = get_cfg()
    add_segcontrast_config(cfg)
    record = {"file_name": str(folder / "images" / "img2.png"), "image_id": 2, "height": H,
              "width": W, "annotations": []}
    with pytest.raises(ValueError, match=r"img2\.png \(image 2\) is 50x40"):
        SegContrastDatasetMapper(cfg, False)(record)


def test_evaluator_errors_and_worst_image_titles_name_the_file(folder, registered, monkeypatch,
                                                              tmp_path):
    (folder / "ok.json").write_text(json.dumps(_coco(first_id=10)))
    name = registered("titles", folder / "ok.json", folder / "images")
    validate_dataset(name)
    file_name = str(folder / "images" / "img1.png")

    evaluator = SegContrastEvaluator(name, None, distributed=False, score_threshold=0.0)
    small = _outputs(1)
    small["instances"].pred_masks = small["instances"].pred_masks[:, :20, :20]
    with pytest.raises(ValueError, match=rf"image 1 \({file_name}\): pred_masks are 20x20"):
        evaluator.process([{"image_id": 1}], [small])

    titles = []
    monkeypatch.setattr(overlays, "plot_overlay", lambda *args: titles.append(args[-1]))
    evaluator = SegContrastEvaluator(name, str(tmp_path / "eval"), distributed=False,
                                     num_worst_images=2, score_threshold=0.0)
    for image_id in (1, 2):
        evaluator.process([{"image_id": image_id}], [_outputs(image_id)])
    evaluator.evaluate()
    assert sorted(t.split(":")[0] for t in titles) == ["img1.png (image 1)", "img2.png (image 2)"]

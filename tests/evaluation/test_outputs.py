"""What people and Detectron2 get: result format, files, plots, log report, errors."""

import csv
import json
import logging
import math
import os
from xml.etree import ElementTree

import numpy as np
import pytest
import torch
from detectron2.config import get_cfg
from detectron2.evaluation import print_csv_format
from detectron2.evaluation.testing import flatten_results_dict
from PIL import Image
from segcontrast import add_segcontrast_config
from segcontrast.engine.evaluator import SegContrastEvaluator, build_segcontrast_evaluator
from segcontrast.evaluation.catalog import ERROR_TYPES
from segcontrast.evaluation.metrics.semantic import paint_semantic_prediction

from tests.evaluation.helpers import box_mask, evaluate, image_dict, instances, register

from .synthetic import (
    register_synthetic_dataset,
    synthetic_dataset,
    synthetic_predictions,
)

GROUPS = ("semantic", "instance", "segm", "contrast", "panoptic", "accounting")


@pytest.fixture(scope="module")
def synthetic():
    dicts = synthetic_dataset(8, height=96, width=128, seed=5)
    register_synthetic_dataset("segcontrast_test_outputs", dicts, 10)
    return dicts, {d["image_id"]: synthetic_predictions(d, seed=5) for d in dicts}


def _run(tmp_path, synthetic, **kwargs):
    dicts, preds = synthetic
    kwargs.setdefault("score_threshold", 0.0)
    kwargs.setdefault("num_worst_images", 3)
    ev = SegContrastEvaluator("segcontrast_test_outputs", str(tmp_path), **kwargs)
    ev.reset()
    for d in dicts:
        ev.process(
            [{"image_id": d["image_id"], "file_name": d["file_name"]}],
            [{"instances": preds[d["image_id"]]}],
        )
    return ev.evaluate()


def test_results_are_floats_only_and_work_with_detectron2(tmp_path, synthetic, caplog):
    res = _run(tmp_path, synthetic)
    assert list(res) == list(GROUPS)
    for group in GROUPS:
        for key, value in res[group].items():
            assert type(value) is float, (group, key)
    # EvalHook: flatten_results_dict, then float() on every value
    flat = flatten_results_dict(res)
    assert all(isinstance(float(v), float) for v in flat.values())
    assert "segm/AP" in flat and "semantic/mIoU" in flat and "contrast/merged" in flat
    with caplog.at_level(logging.INFO):
        print_csv_format(res)
    assert "copypaste: Task: semantic" in caplog.text
    for key in ("mIoU", "mIoU_per_image", "fwIoU", "pixel_acc", "mean_acc", "mDice"):
        assert key in res["semantic"]
    for key in ("mIoU", "matched_mIoU", "precision", "recall", "F1", "boundary_IoU"):
        assert key in res["instance"]
    for key in ("AP", "AP50", "AP75", "APs", "APm", "APl", "AP-class0"):
        assert key in res["segm"]
    for key in ("matched", "false_positives", *ERROR_TYPES):
        assert key in res["contrast"]
    for key in ("PQ", "SQ", "RQ", "PQ_all", "SQ_all", "RQ_all", "PQ-class0", "PQ-background"):
        assert key in res["panoptic"]
    for key in ("semantic_mIoU", "instance_mIoU", "PQ", "AP", "count-merged",
                "delta_semantic_mIoU-merged", "delta_instance_mIoU-missed", "delta_PQ-split",
                "delta_AP-duplicate", "delta_AP-all"):
        assert key in res["accounting"]


def test_output_files(tmp_path, synthetic, caplog):
    with caplog.at_level(logging.INFO, logger="segcontrast"):
        res = _run(tmp_path, synthetic)
    names = sorted(os.listdir(tmp_path))
    assert {
        "metrics.json",
        "per_image.csv",
        "per_class_iou.svg",
        "confusion_matrix.svg",
        "error_types.svg",
        "worst_images",
    } <= set(names)
    assert not [n for n in names if n.startswith(".tmp-") or n.endswith(".png")]
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["segm"]["AP"] == pytest.approx(res["segm"]["AP"])
    assert set(metrics["details"]["absent_class_rules"]) == {
        "semantic_absent",
        "semantic_only_predicted",
        "instance_absent",
        "instance_only_predicted",
    }
    assert len(metrics["details"]["per_class"]) == 10
    assert metrics["settings"]["iou_threshold"] == 0.5
    with open(tmp_path / "per_image.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 8
    assert list(rows[0]) == ["image_id", "semantic_mIoU", "instance_mIoU", "n_gt", "n_crowd",
                             "n_pred", "matched", "false_positives", *ERROR_TYPES]
    for key in ("matched", "false_positives", *ERROR_TYPES):
        assert sum(int(r[key]) for r in rows) == res["contrast"][key], key
    overlays = sorted(os.listdir(tmp_path / "worst_images"))
    assert len(overlays) == 3
    with Image.open(tmp_path / "worst_images" / overlays[0]) as im:
        assert im.format == "PNG" and im.size[0] > 100
    for svg in ("per_class_iou.svg", "confusion_matrix.svg", "error_types.svg"):
        root = ElementTree.parse(tmp_path / svg).getroot()  # well-formed XML
        assert root.tag == "{http://www.w3.org/2000/svg}svg" and float(root.get("width")) > 100
    report = caplog.text
    # the order every report reads in: sentence, scores, error types, per class
    sentence = metrics["details"]["explanation"]
    order = [report.index(text) for text in (
        "SegContrast evaluation of", sentence, "Scores, semantic vs instance",
        "Error types", "Per class, semantic vs instance", "Panoptic quality")]
    assert order == sorted(order)
    for row in (*ERROR_TYPES, "all"):
        assert f"| {row} " in report
    rows = {r["error"]: r for r in metrics["details"]["accounting"]["rows"]}
    assert rows["all"]["delta_AP"] == pytest.approx(res["accounting"]["delta_AP-all"])
    assert len(metrics["details"]["panoptic_per_class"]) == 11


def _files(folder) -> dict:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file()}


def test_an_interrupt_while_writing_leaves_the_previous_set_complete(tmp_path, synthetic,
                                                                    monkeypatch):
    """Training's evaluation folder: an interrupt (Ctrl-C) while the overlays are drawn."""
    (tmp_path / "coco").mkdir()  # Detectron2's COCOEvaluator writes next to the evaluator
    (tmp_path / "coco" / "coco_instances_results.json").write_text("[]")
    _run(tmp_path, synthetic)
    before = _files(tmp_path)
    assert {"metrics.json", "report.html", "per_image.csv"} <= set(before)

    from segcontrast.evaluation.report import overlays

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(overlays, "plot_overlay", interrupted)
    with pytest.raises(KeyboardInterrupt):
        _run(tmp_path, synthetic, iou_threshold=0.75)
    assert _files(tmp_path) == before  # the previous set, every file as it was
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".segcontrast-")
                and p != ".segcontrast-output.json"]


def test_a_new_set_replaces_the_previous_one_and_leaves_other_files(tmp_path, synthetic):
    (tmp_path / "coco").mkdir()
    (tmp_path / "coco" / "coco_instances_results.json").write_text("[]")
    (tmp_path / "notes.txt").write_text("mine")
    with_accounting = _run(tmp_path, synthetic)
    assert "worst_images" in os.listdir(tmp_path)
    without = _run(tmp_path, synthetic, accounting=False, num_worst_images=0)
    assert not (tmp_path / "worst_images").exists()  # the previous set's, not this one's
    assert "accounting" not in json.loads((tmp_path / "metrics.json").read_text())
    # the error types' counts come from the assignment, computed with the accounting off too
    assert without["contrast"] == with_accounting["contrast"]
    assert sum(without["contrast"][t] for t in ERROR_TYPES) > 0
    page = (tmp_path / "report.html").read_text()
    assert "<h2>Error types" in page and "The gap accounting is off: counts only." in page
    assert "Error types: counts" in (tmp_path / "error_types.svg").read_text()
    assert (tmp_path / "notes.txt").read_text() == "mine"
    assert (tmp_path / "coco" / "coco_instances_results.json").read_text() == "[]"
    manifest = json.loads((tmp_path / ".segcontrast-output.json").read_text())
    assert manifest["tool"] == "SegContrastEvaluator"
    listed = {e.split("/")[0] for e in manifest["entries"]}
    assert listed == {"metrics.json", "per_image.csv", "per_class_iou.svg",
                      "confusion_matrix.svg", "error_types.svg", "report.html"}
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".segcontrast-")
                and p != ".segcontrast-output.json"]


def test_evaluate_on_zero_images_warns_and_returns_nothing(caplog):
    name = register([image_dict(1, [box_mask(8, 8, 0, 0, 4, 4)], [0])], ["a"])
    ev = SegContrastEvaluator(name, score_threshold=0.0)
    with caplog.at_level(logging.WARNING):
        res = ev.evaluate()
    assert res == {}
    assert "received no images" in caplog.text
    print_csv_format(res)


def test_sem_seg_output_gives_the_semantic_side():
    a = box_mask(20, 20, 0, 0, 10, 10)
    name = register([image_dict(1, [a], [0])], ["a"])
    logits = torch.zeros(2, 20, 20)
    logits[1, :5] = 1.0  # semantic head says rows 0-4 are class a: 50 of 100 right, 50 wrong
    res = evaluate(name, {1: {"instances": instances([a], [0], [0.9]), "sem_seg": logits}})
    assert res["semantic"]["IoU-a"] == pytest.approx(100 * 50 / 150)
    assert res["instance"]["mIoU"] == 100.0
    with pytest.raises(ValueError, match="sem_seg"):
        evaluate(name, {1: {"sem_seg": torch.zeros(3, 20, 20)}})


def test_clear_errors():
    a = box_mask(20, 20, 0, 0, 10, 10)
    name = register([image_dict(1, [a], [0])], ["a"])
    ev = SegContrastEvaluator(name, score_threshold=0.0)
    with pytest.raises(KeyError, match="image_id 7"):
        ev.process([{"image_id": 7}], [{"instances": instances([a], [0], [0.9])}])
    with pytest.raises(ValueError, match="original image size"):
        ev.process([{"image_id": 1}], [{"instances": instances([a[:10]], [0], [0.9])}])
    with pytest.raises(ValueError, match="iou_threshold"):
        SegContrastEvaluator(name, iou_threshold=0)


def test_paint_semantic_prediction_highest_score_wins():
    low = box_mask(10, 10, 0, 0, 6, 6)
    high = box_mask(10, 10, 3, 3, 9, 9)
    inst = instances([high, low], [1, 0], [0.9, 0.2])
    labels = paint_semantic_prediction(inst, (10, 10), 0.5)
    assert labels.dtype == np.uint8 and labels.shape == (10, 10)
    assert labels[4, 4] == 2 and labels[0, 0] == 1 and labels[9, 0] == 0
    soft = instances([low], [0], [0.5])
    soft.pred_masks = soft.pred_masks.float() * 0.6
    assert paint_semantic_prediction(soft, (10, 10), 0.7).max() == 0
    assert paint_semantic_prediction(soft, (10, 10), 0.5).sum() == 36


def test_build_from_config(tmp_path):
    name = register([image_dict(1, [box_mask(8, 8, 0, 0, 4, 4)], [0])], ["a"])
    cfg = get_cfg()
    add_segcontrast_config(cfg)
    cfg.TEST.SEGCONTRAST.IOU_THRESHOLD = 0.7
    cfg.TEST.SEGCONTRAST.BOUNDARY_IOU = False
    cfg.TEST.SEGCONTRAST.ACCOUNTING = False
    cfg.TEST.SEGCONTRAST.PANOPTIC_OVERLAP_THRESHOLD = 0.25
    cfg.TEST.SEGCONTRAST.PANOPTIC_OUTPUT_DIR = str(tmp_path / "panoptic")
    ev = build_segcontrast_evaluator(cfg, name, str(tmp_path))
    pred = box_mask(8, 8, 0, 0, 4, 4)
    pred[0:4, 3] = False
    pred[0:2, 2] = False  # IoU 10 / 16 with the ground truth: a match at 0.5, not at 0.7
    ev.process([{"image_id": 1}], [{"instances": instances([pred], [0], [0.9])}])
    res = ev.evaluate()
    assert res["contrast"]["matched"] == 0
    assert "boundary_IoU" not in res["instance"]
    assert not math.isnan(res["semantic"]["mIoU"])
    assert (tmp_path / "metrics.json").is_file()
    assert "accounting" not in res and "panoptic" in res
    settings = json.loads((tmp_path / "metrics.json").read_text())["settings"]
    assert settings["panoptic_overlap_threshold"] == 0.25 and settings["accounting"] is False
    assert (tmp_path / "panoptic" / name / "panoptic_gt.json").is_file()
    assert (tmp_path / "panoptic" / name / "panoptic_pred" / "1.png").is_file()

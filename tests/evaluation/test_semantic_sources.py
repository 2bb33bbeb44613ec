"""Two semantic columns: a model's own semantic labels next to its painted instances, and a
semantic model with no instances at all. References: a plain numpy confusion matrix and the
evaluator run on the instances alone."""

import json
import math

import numpy as np
import pytest
import torch
from segcontrast.data.semantic_gt import IGNORE_LABEL, semantic_gt_from_record
from segcontrast.engine.evaluator import SegContrastEvaluator
from segcontrast.evaluation.records import EvalState
from segcontrast.evaluation.summary import summarize

from tests.evaluation.helpers import evaluate, random_scene, register

K = 3


def _scenes(seed=0, n=6, height=40, width=48):
    rng = np.random.default_rng(seed)
    dicts, preds, logits = [], {}, {}
    for image_id in range(1, n + 1):
        record, pred = random_scene(rng, height, width, K, image_id, first_id=100 * image_id)
        dicts.append(record)
        preds[image_id] = pred
        # A semantic model's logits: noisy around the GT labels.
        labels = semantic_gt_from_record(record, K).astype(np.int64)
        labels[labels == IGNORE_LABEL] = 0
        noise = rng.normal(0, 1.0, (K + 1, height, width))
        noise[labels, np.arange(height)[:, None], np.arange(width)[None, :]] += 1.5
        logits[image_id] = torch.as_tensor(noise, dtype=torch.float32)
    return dicts, preds, logits


def _numpy_miou(dicts, logits):
    conf = np.zeros((K + 1, K + 1), np.int64)
    for record in dicts:
        gt = semantic_gt_from_record(record, K).astype(np.int64)
        pred = logits[record["image_id"]].argmax(0).numpy()
        valid = gt != IGNORE_LABEL
        np.add.at(conf, (gt[valid], pred[valid]), 1)
    tp = np.diag(conf).astype(float)
    union = conf.sum(0) + conf.sum(1) - tp
    iou = np.where(union > 0, tp / np.maximum(union, 1), np.nan)
    return 100 * np.nanmean(iou[1:]), 100 * iou


def test_semantic_head_and_painted_instances_side_by_side(tmp_path):
    dicts, preds, logits = _scenes()
    name = register(dicts, ["a", "b", "c"])
    both = evaluate(name, {i: {"instances": preds[i], "sem_seg": logits[i]} for i in preds},
                    str(tmp_path))
    alone = evaluate(name, preds)
    miou, iou = _numpy_miou(dicts, logits)
    assert both["semantic"]["mIoU"] == pytest.approx(miou, abs=1e-9)
    for k, cls in enumerate("abc"):
        assert both["semantic"][f"IoU-{cls}"] == pytest.approx(iou[k + 1], abs=1e-9, nan_ok=True)
    # The painted instances and the instance side are exactly what instances alone give.
    assert both["semantic_from_instances"] == alone["semantic"]
    for group in ("instance", "segm", "contrast"):
        assert both[group] == alone[group]
    assert "semantic_from_instances" not in alone
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["semantic_from_instances"]["mIoU"] == pytest.approx(
        alone["semantic"]["mIoU"])
    assert "from the semantic head" in metrics["details"]["explanation"]
    header = (tmp_path / "per_image.csv").read_text().splitlines()[0].split(",")
    assert header[1:3] == ["semantic_mIoU", "semantic_mIoU_from_instances"]


def test_semantic_model_gets_the_semantic_group_only(tmp_path, caplog):
    dicts, _, logits = _scenes(seed=1)
    name = register(dicts, ["a", "b", "c"])
    with caplog.at_level("INFO", logger="segcontrast"):
        res = evaluate(name, {i: {"sem_seg": logits[i]} for i in logits}, str(tmp_path))
    assert list(res) == ["semantic"]
    assert res["semantic"]["mIoU"] == pytest.approx(_numpy_miou(dicts, logits)[0], abs=1e-9)
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert "need instance predictions" in metrics["details"]["explanation"]
    assert (tmp_path / "per_class_iou.svg").stat().st_size > 0
    assert not (tmp_path / "error_types.svg").exists()  # no instances: no error types
    assert not list(tmp_path.glob("worst_*.png"))
    report = caplog.text
    assert "instance IoU" not in report and "need instance predictions" in report


def test_merging_processes_equals_one_process_with_both_sources():
    dicts, preds, logits = _scenes(seed=2, n=7)
    name = register(dicts, ["a", "b", "c"])
    outputs = {i: {"instances": preds[i], "sem_seg": logits[i]} for i in preds}
    states = []
    for part in (list(outputs)[:3], list(outputs)[3:]):
        evaluator = SegContrastEvaluator(name, None, distributed=False, score_threshold=0.0)
        for image_id in reversed(part):
            evaluator.process([{"image_id": image_id}], [outputs[image_id]])
        states.append(evaluator.state)
    merged = summarize(EvalState.merge(states[::-1]), ["a", "b", "c"]).results
    single = evaluate(name, outputs)
    assert json.dumps(merged, default=str) == json.dumps(single, default=str)
    assert not math.isnan(merged["semantic_from_instances"]["mIoU"])

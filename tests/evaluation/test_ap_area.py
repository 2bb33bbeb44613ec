"""Mask AP's small / medium / large: a prediction's area is its mask area, as Detectron2's
COCOEvaluator has pycocotools take it (it removes each result's box before ``loadRes``), unless
``ap_area="box"`` asks for pycocotools' raw rule on results with boxes.

The reference here is Detectron2's ``COCOEvaluator`` itself, run on the very same ``Instances``
(with ``pred_boxes``) as SegContrast's evaluator."""

import contextlib
import html
import io
import json
import math

import cv2
import numpy as np
import pytest
from detectron2.evaluation import COCOEvaluator
from segcontrast.engine.evaluator import SegContrastEvaluator

from tests.evaluation.helpers import coco_reference, image_dict, instances, register

K = 2
H, W = 128, 160
KEYS = ("AP", "AP50", "AP75", "APs", "APm", "APl")


def _disk(cx: float, cy: float, r: int) -> np.ndarray:
    mask = np.zeros((H, W), np.uint8)
    cv2.circle(mask, (int(cx), int(cy)), int(r), 1, -1)
    return mask.astype(bool)


def _scenes(seed: int, n_images: int = 6):
    """Disks whose box and mask areas fall into different COCO ranges.

    A disk of radius 17 covers ~908 pixels (small, < 32^2) in a 35x35 box (1225: medium); one
    of radius 50 covers ~7850 (medium) in a 101x101 box (10201: large, > 96^2). Unmatched
    predictions of such radii are ignored for one rule's range and not for the other's.
    """
    rng = np.random.default_rng(seed)
    dicts, preds, next_id = [], {}, 1
    for i in range(n_images):
        gt_masks, gt_classes = [], []
        for _ in range(int(rng.integers(2, 6))):
            r = int(rng.choice([6, 12, 17, 18, 30, 50, 52]))
            gt_masks.append(_disk(rng.uniform(r, W - r), rng.uniform(r, H - r), r))
            gt_classes.append(int(rng.integers(0, K)))
        crowd = [int(rng.random() < 0.1) for _ in gt_masks]
        record = image_dict(10 * i + 3, gt_masks, gt_classes, crowd, first_id=next_id)
        next_id += len(gt_masks)
        masks, classes, scores = [], [], []
        for m, c in zip(gt_masks, gt_classes, strict=True):
            if rng.random() < 0.8:  # found, a little off
                masks.append(np.roll(m, int(rng.integers(-3, 4)), axis=int(rng.integers(0, 2))))
                classes.append(c if rng.random() < 0.9 else int(rng.integers(0, K)))
                scores.append(float(rng.uniform(0.3, 1.0)))
        for _ in range(int(rng.integers(2, 6))):  # false positives near the range bounds
            r = int(rng.choice([16, 17, 18, 49, 50, 52]))
            masks.append(_disk(rng.uniform(r, W - r), rng.uniform(r, H - r), r))
            classes.append(int(rng.integers(0, K)))
            scores.append(float(rng.uniform(0.05, 0.9)))
        if i == 1:  # an empty mask: area 0 for pycocotools (its box is [0, 0, 0, 0])
            masks.append(np.zeros((H, W), bool))
            classes.append(0)
            scores.append(0.6)
        dicts.append(record)
        preds[record["image_id"]] = instances(masks, classes, scores)  # with pred_boxes
    return dicts, preds


def _run(evaluator, dicts, preds) -> dict:
    evaluator.reset()
    for d in dicts:
        evaluator.process([{"image_id": d["image_id"], "height": H, "width": W}],
                          [{"instances": preds[d["image_id"]]}])
    with contextlib.redirect_stdout(io.StringIO()):
        return evaluator.evaluate()


def _equal(a: float, b: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or abs(a - b) <= 1e-9


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_every_ap_equals_detectron2s_coco_evaluator_on_the_same_predictions(tmp_path, seed):
    dicts, preds = _scenes(seed)
    name = register(dicts, [f"c{k}" for k in range(K)])
    theirs = _run(COCOEvaluator(name, tasks=("segm",), distributed=False,
                                output_dir=str(tmp_path / "coco"), use_fast_impl=False),
                  dicts, preds)["segm"]
    ours = _run(SegContrastEvaluator(name, str(tmp_path / "ours"), distributed=False,
                                     num_worst_images=0), dicts, preds)["segm"]
    for key in (*KEYS, *(f"AP-c{k}" for k in range(K))):
        assert _equal(ours[key], float(theirs[key])), (key, ours[key], theirs[key])
    # pycocotools' raw rule (the boxes kept in the results) is another number on these scenes,
    # and ap_area="box" gives exactly that one
    raw, _, _ = coco_reference(dicts, preds, K, ap_area="box")
    assert any(not _equal(raw[k], float(theirs[k])) for k in ("APs", "APm", "APl"))
    boxed = _run(SegContrastEvaluator(name, None, distributed=False, ap_area="box"),
                 dicts, preds)["segm"]
    for key in KEYS:
        assert _equal(boxed[key], raw[key]), key
    metrics = json.loads((tmp_path / "ours" / "metrics.json").read_text())
    assert metrics["settings"]["ap_area"] == "mask"
    assert "take each prediction's mask area, as Detectron2's COCOEvaluator" in html.unescape(
        (tmp_path / "ours" / "report.html").read_text())


def test_the_area_rule_is_logged_and_checked(caplog):
    dicts, preds = _scenes(0, n_images=1)
    name = register(dicts, [f"c{k}" for k in range(K)])
    with caplog.at_level("INFO", logger="segcontrast"):
        _run(SegContrastEvaluator(name, None, distributed=False, ap_area="box"), dicts, preds)
    assert "take each prediction's box area w * h where it has a box" in caplog.text
    with pytest.raises(ValueError, match="ap_area"):
        SegContrastEvaluator(name, None, distributed=False, ap_area="bbox")

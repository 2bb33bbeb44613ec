"""PQ, SQ, RQ against panopticapi on the exported COCO panoptic files; the non-overlap rules
against a plain per-pixel implementation (ground truth) and Detectron2's own
``combine_semantic_and_instance_outputs`` (predictions)."""

import contextlib
import io
import json
import math

import numpy as np
import pytest
import torch
from detectron2.modeling.meta_arch.panoptic_fpn import combine_semantic_and_instance_outputs
from panopticapi.evaluation import pq_compute, pq_compute_single_core
from panopticapi.utils import rgb2id
from PIL import Image
from segcontrast.engine.evaluator import SegContrastEvaluator

from tests.evaluation.helpers import (
    box_mask,
    evaluate,
    image_dict,
    instances,
    random_dataset,
    register,
)

K = 3
NAMES = [f"c{k}" for k in range(K)]


def _dataset(seed, n_images=6, height=24, width=30, num_classes=K):
    return random_dataset(seed, n_images, num_classes, height, width)


def _read_ids(path):
    return rgb2id(np.array(Image.open(path), dtype=np.uint32))


def _panopticapi(folder):
    """panopticapi's own statistics of the exported files (its single-core worker, quietly)."""
    gt_json = json.loads((folder / "panoptic_gt.json").read_text())
    pred_json = json.loads((folder / "panoptic_pred.json").read_text())
    categories = {c["id"]: c for c in gt_json["categories"]}
    preds = {a["image_id"]: a for a in pred_json["annotations"]}
    pairs = [(a, preds[a["image_id"]]) for a in gt_json["annotations"]]
    with contextlib.redirect_stdout(io.StringIO()):
        stat = pq_compute_single_core(0, pairs, str(folder / "panoptic_gt"),
                                      str(folder / "panoptic_pred"), categories)
    return stat, categories


def _close(ours, theirs, tol=1e-9):
    return abs(ours - theirs) <= tol


def test_pq_sq_rq_equal_panopticapi_on_random_data(tmp_path):
    checked = classes_without_gt = crowd = empty = 0
    names = [*NAMES, "never"]  # a class with neither objects nor predictions
    for seed in range(12):
        dicts, preds = _dataset(seed)
        if seed % 2:  # the last class only predicted: its objects become class 0
            for d in dicts:
                for a in d["annotations"]:
                    a["category_id"] = 0 if a["category_id"] == K - 1 else a["category_id"]
        out = tmp_path / str(seed)
        res = evaluate(register(dicts, names), preds, panoptic_output_dir=str(out))["panoptic"]
        stat, categories = _panopticapi(out)
        background = max(categories)
        things, per_class = stat.pq_average(categories, isthing=True)
        everything, _ = stat.pq_average(categories, isthing=None)
        for key, theirs in (("PQ", things["pq"]), ("SQ", things["sq"]), ("RQ", things["rq"])):
            assert _close(res[key], 100 * theirs), (seed, key)
        for key, theirs in (("PQ_all", everything["pq"]), ("SQ_all", everything["sq"]),
                            ("RQ_all", everything["rq"])):
            assert _close(res[key], 100 * theirs), (seed, key)
        for k, name in enumerate(names):
            cat = stat[k + 1]
            if cat.tp + cat.fp + cat.fn == 0:  # panopticapi: 0 and left out of the mean
                assert math.isnan(res[f"PQ-{name}"])
                continue
            assert _close(res[f"PQ-{name}"], 100 * per_class[k + 1]["pq"]), (seed, name)
            assert (res["TP"], res["FP"], res["FN"]) == tuple(
                float(sum(getattr(stat[c], f) for c in range(1, K + 2))) for f in ("tp", "fp",
                                                                                    "fn"))
        bg = stat[background]
        assert _close(res["PQ-background"], 100 * bg.iou / (bg.tp + 0.5 * (bg.fp + bg.fn)))
        rows = json.loads((out / "panoptic_gt.json").read_text())["annotations"]
        crowd += sum(s["iscrowd"] for r in rows for s in r["segments_info"])
        empty += sum(len(d["annotations"]) == 0 for d in dicts)
        classes_without_gt += sum(stat[k + 1].tp + stat[k + 1].fn == 0 for k in range(K))
        assert math.isnan(res["PQ-never"])
        checked += 1
    # the data had what the comparison is about
    assert checked == 12 and crowd > 0 and empty > 0 and classes_without_gt > 0


def test_the_exported_files_work_with_pq_compute_itself(tmp_path):
    dicts, preds = _dataset(3)
    res = evaluate(register(dicts, NAMES), preds, panoptic_output_dir=str(tmp_path))["panoptic"]
    with contextlib.redirect_stdout(io.StringIO()):
        theirs = pq_compute(str(tmp_path / "panoptic_gt.json"),
                            str(tmp_path / "panoptic_pred.json"))
    assert _close(res["PQ"], 100 * theirs["Things"]["pq"])
    assert _close(res["PQ_all"], 100 * theirs["All"]["pq"])
    assert _close(res["PQ-background"], 100 * theirs["Stuff"]["pq"])
    assert not list(tmp_path.rglob(".*.tmp"))


def _reference_gt_ids(record, height, width):
    """The ground-truth rule written per pixel (ids as the export numbers them)."""
    anns = record["annotations"]
    masks = [_decode(a) for a in anns]
    regular = [i for i, a in enumerate(anns) if not a["iscrowd"]]
    crowd_classes = sorted({a["category_id"] for a, m in zip(anns, masks, strict=True)
                            if a["iscrowd"] and m.any()})
    ids = np.ones((height, width), np.int64)  # background
    count = np.zeros((height, width), np.int64)
    for r, i in enumerate(regular):
        count += masks[i]
        ids[masks[i]] = r + 2
    ids[count >= 2] = 0  # VOID
    crowd_cover = np.zeros((len(crowd_classes), height, width), bool)
    for i, a in enumerate(anns):
        if a["iscrowd"]:
            crowd_cover[crowd_classes.index(a["category_id"])] |= masks[i]
    free = count == 0
    per_pixel = crowd_cover.sum(axis=0)
    for c in range(len(crowd_classes)):
        ids[free & crowd_cover[c] & (per_pixel == 1)] = len(regular) + 2 + c
    ids[free & (per_pixel >= 2)] = 0
    return ids


def _decode(annotation):
    import pycocotools.mask as mask_util

    return mask_util.decode(annotation["segmentation"]).astype(bool)


def test_ground_truth_segments_follow_the_rule(tmp_path):
    for seed in range(8):
        dicts, preds = _dataset(40 + seed)
        out = tmp_path / str(seed)
        evaluate(register(dicts, NAMES), preds, panoptic_output_dir=str(out))
        gt_json = json.loads((out / "panoptic_gt.json").read_text())
        for d, ann in zip(dicts, gt_json["annotations"], strict=True):
            assert ann["image_id"] == d["image_id"]
            ids = _read_ids(out / "panoptic_gt" / ann["file_name"])
            expected = _reference_gt_ids(d, d["height"], d["width"])
            assert np.array_equal(ids, expected), (seed, d["image_id"])
            info = {s["id"]: s for s in ann["segments_info"]}
            present = set(np.unique(ids).tolist()) - {0}
            assert set(info) == present
            for seg_id, s in info.items():
                assert s["area"] == np.count_nonzero(ids == seg_id)
            assert info[1]["category_id"] == K + 1 and info[1]["iscrowd"] == 0


def test_prediction_segments_equal_detectron2s_combination(tmp_path):
    rng = np.random.default_rng(5)
    checked = 0
    for seed in range(10):
        dicts, preds = _dataset(70 + seed)
        for inst in preds.values():  # distinct scores: torch's argsort is not stable
            inst.scores = torch.tensor(rng.permutation(len(inst)) / (len(inst) + 1.0) + 0.01,
                                       dtype=torch.float32)
        out = tmp_path / str(seed)
        evaluate(register(dicts, NAMES), preds, panoptic_output_dir=str(out),
                 score_threshold=0.3, panoptic_overlap_threshold=0.5)
        pred_json = json.loads((out / "panoptic_pred.json").read_text())
        for d, ann in zip(dicts, pred_json["annotations"], strict=True):
            inst = preds[d["image_id"]]
            h, w = d["height"], d["width"]
            seg, info = combine_semantic_and_instance_outputs(
                inst, torch.zeros((h, w), dtype=torch.long), 0.5, h * w + 1, 0.3)
            theirs = sorted((int(s["category_id"]) + 1,
                             tuple(np.flatnonzero(seg.numpy().ravel() == s["id"])))
                            for s in info)
            ids = _read_ids(out / "panoptic_pred" / ann["file_name"])
            category = {s["id"]: s["category_id"] for s in ann["segments_info"]}
            ours = sorted((category[i], tuple(np.flatnonzero(ids.ravel() == i)))
                          for i in category if category[i] != K + 1)
            assert ours == theirs, (seed, d["image_id"])
            assert np.array_equal(ids == 1, seg.numpy() == 0)  # the background segment
            checked += 1
    assert checked == 60


def test_known_answers_and_rules(tmp_path):
    h, w = 20, 40
    a = box_mask(h, w, 0, 0, 10, 10)
    b = box_mask(h, w, 0, 8, 10, 18)  # overlaps a by 20 pixels: VOID
    crowd = box_mask(h, w, 12, 20, 20, 40)
    record = image_dict(1, [a, b, crowd], [0, 0, 1], [0, 0, 1])
    name = register([record], ["x", "y"])
    pred_a = box_mask(h, w, 0, 0, 10, 9)  # IoU with a, VOID out of the union: 90 / 100
    in_crowd = box_mask(h, w, 12, 25, 20, 30)  # of crowd's class y: not a false positive
    on_background = box_mask(h, w, 12, 0, 14, 5)  # a false positive of class x
    res = evaluate(name, {1: instances([pred_a, in_crowd, on_background], [0, 1, 0],
                                       [0.9, 0.8, 0.7])})["panoptic"]
    # x: a matched (IoU = 80 / (90 + 80 - 80 - 10) = 1.0 of its VOID-free part), b missed,
    # one false positive: PQ_x = 1 / (1 + 0.5 + 0.5)
    assert res["TP"] == 1 and res["FN"] == 1 and res["FP"] == 1
    segment_a = 80  # a's pixels not shared with b
    iou_a = segment_a / (90 + segment_a - segment_a - 10)
    assert res["PQ-x"] == pytest.approx(100 * iou_a / 2.0, abs=1e-12)
    assert math.isnan(res["PQ-y"])  # only a crowd segment and an ignored prediction
    assert res["PQ"] == res["PQ-x"]


def test_groups_are_on_by_default_and_can_be_turned_off(tmp_path):
    dicts, preds = _dataset(2)
    name = register(dicts, NAMES)
    assert {"panoptic", "accounting"} <= set(evaluate(name, preds))
    off = evaluate(name, preds, panoptic=False, accounting=False)
    assert list(off) == ["semantic", "instance", "segm", "contrast"]
    only = evaluate(name, preds, accounting=False)
    assert "panoptic" in only and "accounting" not in only
    no_pq = evaluate(name, preds, panoptic=False)
    assert "panoptic" not in no_pq and "delta_PQ-all" not in no_pq["accounting"]
    with pytest.raises(ValueError, match="panoptic"):
        SegContrastEvaluator(name, panoptic=False, panoptic_output_dir=str(tmp_path))


def test_a_semantic_model_gets_neither_group():
    dicts, _ = _dataset(4, n_images=2)
    name = register(dicts, NAMES)
    outputs = {d["image_id"]: {"sem_seg": torch.zeros(K + 1, d["height"], d["width"])}
               for d in dicts}
    res = evaluate(name, outputs)
    assert "panoptic" not in res and "accounting" not in res


def test_with_a_semantic_head_too_the_groups_are_about_the_instances():
    dicts, preds = _dataset(6, n_images=3)
    name = register(dicts, NAMES)
    both = {i: {"instances": p, "sem_seg": torch.zeros(K + 1, p.image_size[0], p.image_size[1])}
            for i, p in preds.items()}
    res_both, res_inst = evaluate(name, both), evaluate(name, preds)
    assert res_both["panoptic"] == res_inst["panoptic"]
    assert res_both["accounting"]["semantic_mIoU"] == res_both["semantic_from_instances"]["mIoU"]
    assert res_both["accounting"] == res_inst["accounting"]


def test_an_image_without_predictions_or_ground_truth():
    h, w = 8, 8
    empty = {"file_name": "", "height": h, "width": w, "image_id": 1, "annotations": []}
    name = register([empty], NAMES)
    res = evaluate(name, {1: instances([], [], [], height=h, width=w)})["panoptic"]
    # only the background segment, matched to itself: things undefined, background 100
    assert math.isnan(res["PQ"]) and res["PQ_all"] == 100.0 and res["PQ-background"] == 100.0


def test_config_keys_and_their_checks():
    from detectron2.config import get_cfg
    from segcontrast import add_segcontrast_config
    from segcontrast.config import ConfigValueError, validate_segcontrast_config

    cfg = get_cfg()
    add_segcontrast_config(cfg)
    sc = cfg.TEST.SEGCONTRAST
    assert (sc.PANOPTIC, sc.ACCOUNTING, sc.PANOPTIC_OVERLAP_THRESHOLD,
            sc.PANOPTIC_OUTPUT_DIR) == (True, True, 0.5, "")
    validate_segcontrast_config(cfg)
    sc.PANOPTIC_OVERLAP_THRESHOLD = 1.5
    with pytest.raises(ConfigValueError, match="PANOPTIC_OVERLAP_THRESHOLD = 1.5"):
        validate_segcontrast_config(cfg)
    sc.PANOPTIC_OVERLAP_THRESHOLD = 0.5
    sc.PANOPTIC, sc.PANOPTIC_OUTPUT_DIR = False, "out/panoptic"
    with pytest.raises(ConfigValueError, match="PANOPTIC_OUTPUT_DIR is set but"):
        validate_segcontrast_config(cfg)

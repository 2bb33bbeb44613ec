"""The evaluator against independent references: pycocotools' COCOeval and mask.iou, and a
plain numpy semantic computation."""

import itertools
import math

import numpy as np
import pycocotools.mask as mask_util
import pytest
from segcontrast.data.masks import GroundTruth, pairwise_intersections
from segcontrast.engine.evaluator import SegContrastEvaluator, predictions_from_output
from segcontrast.evaluation.metrics.instance import iou_matrix
from segcontrast.evaluation.settings import EvalSettings

from tests.evaluation.helpers import (
    coco_reference,
    evaluate,
    image_dict,
    instances,
    random_scene,
    register,
    same,
)

from .synthetic import (
    register_synthetic_dataset,
    synthetic_dataset,
    synthetic_predictions,
)

K = 3


def _random_dataset(seed, *, boxes=True, n_images=6, height=30, width=40):
    rng = np.random.default_rng(seed)
    dicts, preds = [], {}
    next_id = int(rng.integers(0, 2))  # an annotation id 0 sometimes (a pycocotools quirk)
    for i in rng.permutation(n_images):
        image_id = int(i) * 7 + 3
        record, pred = random_scene(rng, height, width, K, image_id, first_id=next_id)
        next_id += len(record["annotations"])
        if not boxes:
            pred.remove("pred_boxes")
        dicts.append(record)
        preds[image_id] = pred
    return dicts, preds


@pytest.mark.parametrize("boxes,ap_area", [(True, "mask"), (False, "mask"), (True, "box"),
                                           (False, "box")])
def test_mask_ap_equals_cocoeval_on_random_data(boxes, ap_area):
    checked = 0
    for seed in range(25):
        dicts, preds = _random_dataset(seed, boxes=boxes)
        ref = coco_reference(dicts, preds, K, ap_area)
        if ref is None:
            continue
        stats, per_class, _ = ref
        res = evaluate(register(dicts, [f"c{k}" for k in range(K)]), preds,
                       ap_area=ap_area)["segm"]
        for key, value in stats.items():
            assert same(res[key], value), (seed, key, res[key], value)
        for k in range(K):
            assert same(res[f"AP-c{k}"], per_class[k]), (seed, k)
        checked += 1
    assert checked >= 20


def test_mask_ap_equals_cocoeval_on_the_synthetic_workload():
    dicts = synthetic_dataset(12, height=120, width=160, seed=3)
    register_synthetic_dataset("segcontrast_test_synthetic_ap", dicts, 10)
    preds = {d["image_id"]: synthetic_predictions(d, seed=3) for d in dicts}
    stats, per_class, _ = coco_reference(dicts, preds, 10)
    res = evaluate("segcontrast_test_synthetic_ap", preds)["segm"]
    for key, value in stats.items():
        assert same(res[key], value), key
    for k in range(10):
        assert same(res[f"AP-class{k}"], per_class[k])


def _best_matching(iou, threshold):
    """Brute force: the largest total IoU of a one-to-one matching of pairs >= threshold."""
    if iou.shape[0] > iou.shape[1]:
        iou = iou.T
    n, m = iou.shape
    return max(
        sum(iou[i, j] for i, j in enumerate(perm) if iou[i, j] >= threshold)
        for perm in itertools.permutations(range(m), n)
    )


def test_instance_ious_equal_pycocotools_mask_iou_and_matching_is_optimal():
    for seed in range(15):
        dicts, preds = _random_dataset(100 + seed, n_images=3)
        name = register(dicts, [f"c{k}" for k in range(K)])
        ev = SegContrastEvaluator(name, distributed=False, score_threshold=0.0)
        for d in dicts:
            ev.process([{"image_id": d["image_id"]}], [{"instances": preds[d["image_id"]]}])
        records = {r.image_id: r for r in ev.state.images}
        for d in dicts:
            inst = preds[d["image_id"]]
            gt = GroundTruth.from_dataset_dict(d, K)
            pred = predictions_from_output({"instances": inst}, d["height"], d["width"],
                                           EvalSettings(), K)
            ours = iou_matrix(
                pairwise_intersections(pred.masks, gt.masks),
                pred.masks.areas,
                gt.masks.areas,
                gt.crowd,
            )
            dt = [
                mask_util.encode(np.asfortranarray(m.numpy().astype(np.uint8)))
                for m in inst.pred_masks
            ]
            gts = [a["segmentation"] for a in d["annotations"]]
            if dt and gts:
                ref = np.asarray(mask_util.iou(dt, gts, [a["iscrowd"] for a in d["annotations"]]))
                assert np.array_equal(ours, ref.reshape(ours.shape))
            # matched IoUs: every value is a pycocotools IoU of a same-class pair, and the
            # per-class totals equal the brute-force optimum
            record = records[d["image_id"]]
            regular = np.flatnonzero(~gt.crowd)
            for c in range(K):
                gi = regular[gt.classes[regular] == c]
                pi = np.flatnonzero(pred.classes == c)
                got = record.gt_iou[record.gt_classes == c]
                if len(gi) and len(pi):
                    sub = ours[np.ix_(pi, gi)]
                    assert all(v == 0 or v in sub for v in got)
                    assert math.isclose(got.sum(), _best_matching(sub, 0.5), abs_tol=1e-12)
                else:
                    assert not got.any()


def _numpy_semantic(dicts, preds, num_classes):
    """Independent semantic reference: full-image painting and a 2-D histogram."""
    conf = np.zeros((num_classes + 1, num_classes + 1), np.int64)
    for d in dicts:
        h, w = d["height"], d["width"]
        votes = np.zeros((num_classes, h, w), bool)
        crowd = np.zeros((h, w), bool)
        for a in d["annotations"]:
            m = mask_util.decode(a["segmentation"]).astype(bool)
            if a["iscrowd"]:
                crowd |= m
            else:
                votes[a["category_id"]] |= m
        n_votes = votes.sum(0)
        gt = np.where(n_votes == 1, votes.argmax(0) + 1, 0)
        gt[n_votes > 1] = 255
        gt[(n_votes == 0) & crowd] = 255
        inst = preds[d["image_id"]]
        pred = np.zeros((h, w), np.int64)
        order = np.argsort(inst.scores.numpy(), kind="stable")
        for i in order:
            pred[inst.pred_masks[i].numpy()] = int(inst.pred_classes[i]) + 1
        valid = gt != 255
        np.add.at(conf, (gt[valid], pred[valid]), 1)
    tp = np.diag(conf).astype(float)
    union = conf.sum(0) + conf.sum(1) - tp
    iou = [tp[c] / union[c] if union[c] > 0 else math.nan for c in range(num_classes + 1)]
    things = [v for v in iou[1:] if not math.isnan(v)]
    return iou, (sum(things) / len(things) if things else math.nan)


def test_semantic_miou_equals_an_independent_numpy_computation():
    for seed in range(20):
        dicts, preds = _random_dataset(200 + seed)
        iou, miou = _numpy_semantic(dicts, preds, K)
        res = evaluate(register(dicts, [f"c{k}" for k in range(K)]), preds)["semantic"]
        assert same(res["mIoU"], miou * 100, 1e-9), seed
        for k in range(K):
            assert same(res[f"IoU-c{k}"], iou[k + 1] * 100, 1e-9)
        assert same(res["IoU-background"], iou[0] * 100, 1e-9)


def test_mask_ap_with_more_than_100_detections_per_class():
    rng = np.random.default_rng(7)
    dicts, preds = [], {}
    for image_id in (5, 2):
        record, _ = random_scene(rng, 60, 80, 1, image_id, max_gt=30, first_id=100 * image_id)
        masks, scores = [], []
        gt_masks = [mask_util.decode(a["segmentation"]).astype(bool) for a in record["annotations"]]
        for _ in range(130):
            if gt_masks and rng.random() < 0.5:
                m = np.roll(
                    gt_masks[int(rng.integers(len(gt_masks)))], int(rng.integers(-2, 3)), axis=1
                )
            else:
                m = np.zeros((60, 80), bool)
                y, x = rng.integers(0, 55), rng.integers(0, 75)
                m[y : y + rng.integers(1, 20), x : x + rng.integers(1, 20)] = True
            masks.append(m)
            scores.append(float(rng.choice([0.3, rng.random()])))
        preds[image_id] = instances(masks, [0] * len(masks), scores)
        dicts.append(record)
    stats, per_class, _ = coco_reference(dicts, preds, 1)
    res = evaluate(register(dicts, ["c0"]), preds)["segm"]
    for key, value in stats.items():
        assert same(res[key], value), key


def test_300_objects_and_300_predictions_in_one_image_equal_cocoeval():
    # pycocotools.mask.area fails for 256 or more masks at once under NumPy 2; training's
    # evaluation (eval-only) decodes a whole image's ground truth at once
    rng = np.random.default_rng(11)
    h, w = 150, 240
    gt_masks, gt_classes = [], []
    for n in range(300):  # a 20 x 15 grid of 12 x 10 cells
        y, x = 10 * (n // 20), 12 * (n % 20)
        m = np.zeros((h, w), bool)
        m[y + rng.integers(0, 3):y + rng.integers(5, 10),
          x + rng.integers(0, 3):x + rng.integers(6, 12)] = True
        gt_masks.append(m)
        gt_classes.append(n % K)
    record = image_dict(5, gt_masks, gt_classes, [int(n % 101 == 0) for n in range(300)])
    masks, classes, scores = [], [], []
    for n in range(300):
        source = gt_masks[n] if n < 270 else gt_masks[int(rng.integers(0, 300))]
        masks.append(np.roll(source, int(rng.integers(-1, 2)), axis=int(rng.integers(0, 2))))
        classes.append(gt_classes[n] if rng.random() < 0.9 else int(rng.integers(0, K)))
        scores.append(float(rng.uniform(0.05, 1.0)))
    preds = {5: instances(masks, classes, scores)}
    stats, per_class, _ = coco_reference([record], preds, K)
    res = evaluate(register([record], [f"c{k}" for k in range(K)]), preds)["segm"]
    for key, value in stats.items():
        assert same(res[key], value), key
    for k in range(K):
        assert same(res[f"AP-c{k}"], per_class[k]), k

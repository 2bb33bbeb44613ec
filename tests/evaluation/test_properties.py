"""Property tests (hypothesis) of the evaluator on generated scenes."""

import math

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from segcontrast.engine.evaluator import SegContrastEvaluator
from segcontrast.evaluation import EvalState, summarize
from segcontrast.evaluation.catalog import ERROR_TYPES

from tests.evaluation.helpers import instances, random_scene, register

SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])

scenes = st.fixed_dictionaries(
    {
        "seed": st.integers(0, 2**31 - 1),
        "height": st.integers(1, 40),
        "width": st.integers(1, 40),
        "num_classes": st.integers(1, 4),
        "num_images": st.integers(1, 4),
    }
)


def _dataset(scene):
    rng = np.random.default_rng(scene["seed"])
    dicts, preds, next_id = [], {}, 1
    for i in range(scene["num_images"]):
        record, pred = random_scene(
            rng,
            scene["height"],
            scene["width"],
            scene["num_classes"],
            int(rng.integers(0, 10**6)) * 10 + i,
            first_id=next_id,
        )
        next_id += len(record["annotations"])
        dicts.append(record)
        preds[record["image_id"]] = pred
    names = [f"c{k}" for k in range(scene["num_classes"])]
    return dicts, preds, names


def _run(name, dicts, preds, order=None, **kwargs):
    ev = SegContrastEvaluator(name, distributed=False, **{"score_threshold": 0.0, **kwargs})
    for i in order if order is not None else range(len(dicts)):
        image_id = dicts[i]["image_id"]
        ev.process([{"image_id": image_id}], [{"instances": preds[image_id]}])
    return ev


def _same(a, b):
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    return (math.isnan(a) and math.isnan(b)) or a == b


@SETTINGS
@given(
    scene=scenes,
    iou_threshold=st.floats(0.05, 1.0),
    soft=st.booleans(),
    score_threshold=st.sampled_from([0.0, 0.5]),
    ratio=st.floats(0.001, 0.2),
)
def test_any_input_gives_scores_in_range(scene, iou_threshold, soft, score_threshold, ratio):
    dicts, preds, names = _dataset(scene)
    if soft:
        for inst in preds.values():
            inst.pred_masks = inst.pred_masks.float() * 0.8
    res = _run(
        register(dicts, names),
        dicts,
        preds,
        iou_threshold=iou_threshold,
        score_threshold=score_threshold,
        boundary_dilation_ratio=ratio,
    ).evaluate()
    for group in ("semantic", "instance", "segm", "panoptic"):
        for key, value in res[group].items():
            if key in ("TP", "FP", "FN"):
                assert value >= 0 and value == int(value), key
                continue
            assert math.isnan(value) or 0.0 <= value <= 100.0 + 1e-9, (group, key, value)
    for key, value in res["contrast"].items():
        assert value >= 0 and value == int(value), key
    acc = res["accounting"]
    for key, value in acc.items():
        if key.startswith("delta_"):  # every fixed value is a score too
            metric = key[len("delta_"):].rsplit("-", 1)[0]
            fixed = acc[metric] + value
            assert math.isnan(fixed) or -1e-9 <= fixed <= 100.0 + 1e-9, (key, fixed)
        elif key.startswith("count-"):
            assert value >= 0 and value == int(value), key


@SETTINGS
@given(scene=scenes)
def test_a_perfect_prediction_scores_100(scene):
    dicts, _, names = _dataset(scene)
    rng = np.random.default_rng(scene["seed"] + 1)
    preds, any_gt = {}, False
    for d in dicts:
        for a in d["annotations"]:
            a["area"] = float(np.count_nonzero(_decode(a)))
        regular = [a for a in d["annotations"] if not a["iscrowd"]]
        any_gt |= bool(regular)
        preds[d["image_id"]] = instances(
            [_decode(a) for a in regular],
            [a["category_id"] for a in regular],
            rng.random(len(regular)),
            height=d["height"],
            width=d["width"],
        )
    if not any_gt:
        return
    res = _run(register(dicts, names), dicts, preds).evaluate()
    sem, inst, segm, c = res["semantic"], res["instance"], res["segm"], res["contrast"]

    def perfect(value, may_be_undefined=False):
        # 1e-9: COCOeval's precision tp / (tp + fp + eps) is 1 - 2e-16 at best
        return (may_be_undefined and math.isnan(value)) or abs(value - 100.0) <= 1e-9

    assert perfect(sem["pixel_acc"], may_be_undefined=True)  # NaN: every pixel ignored
    for key in ("mIoU", "mIoU_per_image", "fwIoU", "mean_acc", "mDice", "mIoU_with_background"):
        # NaN only when every object pixel is ignored (objects of two classes overlapping)
        assert perfect(sem[key], may_be_undefined=True), key
    for key in ("mIoU", "matched_mIoU", "class_mIoU", "precision", "recall", "F1", "boundary_IoU"):
        assert perfect(inst[key]), key
    for key in ("AP", "AP50", "AP75"):
        assert perfect(segm[key]), key
    for group in (sem, inst, segm):
        for key, value in group.items():
            if key.startswith(("IoU-", "AP-", "AP")):
                assert perfect(value, may_be_undefined=True), key
    # exact copies: nothing unmatched, no imprecise mask (an exact copy of an object may still
    # cover most of an overlapping one: merged and split stay possible)
    assert c["false_positives"] == 0 and c["matched"] == c["gt_instances"]
    assert all(c[name] == 0 for name in ERROR_TYPES
               if name not in ("merged", "split", "low_score")), c


def _decode(annotation):
    import pycocotools.mask as mask_util

    return mask_util.decode(annotation["segmentation"]).astype(bool)


@SETTINGS
@given(scene=scenes, permutation_seed=st.integers(0, 1000))
def test_results_do_not_depend_on_image_order(scene, permutation_seed):
    dicts, preds, names = _dataset(scene)
    name = register(dicts, names)
    order = np.random.default_rng(permutation_seed).permutation(len(dicts))
    res = _run(name, dicts, preds).evaluate()
    assert {"panoptic", "accounting"} <= set(res)  # PQ and the accounting are compared too
    assert _same(res, _run(name, dicts, preds, order=order).evaluate())


@SETTINGS
@given(scene=scenes, cut=st.integers(0, 4))
def test_splitting_images_across_two_evaluators_equals_one(scene, cut):
    dicts, preds, names = _dataset(scene)
    name = register(dicts, names)
    cut = min(cut, len(dicts))
    first = _run(name, dicts, preds, order=range(cut))
    second = _run(name, dicts, preds, order=range(cut, len(dicts)))
    merged = summarize(EvalState.merge([second.state, first.state]), names).results
    assert _same(merged, _run(name, dicts, preds).evaluate())

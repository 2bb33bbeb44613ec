"""Every compiled kernel against the implementation it replaced (reference_impl.py).

Randomised images: overlapping masks, crowd regions, empty masks and images, images without
predictions, more than 256 masks, masks touching the image's edges, polygons and uncompressed
RLE; equal score ties. Results must be equal: integers and label maps exactly, floats to the
last bit.
"""

import numpy as np
import pycocotools.mask as mask_util
import pytest
from scipy.optimize import linear_sum_assignment
from segcontrast.data.masks import GroundTruth, MaskCrops, crops_from_rles, pairwise_intersections
from segcontrast.data.rle import RLEError
from segcontrast.data.semantic_gt import paint_semantic_gt
from segcontrast.evaluation.metrics import boundary, instance, panoptic, semantic

from tests.evaluation import reference_impl as ref
from tests.evaluation.per_variant_impl import _confusion_delta

SEEDS = range(40)


def random_masks(rng: np.random.Generator, n: int, height: int, width: int) -> np.ndarray:
    """(n, H, W) bool: rectangles, ragged blobs, full columns and rows, some empty."""
    masks = np.zeros((n, height, width), bool)
    for i in range(n):
        kind = rng.random()
        if kind < 0.08:
            continue  # empty
        y, x = rng.integers(0, height), rng.integers(0, width)
        h, w = rng.integers(1, height + 1), rng.integers(1, width + 1)
        if kind < 0.15:  # touches the top and the bottom: runs cross columns
            masks[i, :, x : x + w] = True
        else:
            masks[i, y : y + h, x : x + w] = True
        if rng.random() < 0.5:
            masks[i] &= rng.random((height, width)) < 0.7
    return masks


def encode(masks: np.ndarray) -> list[dict]:
    return mask_util.encode(np.asfortranarray(masks.transpose(1, 2, 0).astype(np.uint8)))


def crops_of(masks: np.ndarray) -> MaskCrops:
    n, height, width = masks.shape
    return crops_from_rles(encode(masks), height, width) if n else MaskCrops.empty(height, width)


def same_crops(a: MaskCrops, b: MaskCrops) -> None:
    assert (a.height, a.width) == (b.height, b.width)
    np.testing.assert_array_equal(a.boxes, b.boxes)
    np.testing.assert_array_equal(a.areas, b.areas)
    assert len(a.crops) == len(b.crops)
    for x, y in zip(a.crops, b.crops, strict=True):
        assert x.dtype == y.dtype == bool
        np.testing.assert_array_equal(x, y)


def scene(seed: int, n_gt: int | None = None, n_pred: int | None = None):
    rng = np.random.default_rng(seed)
    height, width = int(rng.integers(1, 40)), int(rng.integers(1, 40))
    n_gt = int(rng.integers(0, 12)) if n_gt is None else n_gt
    n_pred = int(rng.integers(0, 15)) if n_pred is None else n_pred
    gt = crops_of(random_masks(rng, n_gt, height, width))
    pred = crops_of(random_masks(rng, n_pred, height, width))
    classes = rng.integers(0, 4, n_gt)
    crowd = rng.random(n_gt) < 0.2
    # coarse scores: many ties
    scores = rng.integers(0, 4, n_pred) / 4.0
    pred_classes = rng.integers(0, 4, n_pred)
    return rng, gt, classes, crowd, pred, pred_classes, scores


# --- decoding


@pytest.mark.parametrize("seed", SEEDS)
def test_rle_decoding_equals_the_numpy_decoder_and_pycocotools(seed):
    rng = np.random.default_rng(seed)
    height, width = int(rng.integers(1, 50)), int(rng.integers(1, 50))
    masks = random_masks(rng, int(rng.integers(1, 20)), height, width)
    rles = encode(masks)
    if seed % 2:
        rles = [{"size": r["size"], "counts": r["counts"].decode("ascii")} for r in rles]
    fast = crops_from_rles(rles, height, width)
    same_crops(fast, ref.crops_from_rles(rles, height, width))
    for i, mask in enumerate(masks):
        np.testing.assert_array_equal(fast.to_dense(i), mask)


def test_rle_decoding_of_more_than_256_masks_polygons_and_uncompressed_rle():
    rng = np.random.default_rng(0)
    height, width = 31, 17
    masks = random_masks(rng, 300, height, width)
    rles = list(encode(masks))
    polygons = [[float(v) for v in rng.uniform(-2, 35, 8)] for _ in range(20)]
    rles += mask_util.frPyObjects(polygons, height, width)
    runs = [[0, 3, 5, height * width - 8], [height * width], [2, 0, 1, 0, height * width - 3]]
    rles += [mask_util.frPyObjects({"size": [height, width], "counts": c}, height, width)
             for c in runs]
    same_crops(crops_from_rles(rles, height, width), ref.crops_from_rles(rles, height, width))


@pytest.mark.parametrize("counts", [b"0a", b"\x7f", b"12", b"1" * 9, b"00000000000", b"P"])
def test_rle_decoding_refuses_what_the_numpy_decoder_refuses(counts):
    rles = [{"size": [3, 4], "counts": counts}]
    with pytest.raises(ValueError) as expected:
        ref.crops_from_rles(rles, 3, 4)
    with pytest.raises(ValueError) as found:
        crops_from_rles(rles, 3, 4)
    assert type(found.value) is type(expected.value)
    assert str(found.value) == str(expected.value)
    if isinstance(expected.value, RLEError):
        assert found.value.code == expected.value.code


# --- masks against masks and label maps


@pytest.mark.parametrize("seed", SEEDS)
def test_intersections_painting_and_confusion(seed):
    rng, gt, classes, crowd, pred, pred_classes, scores = scene(seed)
    np.testing.assert_array_equal(pairwise_intersections(pred, gt),
                                  ref.pairwise_intersections(pred, gt))
    np.testing.assert_array_equal(pairwise_intersections(gt, gt),
                                  ref.pairwise_intersections(gt, gt))
    gt_labels = paint_semantic_gt(gt, classes, crowd)
    np.testing.assert_array_equal(gt_labels, ref.paint_semantic_gt(gt, classes, crowd))
    painted = semantic.paint_semantic_from_crops(pred, pred_classes, scores)
    np.testing.assert_array_equal(painted,
                                  ref.paint_semantic_from_crops(pred, pred_classes, scores))
    for num_labels in (5, 17):  # uint8 codes, and int32 codes (L * (L + 1) > 256)
        np.testing.assert_array_equal(semantic.confusion_matrix(gt_labels, painted, num_labels),
                                      ref.confusion_matrix(gt_labels, painted, num_labels))


def test_intersections_of_more_than_256_masks():
    rng = np.random.default_rng(1)
    a, b = crops_of(random_masks(rng, 260, 20, 24)), crops_of(random_masks(rng, 270, 20, 24))
    np.testing.assert_array_equal(pairwise_intersections(a, b), ref.pairwise_intersections(a, b))


@pytest.mark.parametrize("seed", SEEDS)
def test_window_repainting_changes_the_confusion_as_the_numpy_repainting(seed):
    rng, gt, classes, crowd, pred, pred_classes, scores = scene(seed)
    gt_labels = paint_semantic_gt(gt, classes, crowd)
    painted = semantic.paint_semantic_from_crops(pred, pred_classes, scores)
    # a "fixed" variant: some predictions dropped, some ground truth added as predictions
    keep = np.flatnonzero(rng.random(len(pred)) < 0.6)
    add = np.flatnonzero(rng.random(len(gt)) < 0.5)
    fixed = MaskCrops(np.concatenate([pred.boxes[keep], gt.boxes[add]]).astype(np.int64),
                      [pred.crops[i] for i in keep] + [gt.crops[j] for j in add],
                      np.concatenate([pred.areas[keep], gt.areas[add]]).astype(np.int64),
                      gt.height, gt.width)
    fixed_classes = np.concatenate([pred_classes[keep], classes[add]]).astype(np.int64)
    fixed_scores = np.concatenate([scores[keep], np.ones(len(add))])
    touched = np.concatenate([np.delete(pred.boxes, keep, axis=0), gt.boxes[add]])

    class Context:
        num_classes = 4

    ctx = Context()
    ctx.gt_labels, ctx.painted = gt_labels, painted
    expected = ref._confusion_delta(ctx, ref._PixelCodes(gt_labels, painted, 5), fixed,
                                    fixed_classes, fixed_scores, touched)
    found = _confusion_delta(ctx, fixed, fixed_classes, fixed_scores, touched)
    np.testing.assert_array_equal(found, expected)
    # and it is the change of the whole image's confusion matrix
    repainted = semantic.paint_semantic_from_crops(fixed, fixed_classes, fixed_scores)
    np.testing.assert_array_equal(
        found, semantic.confusion_matrix(gt_labels, repainted, 5)
        - semantic.confusion_matrix(gt_labels, painted, 5))


# --- the assignment


@pytest.mark.parametrize("seed", range(300))
def test_the_assignment_is_scipys_ties_included(seed):
    rng = np.random.default_rng(seed)
    n, m = int(rng.integers(1, 9)), int(rng.integers(1, 9))
    levels = rng.choice([2, 3, 5, 50])
    weights = rng.integers(0, levels, (n, m)) / (levels - 1)
    if seed % 3 == 0:
        weights = np.where(rng.random((n, m)) < 0.5, 0.0, weights)
    rows, cols = linear_sum_assignment(weights, maximize=True)
    found_rows, found_cols = instance.kernels.max_weight_assignment(weights)
    np.testing.assert_array_equal(found_rows, rows)
    np.testing.assert_array_equal(found_cols, cols)
    threshold = float(rng.choice([0.0, 0.5, 0.75]))
    for a, b in zip(instance.hungarian_match(weights, threshold),
                    ref.hungarian_match(weights, threshold), strict=True):
        np.testing.assert_array_equal(a, b)


# --- boundary IoU


@pytest.mark.parametrize("seed", SEEDS)
def test_boundary_bands_and_boundary_iou_equal_opencv_erosion(seed):
    rng, gt, classes, crowd, pred, pred_classes, scores = scene(seed, n_gt=8, n_pred=8)
    for dilation in (1, 2, 3, 7):
        for crop in gt.crops + pred.crops:
            np.testing.assert_array_equal(boundary.mask_boundary(crop, dilation),
                                          ref.mask_boundary(crop, dilation))
        pairs = np.stack(np.meshgrid(np.arange(len(pred)), np.arange(len(gt))), -1).reshape(-1, 2)
        np.testing.assert_array_equal(boundary.boundary_iou_pairs(pred, gt, pairs, dilation),
                                      ref.boundary_iou_pairs(pred, gt, pairs, dilation))


def test_boundary_band_of_a_full_image_mask_with_holes():
    rng = np.random.default_rng(3)
    mask = rng.random((60, 70)) < 0.95
    mask[10:50, 20:60] = True
    for dilation in (1, 4, 9, 40):
        np.testing.assert_array_equal(boundary.mask_boundary(mask, dilation),
                                      ref.mask_boundary(mask, dilation))


# --- panoptic segments


def ground_truth(gt: MaskCrops, classes: np.ndarray, crowd: np.ndarray) -> GroundTruth:
    return GroundTruth(gt, np.asarray(classes, np.int64), np.asarray(crowd, bool),
                       gt.areas.astype(np.float64), np.arange(1, len(gt) + 1))


@pytest.mark.parametrize("seed", SEEDS)
def test_panoptic_segments_and_statistics(seed):
    rng, gt, classes, crowd, pred, pred_classes, scores = scene(seed)
    truth = ground_truth(gt, classes, crowd)
    fast, slow = panoptic.gt_segments(truth), ref.gt_segments(truth)
    for name in ("labels", "categories", "crowd", "areas", "crowd_classes"):
        a, b = getattr(fast, name), getattr(slow, name)
        assert a.dtype == b.dtype, name
        np.testing.assert_array_equal(a, b)
    for threshold in (0.0, 0.5, 1.0):
        seg = panoptic.pred_segments(pred, scores, fast, threshold)
        expected = ref.pred_segments(pred, scores, slow, threshold)
        for name in ("kept", "areas", "hist"):
            np.testing.assert_array_equal(getattr(seg, name), getattr(expected, name))
        for a, b in zip(seg.crops, expected.crops, strict=True):
            assert (a is None) == (b is None)
            if a is not None:
                np.testing.assert_array_equal(a, b)
        # predictions that are exact copies of non-crowd instances, counted without looking
        regular = np.flatnonzero(~crowd & (gt.areas > 0))
        if len(regular):
            copies = MaskCrops(np.concatenate([pred.boxes, gt.boxes[regular]]).astype(np.int64),
                               pred.crops + [gt.crops[j] for j in regular],
                               np.concatenate([pred.areas, gt.areas[regular]]).astype(np.int64),
                               gt.height, gt.width)
            copy_scores = np.concatenate([scores, rng.random(len(regular))])
            instance_of = np.cumsum(~crowd) - 1  # annotation -> index among non-crowd
            gt_copy = np.concatenate([np.full(len(pred), -1), instance_of[regular]])
            counted = panoptic.pred_segments(copies, copy_scores, fast, threshold,
                                             with_crops=False)
            shortcut = panoptic.pred_segments(copies, copy_scores, fast, threshold,
                                              with_crops=False, gt_copy=gt_copy)
            for name in ("kept", "areas", "hist"):
                np.testing.assert_array_equal(getattr(shortcut, name), getattr(counted, name))
        stats = panoptic.panoptic_stats(pred_classes + 1, seg, fast, 5)
        np.testing.assert_array_equal(stats, ref.panoptic_stats(pred_classes + 1, expected,
                                                                slow, 5))


def test_panoptic_of_an_image_without_predictions_or_ground_truth():
    empty = MaskCrops.empty(5, 6)
    truth = ground_truth(empty, np.zeros(0, np.int64), np.zeros(0, bool))
    fast, slow = panoptic.gt_segments(truth), ref.gt_segments(truth)
    np.testing.assert_array_equal(fast.labels, slow.labels)
    seg = panoptic.pred_segments(empty, np.zeros(0), fast, 0.5)
    np.testing.assert_array_equal(
        panoptic.panoptic_stats(np.zeros(0, np.int64), seg, fast, 3),
        ref.panoptic_stats(np.zeros(0, np.int64), ref.pred_segments(empty, np.zeros(0), slow,
                                                                    0.5), slow, 3))


# --- COCO matching


@pytest.mark.parametrize("seed", range(30))
def test_coco_matching_equals_the_numpy_matcher(seed):
    from segcontrast.evaluation.metrics import coco_ap

    rng = np.random.default_rng(seed)
    groups = int(rng.integers(1, 40))
    n_det = rng.integers(0, 12, groups)
    n_gt = rng.integers(0, 9, groups)
    if seed == 0:
        n_det[0], n_gt[0] = 120, 5  # more than 100 detections in a group
    total_gt = int(n_gt.sum())
    levels = rng.choice([3, 20, 1000])
    data = coco_ap.group_data(
        classes=rng.integers(0, 3, groups), n_det=n_det, n_gt=n_gt,
        det_scores=np.sort(rng.random(int(n_det.sum())))[::-1],
        det_areas=rng.choice([10.0, 2000.0, 20000.0], int(n_det.sum())),
        gt_crowd=rng.random(total_gt) < 0.2,
        gt_areas=rng.choice([10.0, 1024.0, 2000.0, 9216.0, 20000.0], total_gt),
        gt_id_zero=rng.random(total_gt) < 0.1,
        ious=rng.integers(0, levels, int((n_det * n_gt).sum())) / (levels - 1),
    )
    group_image = np.sort(rng.integers(0, 5, groups))
    fast = coco_ap.match_groups(data, group_image, 3)
    slow = ref.match_groups(data, group_image, 3)
    for name in ("classes", "scores", "keys", "groups", "tp", "fp"):
        np.testing.assert_array_equal(getattr(fast, name), getattr(slow, name))


# --- what the evaluator no longer imports


def test_evaluating_imports_neither_scipy_optimize_nor_opencv(tmp_path):
    """A matching conflict (two predictions on two objects of one class) once imported
    scipy.optimize (~1 s); boundary IoU imported OpenCV (~0.3 s). The kernels replace both."""
    import json
    import subprocess
    import sys

    def rle_of(y0, x0, y1, x1):
        mask = np.zeros((20, 30), np.uint8)
        mask[y0:y1, x0:x1] = 1
        encoded = mask_util.encode(np.asfortranarray(mask))
        return {"size": [20, 30], "counts": encoded["counts"].decode("ascii")}

    boxes = [(2, 2, 12, 14), (4, 6, 14, 18)]
    gt = {"images": [{"id": 1, "file_name": "a.png", "height": 20, "width": 30}],
          "categories": [{"id": 1, "name": "cell"}],
          "annotations": [{"id": i + 1, "image_id": 1, "category_id": 1, "iscrowd": 0,
                           "segmentation": rle_of(*b), "area": 100.0}
                          for i, b in enumerate(boxes)]}
    results = [{"image_id": 1, "category_id": 1, "score": s, "segmentation": rle_of(*b)}
               for s, b in ((0.9, (3, 4, 13, 16)), (0.8, (3, 3, 13, 15)))]
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    (tmp_path / "results.json").write_text(json.dumps(results))
    script = ("import sys, segcontrast; r = segcontrast.evaluate(sys.argv[1], sys.argv[2]); "
              "r.save(sys.argv[3]); print(r.metrics['segm']['AP'], "
              "'scipy.optimize' in sys.modules, 'cv2' in sys.modules)")
    proc = subprocess.run([sys.executable, "-c", script, str(tmp_path / "gt.json"),
                           str(tmp_path / "results.json"), str(tmp_path / "out")],
                          capture_output=True, text=True, check=True)
    ap, scipy_loaded, cv2_loaded = proc.stdout.split()
    assert (scipy_loaded, cv2_loaded) == ("False", "False")
    assert float(ap) > 0


# --- the accounting's matching and AP records of a fixed list


@pytest.mark.parametrize("seed", range(100))
def test_class_matching_and_ap_records_equal_the_numpy_versions(seed):
    from types import SimpleNamespace

    from tests.evaluation.per_variant_impl import _ap_patch

    rng = np.random.default_rng(seed)
    n, g = int(rng.integers(0, 12)), int(rng.integers(0, 10))
    if seed == 0:
        n = 130  # more than 100 detections of a class
    levels = rng.choice([3, 5, 1000])
    iou = rng.integers(0, levels, (n, g)) / (levels - 1)
    pred_classes = rng.integers(0, 3, n)
    gt_classes = rng.integers(0, 3, g)
    for threshold in (0.5, 0.75):
        for a, b in zip(instance.class_match(iou, pred_classes, gt_classes, threshold),
                        ref.class_match(iou, pred_classes, gt_classes, threshold), strict=True):
            np.testing.assert_array_equal(a, b)
    scores = rng.integers(0, 5, n) / 4.0
    ap_areas = rng.random(n) * 1000
    touched = sorted(set(rng.integers(0, 4, 3).tolist()))
    by_class = {int(c): np.flatnonzero(gt_classes == c) for c in np.unique(gt_classes)}
    fixed = SimpleNamespace(classes=pred_classes, scores=scores, ap_areas=ap_areas)
    found = _ap_patch(pred_classes, scores, ap_areas, iou, gt_classes, touched)
    expected = ref._ap_patch(fixed, iou, by_class, touched)
    for a, b in zip(found, expected, strict=True):
        assert a.dtype == b.dtype and a.shape == b.shape
        np.testing.assert_array_equal(a, b)

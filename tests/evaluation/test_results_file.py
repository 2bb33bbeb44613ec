"""Scoring a COCO results file: decoding every segmentation format, grouping, and COCO mask AP
equal to pycocotools' ``COCOeval(gt, gt.loadRes(results), "segm")`` on randomised files: with
each result's bbox removed first (Detectron2's COCOEvaluator, the default mask areas), and on the
file as it is (``ap_area="box"``)."""

import contextlib
import copy
import io
import json
import math

import numpy as np
import pycocotools.mask as mask_util
import pytest
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval
from segcontrast.evaluation.accumulator import Accumulator
from segcontrast.evaluation.ground_truth import GroundTruthSet
from segcontrast.evaluation.results_file import ResultsFileError, check_results, read_results
from segcontrast.evaluation.score_files import score_results

from .results_files import coco_gt_json, results_of_image
from .synthetic import synthetic_dataset

CATEGORY_IDS = [2, 5, 9, 40]  # non-contiguous on purpose
H, W = 150, 200


def uncompressed(mask: np.ndarray) -> dict:
    """An uncompressed RLE (counts a list), built here from the mask's column-major runs."""
    flat = mask.ravel(order="F").astype(np.int8)
    bounds = np.concatenate(([0], np.flatnonzero(np.diff(flat)) + 1, [flat.size]))
    counts = np.diff(bounds).tolist()
    if flat[0] == 1:
        counts = [0, *counts]
    return {"size": list(mask.shape), "counts": counts}


def decode(rle: dict) -> np.ndarray:
    return mask_util.decode(rle).astype(bool)


def random_polygons(rng, height, width):
    polygons = []
    for _ in range(int(rng.integers(1, 3))):
        cx, cy = rng.uniform(5, width - 5), rng.uniform(5, height - 5)
        n = int(rng.integers(3, 9))
        angles = np.sort(rng.uniform(0, 2 * np.pi, n))
        r = rng.uniform(2, 12, n)
        xs = np.clip(cx + r * np.cos(angles), 0, width)
        ys = np.clip(cy + r * np.sin(angles), 0, height)
        polygons.append(np.stack([xs, ys], 1).ravel().round(2).tolist())
    return polygons


def randomised_files(seed: int, with_bbox: bool):
    """A GT file and a results file with every case the issue names, and its reference copy.

    Returns:
        (gt_json, results, reference_results): the reference has every segmentation as
        compressed RLE (polygons and uncompressed RLE converted by pycocotools).
    """
    rng = np.random.default_rng(seed)
    dicts = synthetic_dataset(8, height=H, width=W, num_classes=len(CATEGORY_IDS),
                              instances_per_image=6, crowd_fraction=0.15, seed=seed)
    gt = coco_gt_json(dicts, CATEGORY_IDS)
    assert any(a["iscrowd"] for a in gt["annotations"]), "the case needs crowd regions"
    results = []
    without = set(rng.choice([d["image_id"] for d in dicts], size=2, replace=False).tolist())
    for d in dicts:
        if d["image_id"] in without:
            continue  # images of the GT without a result
        results += results_of_image(d, CATEGORY_IDS, seed=seed)
    crowded = dicts[0]["image_id"]
    for _ in range(130):  # more than 100 results of one class in one image
        m = np.zeros((H, W), bool)
        y, x = rng.integers(0, H - 4), rng.integers(0, W - 4)
        m[y:y + rng.integers(2, 60), x:x + rng.integers(2, 60)] = True
        ys, xs = np.nonzero(m)
        rle = mask_util.encode(np.asfortranarray(m.astype(np.uint8)))
        results.append({"image_id": crowded, "category_id": CATEGORY_IDS[0],
                        "segmentation": {"size": [H, W], "counts": rle["counts"].decode()},
                        "score": float(rng.uniform(0, 1)),
                        "bbox": [float(xs.min()), float(ys.min()), float(xs.max() - xs.min() + 1),
                                 float(ys.max() - ys.min() + 1)]})
    order = rng.permutation(len(results))
    results = [results[i] for i in order]
    reference = []
    for r in results:
        kind = rng.random()
        ref = dict(r)
        if kind < 0.25:
            r["segmentation"] = uncompressed(decode(r["segmentation"]))
            converted = mask_util.frPyObjects(r["segmentation"], H, W)
            ref["segmentation"] = {"size": [H, W], "counts": converted["counts"].decode()}
        elif kind < 0.45:
            r["segmentation"] = random_polygons(rng, H, W)
            merged = mask_util.merge(mask_util.frPyObjects(r["segmentation"], H, W))
            ref["segmentation"] = {"size": [H, W], "counts": merged["counts"].decode()}
        if not with_bbox:
            r.pop("bbox", None)
            ref.pop("bbox", None)
        reference.append(ref)
    return gt, results, reference


def cocoeval(gt: dict, results: list, ap_area: str = "mask") -> tuple[dict, list]:
    """COCOeval segm; ``ap_area="mask"`` removes each result's bbox before ``loadRes`` first,
    as Detectron2's COCOEvaluator does, "box" loads the results as they are."""
    names = ["AP", "AP50", "AP75", "APs", "APm", "APl"]
    results = copy.deepcopy(results)
    if ap_area == "mask":
        for r in results:
            r.pop("bbox", None)
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO()
        coco_gt.dataset = copy.deepcopy(gt)
        coco_gt.createIndex()
        ev = COCOeval(coco_gt, coco_gt.loadRes(results), "segm")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    stats = {n: (ev.stats[i] * 100 if ev.stats[i] >= 0 else math.nan) for i, n in enumerate(names)}
    per_class = []
    for k in range(len(CATEGORY_IDS)):
        p = ev.eval["precision"][:, :, k, 0, -1]
        p = p[p > -1]
        per_class.append(float(np.mean(p)) * 100 if p.size else math.nan)
    return stats, per_class


def score_files(tmp_path, gt: dict, results: list, ap_area: str = "mask",
                **evaluator_kwargs) -> dict:
    gt_path, results_path = tmp_path / "gt.json", tmp_path / "results.json"
    gt_path.write_text(json.dumps(gt))
    results_path.write_text(json.dumps(results))
    files = GroundTruthSet.from_coco(gt_path)
    loaded = read_results(results_path, files.images, files.id_map, ap_area=ap_area)
    evaluator_kwargs.setdefault("score_threshold", 0.0)
    accumulator = Accumulator(files, ap_area=ap_area, **evaluator_kwargs)
    score_results(accumulator, loaded, files.images, files.id_map, progress=False)
    return accumulator.compute().results


@pytest.mark.parametrize("seed,with_bbox,ap_area", [(0, True, "mask"), (1, False, "mask"),
                                                    (2, True, "box"), (3, False, "box")])
def test_mask_ap_equals_pycocotools_on_randomised_results_files(tmp_path, seed, with_bbox,
                                                                ap_area):
    gt, results, reference = randomised_files(seed, with_bbox)
    ours = score_files(tmp_path, gt, results, ap_area, boundary_iou=False)
    stats, per_class = cocoeval(gt, reference, ap_area)
    for key, value in stats.items():
        assert ours["segm"][key] == pytest.approx(value, abs=1e-9, nan_ok=True), key
    for k, value in enumerate(per_class):
        assert ours["segm"][f"AP-class{k}"] == pytest.approx(value, abs=1e-9, nan_ok=True), k


def test_more_than_100_results_in_an_image_is_what_truncates_ap(tmp_path):
    # The 130 extra low-quality results of class 0 in one image are cut to the 100 best by
    # COCOeval; scoring the file with only those 100 must give the same AP.
    gt, results, reference = randomised_files(0, True)
    crowded = gt["images"][0]["id"]
    mine = [r for r in reference
            if r["image_id"] == crowded and r["category_id"] == CATEGORY_IDS[0]]
    assert len(mine) > 100
    best = sorted(mine, key=lambda r: -r["score"])[:100]
    trimmed = [r for r in reference if r not in mine] + best
    full = score_files(tmp_path, gt, reference, boundary_iou=False)
    cut = score_files(tmp_path, gt, trimmed, boundary_iou=False)
    assert full["segm"]["AP"] == cut["segm"]["AP"]
    # ...while the instance side sees every result above the score threshold.
    assert full["contrast"]["predictions"] > cut["contrast"]["predictions"]


def test_every_segmentation_format_decodes_to_the_pycocotools_mask():
    rng = np.random.default_rng(5)
    masks = [rng.random((H, W)) < p for p in (0.0, 0.1, 0.5, 1.0)]
    masks[1][0, :] = True  # runs that cross column edges
    polygons = random_polygons(rng, H, W)
    compressed = [mask_util.encode(np.asfortranarray(m.astype(np.uint8))) for m in masks]
    results = []
    expected = []
    for m, c in zip(masks, compressed, strict=True):
        results.append({"segmentation": {"size": [H, W], "counts": c["counts"].decode()}})
        results.append({"segmentation": {"size": [H, W], "counts": c["counts"]}})  # bytes
        results.append({"segmentation": uncompressed(m)})
        expected += [m, m, m]
    results.append({"segmentation": polygons})
    expected.append(decode(mask_util.merge(mask_util.frPyObjects(polygons, H, W))))
    results.append({"segmentation": []})  # an empty polygon list: an empty mask
    expected.append(np.zeros((H, W), bool))
    for i, r in enumerate(results):
        r.update(image_id=7, category_id=9, score=1.0 - i / 100)
    loaded = check_results("r.json", results, {7: (H, W)}, {9: 0})
    pred = loaded.predictions(7, H, W, {9: 0})
    assert len(pred.masks) == len(expected)
    for i, m in enumerate(expected):
        assert np.array_equal(pred.masks.to_dense(i), m), i
    assert pred.masks.areas.tolist() == [int(m.sum()) for m in expected]
    # No bbox in the first result: areas for COCO's ranges are mask areas (loadRes' rule).
    assert pred.ap_areas.tolist() == [float(m.sum()) for m in expected]
    assert pred.scores.dtype == np.float64 and pred.scores[1] == 1.0 - 1 / 100


def test_results_are_grouped_per_image_in_file_order_and_box_areas_are_asked_for():
    m = np.zeros((4, 5), bool)
    m[1:3, 1:4] = True
    rle = mask_util.encode(np.asfortranarray(m.astype(np.uint8)))
    seg = {"size": [4, 5], "counts": rle["counts"].decode()}
    results = [
        {"image_id": 2, "category_id": 1, "segmentation": seg, "score": 0.2,
         "bbox": [0, 0, 2.5, 2]},
        {"image_id": 1, "category_id": 1, "segmentation": seg, "score": 0.9, "bbox": [0, 0, 3, 3]},
        {"image_id": 2, "category_id": 3, "segmentation": seg, "score": 0.7, "bbox": [0, 0, 1, 1]},
    ]
    images, id_map = {1: (4, 5), 2: (4, 5), 3: (4, 5)}, {1: 0, 3: 1}
    loaded = check_results("r.json", copy.deepcopy(results), images, id_map)
    assert loaded.by_image == {2: [0, 2], 1: [1]}
    assert loaded.has_boxes and not loaded.area_from_box
    pred = loaded.predictions(2, 4, 5, id_map)
    assert pred.classes.tolist() == [0, 1]
    assert pred.scores.tolist() == [0.2, 0.7]
    assert pred.ap_areas.tolist() == [6.0, 6.0]  # the mask areas, as Detectron2 takes them
    empty = loaded.predictions(3, 4, 5, id_map)
    assert len(empty.masks) == 0 and empty.has_instances
    # pycocotools' loadRes on the file as it is: box w * h
    boxed = check_results("r.json", results, images, id_map, ap_area="box")
    assert boxed.area_from_box
    assert boxed.predictions(2, 4, 5, id_map).ap_areas.tolist() == [5.0, 1.0]


def test_all_problems_are_reported_at_once_with_index_image_and_category():
    seg = {"size": [4, 5], "counts": "PQ"}
    results = [
        {"image_id": 1, "category_id": 1, "segmentation": seg, "score": 0.5},
        {"image_id": 99, "category_id": 1, "segmentation": seg, "score": 0.5},
        {"image_id": 1, "category_id": 7, "segmentation": seg, "score": 0.5},
        {"image_id": 1, "category_id": 1, "segmentation": {"size": [5, 4], "counts": "PQ"},
         "score": 0.5},
        {"image_id": 1, "category_id": 1, "segmentation": [[1, 1, 2, 2, 3]], "score": 0.5},
        {"image_id": 1, "category_id": 1, "segmentation": [[1, 1, 2, "x", 3, 3]], "score": 0.5},
        {"image_id": 1, "category_id": 1, "segmentation": seg},
        {"image_id": 1, "category_id": 1, "segmentation": seg, "score": float("nan")},
        {"image_id": 1, "category_id": 1, "segmentation": seg, "score": "high"},
        {"image_id": 1, "category_id": 1, "score": 0.5, "bbox": [0, 0, 1, 1]},
        [1, 2, 3],
    ]
    with pytest.raises(ResultsFileError) as info:
        check_results("r.json", results, {1: (4, 5)}, {1: 0})
    problems = info.value.problems
    by_index = {p.index: p for p in problems}
    assert sorted(by_index) == list(range(1, len(results)))
    assert by_index[1].code == "unknown_image_id" and by_index[1].image_id == 99
    assert by_index[2].code == "unknown_category_id" and by_index[2].category_id == 7
    assert by_index[3].code == "rle_size_mismatch"
    assert by_index[4].code == "polygon_odd_length"
    assert by_index[5].code == "polygon_malformed"
    assert {by_index[i].code for i in (6, 7, 8)} == {"bad_score"}
    assert by_index[9].code == "no_segmentation"
    text = str(info.value)
    assert "r.json: result 2 (image_id 1, category_id 7): category_id 7 is not a category" in text
    assert "result 3 (image_id 1, category_id 1): RLE size [5, 4]" in text


def test_a_compressed_rle_that_does_not_decode_names_its_result():
    good = mask_util.encode(np.asfortranarray(np.ones((4, 5), np.uint8)))["counts"].decode()
    results = [{"image_id": 1, "category_id": 1, "score": 0.5,
                "segmentation": {"size": [4, 5], "counts": c}} for c in (good, "0a", good)]
    loaded = check_results("r.json", results, {1: (4, 5)}, {1: 0})
    with pytest.raises(ResultsFileError) as info:
        loaded.predictions(1, 4, 5, {1: 0})
    assert [p.index for p in info.value.problems] == [1]
    assert "r.json: result 1 (image_id 1, category_id 1)" in str(info.value)

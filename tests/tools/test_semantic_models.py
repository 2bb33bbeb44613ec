"""The tools with a semantic model beside the instance model: a tiny Panoptic FPN trained with
tools/train_net.py (both semantic columns, eval-only equal to the end of training), the threshold
sweep and prediction on it, and a SemanticSegmentor through predict.py, the trainer's evaluation
and the refusals. One training run; the rest reuses its weights or in-process models."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from detectron2.data import DatasetCatalog, build_detection_test_loader
from detectron2.modeling import build_model
from PIL import Image
from segcontrast.config import load_config
from segcontrast.data.semantic_gt import semantic_gt_from_record
from segcontrast.datasets import SegContrastDatasetMapper, register_coco_dataset
from segcontrast.engine.checkpoint import load_weights_for_eval
from segcontrast.engine.predictor import Predictor, predict_images
from segcontrast.engine.threshold_sweep import sweep_mask_thresholds
from segcontrast.engine.train_cli import main as train_net_main
from segcontrast.engine.trainer import SegContrastTrainer

from .conftest import dataset_args, run_cli, run_tool

pytestmark = pytest.mark.slow

PANOPTIC = "panoptic_posce"
SEMANTIC = "semantic_focal"
# After 20 iterations no detection scores 0.05: keep them all, so that the instance side and the
# painted-instances column have something to score.
KEEP_ALL = ["MODEL.ROI_HEADS.SCORE_THRESH_TEST", "0.0", "TEST.SEGCONTRAST.SCORE_THRESHOLD", "0.0"]


def _metrics(output_dir: Path) -> dict:
    return json.loads((output_dir / "inference" / "tiny_val" / "metrics.json").read_text())


def _assert_ok(result):
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]


def _assert_refused(result, *fragments):
    assert result.returncode == 2, result.stdout[-2000:] + result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    for fragment in fragments:
        assert fragment in result.stderr, result.stderr


@pytest.fixture(scope="module")
def panoptic_run(tmp_path_factory, tiny_data, tiny_config):
    """One finished 20-iteration Panoptic FPN run (pos-weighted semantic head)."""
    out = tmp_path_factory.mktemp("panoptic")
    result = run_tool("train_net.py", "--config", tiny_config(PANOPTIC), *dataset_args(tiny_data),
                      *KEEP_ALL, "OUTPUT_DIR", str(out))
    _assert_ok(result)
    return out


@pytest.fixture(scope="module")
def semantic_weights(tmp_path_factory, tiny_config):
    """Weights of a tiny SemanticSegmentor: untrained, and biased to one label everywhere."""
    folder = tmp_path_factory.mktemp("semantic")
    cfg = load_config(tiny_config(SEMANTIC), [])
    torch.manual_seed(0)
    state = build_model(cfg).state_dict()
    paths = {}
    for name, label in (("untrained", None), ("background", 0), ("triangle", 3)):
        weights = {k: v.clone() for k, v in state.items()}
        if label is not None:
            weights["sem_seg_head.predictor.bias"][label] += 1000.0
        paths[name] = folder / f"{name}.pth"
        torch.save({"model": weights}, paths[name])
    return paths


def test_panoptic_fpn_trains_checkpoints_and_reports_both_semantic_columns(panoptic_run):
    out = panoptic_run
    assert (out / "last_checkpoint").read_text() == "model_final.pth"
    assert {"model_0000009.pth", "model_final.pth"} <= {p.name for p in out.glob("*.pth")}
    rows = [json.loads(line) for line in (out / "metrics.json").read_text().splitlines()]
    trained = [r for r in rows if "total_loss" in r]
    assert trained[-1]["iteration"] == 19
    assert all(np.isfinite(r["loss_sem_seg"]) and np.isfinite(r["loss_mask"]) for r in trained)
    assert all(r["sem_seg/pos_weight"] >= 1 for r in trained)  # the weight each step used
    metrics = _metrics(out)
    assert list(metrics)[:8] == ["semantic", "semantic_from_instances", "instance", "segm",
                                 "contrast", "panoptic", "accounting", "details"]
    assert "from the semantic head" in metrics["details"]["explanation"]
    assert metrics["contrast"]["predictions"] > 0  # the instance side has something to score
    assert metrics["semantic"] != metrics["semantic_from_instances"]
    log = (out / "log.txt").read_text()
    assert "| semantic mIoU " in log and "| semantic mIoU (painted instances) " in log
    assert "semantic IoU (painted instances)" in log
    plots = out / "inference" / "tiny_val"
    assert "semantic IoU (painted instances)" in (plots / "per_class_iou.svg").read_text()


def test_eval_only_equals_the_end_of_training(panoptic_run, tiny_data, tiny_config, tmp_path):
    result = run_tool("train_net.py", "--config", tiny_config(PANOPTIC), "--eval-only",
                      *dataset_args(tiny_data), *KEEP_ALL, "MODEL.WEIGHTS",
                      str(panoptic_run / "model_final.pth"), "OUTPUT_DIR", str(tmp_path))
    _assert_ok(result)
    at_end, again = _metrics(panoptic_run), _metrics(tmp_path)
    for group in ("semantic", "semantic_from_instances", "instance", "segm", "contrast"):
        assert again[group] == at_end[group], group
    header = (tmp_path / "inference" / "tiny_val" / "per_image.csv").read_text().splitlines()[0]
    assert header.startswith("image_id,semantic_mIoU,semantic_mIoU_from_instances,")
    assert "| semantic mIoU (painted instances) " in result.stdout + result.stderr


def test_threshold_sweep_on_panoptic_fpn_matches_its_evaluation(panoptic_run, tiny_data,
                                                               tiny_config):
    # In process (the tool's CLI runs in tools/test_train_net.py and in the refusal below).
    register_coco_dataset("tiny_val_panoptic", tiny_data["val"], tiny_data["image_root"])
    cfg = load_config(tiny_config(PANOPTIC), ["DATASETS.TEST", "('tiny_val_panoptic',)",
                                               *KEEP_ALL])
    model = build_model(cfg)
    load_weights_for_eval(model, str(panoptic_run / "model_final.pth"))
    loader = build_detection_test_loader(cfg, "tiny_val_panoptic",
                                         mapper=SegContrastDatasetMapper(cfg, False))
    sweep = sweep_mask_thresholds(model, loader, "tiny_val_panoptic", [0.3, 0.5],
                                  score_threshold=0.0)
    # As metrics.json holds them: NaN (e.g. precision without detections) as null.
    at_end = _metrics(panoptic_run)
    at_half = json.loads(json.dumps(sweep.results[1]).replace("NaN", "null"))
    for group in ("semantic", "semantic_from_instances", "instance", "segm"):
        assert at_half[group] == at_end[group], group
    # The semantic head does not depend on the mask threshold.
    assert sweep.results[0]["semantic"] == at_half["semantic"]


def test_predict_with_panoptic_fpn_writes_the_semantic_heads_labels(panoptic_run, tiny_data,
                                                                   tiny_config, tmp_path):
    images = sorted((Path(tiny_data["image_root"]) / "val").glob("*.png"))[:2]
    cfg = load_config(tiny_config(PANOPTIC), KEEP_ALL)
    predictor = Predictor(cfg, str(panoptic_run / "model_final.pth"))
    summary = predict_images(predictor, images, str(tmp_path), semantic_png=True,
                             confidence=0.0)
    assert summary.predicted == 2
    for path in images:
        _, outputs = predictor.predict_file(path)
        assert list(outputs) == ["sem_seg", "instances"]  # COMBINE.ENABLED False: no panoptic
        labels = np.array(Image.open(tmp_path / f"{path.name}.semantic.png"))
        assert np.array_equal(labels, outputs["sem_seg"].argmax(0).numpy())
        assert (tmp_path / f"{path.name}.overlay.png").is_file()
    records = json.loads((tmp_path / "predictions.json").read_text())
    assert len(records) == summary.num_results and summary.num_results > 0


def test_predict_with_a_semantic_segmentor_draws_its_labels(semantic_weights, tiny_data,
                                                           tiny_config, tmp_path):
    image_path = sorted((Path(tiny_data["image_root"]) / "val").glob("*.png"))[0]
    rgb = np.array(Image.open(image_path).convert("RGB"))
    result = run_tool("predict.py", "--config", tiny_config(SEMANTIC), "--weights",
                      str(semantic_weights["triangle"]), "--input", str(image_path),
                      "--output", str(tmp_path / "cli"), "--semantic-png")
    _assert_ok(result)
    assert "predict: 1 of 1 files predicted" in result.stdout
    # In process, the same loop with weights that predict background everywhere.
    cfg = load_config(tiny_config(SEMANTIC), [])
    predict_images(Predictor(cfg, str(semantic_weights["background"])), [image_path],
                   str(tmp_path / "bare"), semantic_png=True)
    for folder, label in (("cli", 3), ("bare", 0)):
        labels = np.array(Image.open(tmp_path / folder / f"{image_path.name}.semantic.png"))
        assert labels.shape == rgb.shape[:2] and (labels == label).all()
        overlay = np.array(Image.open(tmp_path / folder / f"{image_path.name}.overlay.png"))
        assert overlay.shape == rgb.shape
        changed = (overlay != rgb).any(axis=2).mean()
        if label == 0:
            assert changed == 0  # background is not drawn
        else:
            assert changed > 0.9  # the class covers the image
        assert json.loads((tmp_path / folder / "predictions.json").read_text()) == []


def test_refusals_for_semantic_models(semantic_weights, tiny_data, tiny_config, tmp_path):
    _assert_refused(
        run_tool("tune_mask_threshold.py", "--config", tiny_config(SEMANTIC),
                 *dataset_args(tiny_data), "--weights", str(semantic_weights["untrained"]),
                 "--output", str(tmp_path)),
        "SemanticSegmentor", "predicts no instance masks")
    # train_net.py's check, in process (the CLI path is the one tools/test_train_net.py runs).
    # run_cli: the datasets the run registers are forgotten afterwards, as a process's are.
    refused = run_cli(train_net_main, ["--config", tiny_config(SEMANTIC), *dataset_args(tiny_data),
                                       "MODEL.SEM_SEG_HEAD.NUM_CLASSES", "3",
                                       "OUTPUT_DIR", str(tmp_path)])
    err = refused.stderr
    assert refused.returncode == 2 and "MODEL.SEM_SEG_HEAD.NUM_CLASSES is 3" in err
    assert "tiny_train has 3 categories" in err and "4 labels" in err


def test_semantic_segmentor_is_scored_on_the_semantic_side_only(semantic_weights, tiny_data,
                                                               tiny_config, tmp_path):
    # In process: the trainer's evaluation of a real SemanticSegmentor whose weights predict
    # "triangle" everywhere, so that every score is known from the ground truth alone.
    register_coco_dataset("tiny_val_semantic", tiny_data["val"], tiny_data["image_root"])
    cfg = load_config(tiny_config(SEMANTIC), ["DATASETS.TEST", "('tiny_val_semantic',)",
                                               "OUTPUT_DIR", str(tmp_path)])
    model = build_model(cfg)
    load_weights_for_eval(model, str(semantic_weights["triangle"]))
    results = SegContrastTrainer.test(cfg, model)
    assert list(results) == ["semantic"]
    labels = np.concatenate([semantic_gt_from_record(r, 3).ravel()
                             for r in DatasetCatalog.get("tiny_val_semantic")])
    labels = labels[labels != 255]
    triangle = 100 * np.mean(labels == 3)
    assert results["semantic"]["IoU-triangle"] == pytest.approx(triangle, abs=1e-9)
    assert results["semantic"]["IoU-circle"] == results["semantic"]["IoU-square"] == 0
    assert results["semantic"]["mIoU"] == pytest.approx(triangle / 3, abs=1e-9)
    metrics = json.loads(
        (tmp_path / "inference" / "tiny_val_semantic" / "metrics.json").read_text())
    assert "need instance predictions" in metrics["details"]["explanation"]

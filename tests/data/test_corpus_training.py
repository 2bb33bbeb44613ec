"""Every corpus case that passes validation really trains and evaluates: one training step of a
tiny Mask R-CNN on its images, then inference and the contrast evaluator on the same dataset."""

import importlib.util
import sys
from pathlib import Path

import pytest
import torch
from detectron2.config import get_cfg
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.modeling import build_model
from detectron2.utils.events import EventStorage
from segcontrast.config import add_segcontrast_config
from segcontrast.datasets import SegContrastDatasetMapper, register_coco_dataset, validate_dataset
from segcontrast.datasets.coco import unregister_coco_dataset
from segcontrast.engine.evaluator import SegContrastEvaluator

REPO = Path(__file__).resolve().parents[2]


def _load_make_corpus():
    spec = importlib.util.spec_from_file_location(
        "segcontrast_test_make_corpus_training", Path(__file__).with_name("make_corpus.py")
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


pytestmark = pytest.mark.usefixtures("one_torch_thread")

mc = _load_make_corpus()
USABLE = [case.name for case in mc.CASES if case.outcome != "error"]
NUM_CLASSES = 4


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    cases = mc.make_corpus(tmp_path_factory.mktemp("corpus_training"))
    yield cases
    for name in cases:
        unregister_coco_dataset(f"corpus_train_{name}")


@pytest.fixture(scope="module")
def model():
    cfg = _cfg()
    torch.manual_seed(0)
    return build_model(cfg)


def _cfg(mask_format: str = "polygon"):
    cfg = get_cfg()
    add_segcontrast_config(cfg)
    cfg.merge_from_file(str(REPO / "configs" / "Base-Tiny-R18-GN.yaml"))
    cfg.MODEL.DEVICE = "cpu"
    cfg.MODEL.ROI_HEADS.NUM_CLASSES = NUM_CLASSES
    cfg.MODEL.ROI_MASK_HEAD.NAME = "FocalLossMaskHead"
    cfg.INPUT.MIN_SIZE_TRAIN = (40,)
    cfg.INPUT.MAX_SIZE_TRAIN = 80
    cfg.INPUT.MIN_SIZE_TEST = 40
    cfg.INPUT.MAX_SIZE_TEST = 80
    cfg.INPUT.MASK_FORMAT = mask_format
    # Small proposal and detection budgets: these images hold a handful of objects.
    cfg.MODEL.RPN.PRE_NMS_TOPK_TRAIN = cfg.MODEL.RPN.PRE_NMS_TOPK_TEST = 100
    cfg.MODEL.RPN.POST_NMS_TOPK_TRAIN = cfg.MODEL.RPN.POST_NMS_TOPK_TEST = 20
    cfg.MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE = 32
    cfg.TEST.DETECTIONS_PER_IMAGE = 10
    return cfg


@pytest.mark.parametrize("name", USABLE)
def test_usable_case_trains_and_evaluates(corpus, model, name):
    case = corpus[name]
    dataset = f"corpus_train_{name}"
    register_coco_dataset(dataset, case.json_file, case.image_root,
                          allow_outside_root=case.allow_outside_root)
    validate_dataset(dataset)
    metadata = MetadataCatalog.get(dataset)
    assert len(metadata.thing_classes) <= NUM_CLASSES
    cfg = _cfg(metadata.mask_format)
    dicts = DatasetCatalog.get(dataset)

    train_mapper = SegContrastDatasetMapper(cfg, True)
    batch = [train_mapper(d) for d in dicts]
    model.train()
    with EventStorage():
        losses = model(batch)
    assert all(torch.isfinite(v) for v in losses.values()), losses
    sum(losses.values()).backward()
    model.zero_grad()

    test_mapper = SegContrastDatasetMapper(cfg, False)
    evaluator = SegContrastEvaluator(dataset, None, distributed=False, score_threshold=0.0)
    model.eval()
    with torch.no_grad():
        for record in dicts:
            inputs = [test_mapper(record)]
            outputs = model(inputs)
            instances = outputs[0]["instances"]
            keep = instances.pred_classes < len(metadata.thing_classes)
            evaluator.process(inputs, [{"instances": instances[keep]}])
    results = evaluator.evaluate()
    assert {"semantic", "instance", "segm", "contrast"} <= set(results)
    assert results["contrast"]["images"] == len(dicts)

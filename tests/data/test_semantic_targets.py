"""The mapper's semantic training targets: painted from the instance annotations by the evaluator's
rule, at the original size, then resized and flipped exactly as Detectron2 treats a label PNG."""

import copy

import numpy as np
import pycocotools.mask as mask_util
import pytest
import torch
from detectron2.config import get_cfg
from detectron2.data import DatasetMapper
from detectron2.data import transforms as T
from detectron2.structures import BoxMode
from PIL import Image
from segcontrast.config import add_segcontrast_config
from segcontrast.data.semantic_gt import IGNORE_LABEL, semantic_gt_from_record
from segcontrast.datasets import SegContrastDatasetMapper

H, W, K = 40, 52, 2


def _rle(mask):
    rle = mask_util.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": [H, W], "counts": rle["counts"].decode()}


def _record(tmp_path):
    """Two classes that overlap (ignored where they do), a crowd region, an RLE and polygons."""
    path = tmp_path / "image.png"
    rng = np.random.default_rng(0)
    Image.fromarray((rng.random((H, W, 3)) * 255).astype(np.uint8)).save(path)
    crowd = np.zeros((H, W), bool)
    crowd[30:38, 2:20] = True
    ring = np.zeros((H, W), bool)
    ring[5:25, 30:50] = True
    ring[10:20, 35:45] = False

    def ann(i, cls, segmentation, bbox, iscrowd=0):
        return {"id": i, "category_id": cls, "iscrowd": iscrowd, "segmentation": segmentation,
                "bbox": bbox, "bbox_mode": BoxMode.XYWH_ABS, "area": 1.0}

    annotations = [
        ann(1, 0, [[4.0, 4.0, 24.0, 4.0, 24.0, 20.0, 4.0, 20.0]], [4, 4, 20, 16]),
        ann(2, 1, [[16.0, 12.0, 32.0, 12.0, 32.0, 28.0, 16.0, 28.0]], [16, 12, 16, 16]),
        ann(3, 1, _rle(ring), [30, 5, 20, 20]),
        ann(4, 0, _rle(crowd), [2, 30, 18, 8], iscrowd=1),
    ]
    return {"file_name": str(path), "height": H, "width": W, "image_id": 7,
            "annotations": annotations}


def _cfg(arch="SemanticSegmentor", flip="none", size=H):
    cfg = get_cfg()
    add_segcontrast_config(cfg)
    cfg.MODEL.META_ARCHITECTURE = arch
    cfg.MODEL.MASK_ON = arch != "SemanticSegmentor"
    cfg.MODEL.SEM_SEG_HEAD.NUM_CLASSES = K + 1
    cfg.INPUT.MASK_FORMAT = "bitmask"
    cfg.INPUT.MIN_SIZE_TRAIN = (size,)
    cfg.INPUT.MAX_SIZE_TRAIN = 1000
    cfg.INPUT.RANDOM_FLIP = flip
    return cfg


def test_identity_transform_gives_the_evaluators_ground_truth(tmp_path):
    record = _record(tmp_path)
    gt = semantic_gt_from_record(record, K)
    # The fixture really exercises every rule: both classes, the clash, the crowd region.
    assert {0, 1, 2, IGNORE_LABEL} <= set(np.unique(gt).tolist())
    out = SegContrastDatasetMapper(_cfg(), True)(copy.deepcopy(record))
    assert out["sem_seg"].dtype == torch.int64 and out["sem_seg"].shape == (H, W)
    assert np.array_equal(out["sem_seg"].numpy(), gt)
    assert "instances" not in out and "annotations" not in out  # a SemanticSegmentor needs none


@pytest.mark.parametrize("arch", ["SemanticSegmentor", "PanopticFPN"])
def test_resized_and_flipped_target_is_detectron2s_transform_of_the_gt_png(tmp_path, arch):
    record = _record(tmp_path)
    png = tmp_path / "gt.png"
    Image.fromarray(semantic_gt_from_record(record, K)).save(png)
    cfg = _cfg(arch, size=72)
    augmentations = [T.ResizeShortestEdge(72, 1000), T.RandomFlip(prob=1.0)]
    kwargs = {**DatasetMapper.from_config(cfg, True), "augmentations": augmentations}
    ours = SegContrastDatasetMapper(**kwargs, semantic_targets=True, num_thing_classes=K,
                                    instance_targets=arch == "PanopticFPN")(copy.deepcopy(record))
    theirs = DatasetMapper(**kwargs)({**copy.deepcopy(record), "sem_seg_file_name": str(png)})
    assert ours["sem_seg"].shape == (72, 94)
    assert torch.equal(ours["sem_seg"], theirs["sem_seg"])
    assert torch.equal(ours["image"], theirs["image"])
    # A real flip: the target is not the unflipped resize.
    unflipped = DatasetMapper(**{**kwargs, "augmentations": augmentations[:1]})(
        {**copy.deepcopy(record), "sem_seg_file_name": str(png)})["sem_seg"]
    assert not torch.equal(ours["sem_seg"], unflipped)
    assert torch.equal(ours["sem_seg"], unflipped.flip(-1))
    if arch == "PanopticFPN":
        for name in ("gt_boxes", "gt_classes", "gt_masks"):
            a, b = ours["instances"].get(name), theirs["instances"].get(name)
            assert torch.equal(a.tensor if hasattr(a, "tensor") else a,
                               b.tensor if hasattr(b, "tensor") else b), name
    else:
        assert "instances" not in ours


def test_a_label_png_is_used_instead_of_painting(tmp_path):
    record = _record(tmp_path)
    labels = np.full((H, W), 1, np.uint8)
    labels[:, :10] = IGNORE_LABEL
    png = tmp_path / "labels.png"
    Image.fromarray(labels).save(png)
    out = SegContrastDatasetMapper(_cfg("PanopticFPN"), True)(
        {**copy.deepcopy(record), "sem_seg_file_name": str(png)})
    assert np.array_equal(out["sem_seg"].numpy(), labels)


def test_no_semantic_targets_at_test_time_or_for_mask_rcnn(tmp_path):
    record = _record(tmp_path)
    assert "sem_seg" not in SegContrastDatasetMapper(_cfg("PanopticFPN"), False)(
        copy.deepcopy(record))
    out = SegContrastDatasetMapper(_cfg("GeneralizedRCNN"), True)(copy.deepcopy(record))
    assert "sem_seg" not in out and len(out["instances"]) == 3
    with pytest.raises(ValueError, match="num_thing_classes"):
        SegContrastDatasetMapper(**DatasetMapper.from_config(_cfg(), True),
                                 semantic_targets=True)

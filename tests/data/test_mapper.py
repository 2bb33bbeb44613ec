"""SegContrastDatasetMapper: identical to Detectron2's DatasetMapper where Detectron2 reads the
image correctly, and usable where it does not (16-bit PNG)."""

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
from segcontrast.datasets import SegContrastDatasetMapper

# pycocotools 2.0.11 with numpy 2 warns on every decode.

H, W = 36, 50


def _cfg(mask_format="polygon"):
    cfg = get_cfg()
    add_segcontrast_config(cfg)
    cfg.MODEL.MASK_ON = True
    cfg.INPUT.MASK_FORMAT = mask_format
    cfg.INPUT.MIN_SIZE_TRAIN = (72,)
    cfg.INPUT.MAX_SIZE_TRAIN = 200
    cfg.INPUT.MIN_SIZE_TEST = 72
    cfg.INPUT.MAX_SIZE_TEST = 200
    cfg.INPUT.RANDOM_FLIP = "none"
    return cfg


def _record(path, segmentation):
    return {
        "file_name": str(path), "height": H, "width": W, "image_id": 1,
        "annotations": [{"bbox": [5, 4, 20, 12], "bbox_mode": BoxMode.XYWH_ABS,
                         "category_id": 0, "iscrowd": 0, "segmentation": segmentation,
                         "area": 240.0, "id": 1}],
    }


def _polygon():
    return [[5.0, 4.0, 25.0, 4.0, 25.0, 16.0, 5.0, 16.0]]


def _rle():
    mask = np.zeros((H, W), np.uint8, order="F")
    mask[4:16, 5:25] = 1
    rle = mask_util.encode(mask)
    return {"size": [H, W], "counts": rle["counts"].decode()}


def _picture(seed=0):
    rng = np.random.default_rng(seed)
    image = (rng.random((H, W, 3)) * 255).astype(np.uint8)
    image[:10, :10] = (255, 0, 0)
    return image


def _same(ours, theirs):
    assert torch.equal(ours["image"], theirs["image"])
    a, b = ours["instances"], theirs["instances"]
    assert a.image_size == b.image_size
    assert torch.equal(a.gt_boxes.tensor, b.gt_boxes.tensor)
    assert torch.equal(a.gt_classes, b.gt_classes)
    if hasattr(a.gt_masks, "tensor"):
        assert torch.equal(a.gt_masks.tensor, b.gt_masks.tensor)
    else:
        for pa, pb in zip(a.gt_masks.polygons, b.gt_masks.polygons, strict=True):
            for x, y in zip(pa, pb, strict=True):
                assert np.array_equal(x, y)


@pytest.mark.parametrize("mask_format", ["polygon", "bitmask"])
@pytest.mark.parametrize("kind", ["rgb_png", "rgba_png", "gray_png", "exif_jpeg"])
def test_same_as_detectron2_for_8bit_images(tmp_path, mask_format, kind):
    picture = _picture()
    if kind == "exif_jpeg":
        exif = Image.Exif()
        exif[274] = 8  # stored turned the other way: Detectron2 rotates it back
        stored = np.ascontiguousarray(np.rot90(picture, k=1))
        path = tmp_path / "p.jpg"
        Image.fromarray(stored).save(path, quality=95, exif=exif.tobytes())
    else:
        mode = {"rgb_png": "RGB", "rgba_png": "RGBA", "gray_png": "L"}[kind]
        path = tmp_path / "p.png"
        Image.fromarray(picture).convert(mode).save(path)
    segmentation = _polygon() if mask_format == "polygon" else _rle()
    record = _record(path, segmentation)
    cfg = _cfg(mask_format)
    for is_train in (True, False):
        ours = SegContrastDatasetMapper(cfg, is_train)(copy.deepcopy(record))
        theirs = DatasetMapper(cfg, is_train)(copy.deepcopy(record))
        assert ours["image"].shape == (3, 72, 100)
        if is_train:
            _same(ours, theirs)
            assert len(ours["instances"]) == 1
        else:
            assert torch.equal(ours["image"], theirs["image"])
            assert "annotations" not in ours and "instances" not in ours


def test_16bit_png_is_usable_where_detectron2_saturates(tmp_path):
    values = np.linspace(500, 4000, H * W).reshape(H, W).astype(np.uint16)  # 12-bit data
    path = tmp_path / "deep.png"
    Image.fromarray(values).save(path)
    record = _record(path, _polygon())
    ours = SegContrastDatasetMapper(_cfg(), True)(copy.deepcopy(record))
    theirs = DatasetMapper(_cfg(), True)(copy.deepcopy(record))
    assert (theirs["image"] == 255).float().mean() > 0.99
    assert ours["image"].min() == 0 and ours["image"].max() == 255
    assert ours["image"].float().std() > 50
    assert torch.equal(ours["instances"].gt_boxes.tensor, theirs["instances"].gt_boxes.tensor)


def test_rle_with_polygon_format_names_the_fix(tmp_path):
    path = tmp_path / "p.png"
    Image.fromarray(_picture()).save(path)
    with pytest.raises(ValueError) as info:
        SegContrastDatasetMapper(_cfg("polygon"), True)(_record(path, _rle()))
    message = str(info.value)
    assert str(path) in message and "annotation 1" in message
    assert "INPUT.MASK_FORMAT bitmask" in message


def test_built_without_a_config(tmp_path):
    path = tmp_path / "p.png"
    Image.fromarray(_picture()).save(path)
    mapper = SegContrastDatasetMapper(is_train=True, augmentations=[T.NoOpTransform()],
                                      image_format="RGB", use_instance_mask=True,
                                      instance_mask_format="bitmask")
    out = mapper(_record(path, _rle()))
    assert out["image"].shape == (3, H, W)
    assert torch.equal(out["image"].permute(1, 2, 0), torch.from_numpy(_picture()))
    assert out["instances"].gt_masks.tensor.sum() == 240


def test_size_mismatch_is_still_caught(tmp_path):
    path = tmp_path / "p.png"
    Image.fromarray(_picture()).save(path)
    record = _record(path, _polygon())
    record["width"] = W + 1
    with pytest.raises(ValueError, match="Mismatched image shape"):
        SegContrastDatasetMapper(_cfg(), True)(record)

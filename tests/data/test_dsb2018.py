"""The DSB2018 converter on the real nuclei subset (67 images) and on tiny made-up sources:
counts, exact masks, no overlapping instances, a fixed split, idempotence."""

import json
import os
import random
from pathlib import Path

import numpy as np
import pycocotools.mask as mask_util
import pytest
from detectron2.config import get_cfg
from detectron2.data import DatasetCatalog, MetadataCatalog
from PIL import Image
from segcontrast.config import add_segcontrast_config
from segcontrast.data import DatasetValidationError, convert_dsb2018, validate_coco_file
from segcontrast.datasets import SegContrastDatasetMapper, register_coco_dataset, validate_dataset
from segcontrast.datasets.coco import unregister_coco_dataset

# pycocotools 2.0.11 with numpy 2 warns on every decode.

SOURCE = Path(os.environ.get("SEGCONTRAST_DSB2018_SOURCE", "")
              or Path(__file__).resolve().parents[3] / "shared" / "data" / "dsb2018")
QUIRK = "175dbb364bfefc9537931144861c9b6e08934df3992782c669c6fe4234319dfc"

needs_source = pytest.mark.skipif(not (SOURCE / "stage1_train").is_dir(),
                                  reason=f"DSB2018 source not at {SOURCE}")


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    if not (SOURCE / "stage1_train").is_dir():
        pytest.skip(f"DSB2018 source not at {SOURCE}")
    out = tmp_path_factory.mktemp("dsb2018")
    paths = convert_dsb2018(SOURCE, out, progress=False)
    data = {split: json.loads(Path(paths[split]).read_text()) for split in ("train", "val")}
    return paths, data


def _decode(segm):
    return mask_util.decode({"size": segm["size"], "counts": segm["counts"].encode()})


@needs_source
def test_counts_and_split(converted):
    paths, data = converted
    source_ids = sorted(p.name for p in (SOURCE / "stage1_train").iterdir())
    assert len(source_ids) == 67
    images = data["train"]["images"] + data["val"]["images"]
    assert len(data["train"]["images"]) == 54 and len(data["val"]["images"]) == 13
    assert sorted(img["file_name"] for img in images) == [f"{s}.png" for s in source_ids]
    assert len({img["id"] for img in images}) == 67
    anns = data["train"]["annotations"] + data["val"]["annotations"]
    assert len(anns) == 2839 == sum(len(os.listdir(SOURCE / "stage1_train" / s / "masks"))
                                     for s in source_ids)
    assert len({a["id"] for a in anns}) == 2839
    # The split, computed independently from its documented rule.
    order = list(source_ids)
    random.Random(0).shuffle(order)
    assert {img["file_name"][:-4] for img in data["val"]["images"]} == set(order[:13])
    for split in ("train", "val"):
        assert data[split]["categories"] == [{"id": 1, "name": "nucleus",
                                              "supercategory": "nucleus"}]


@needs_source
def test_both_splits_validate_cleanly(converted):
    paths, _ = converted
    for split in ("train", "val"):
        report = validate_coco_file(paths[split], paths["image_root"])
        assert report.ok and not report.problems, report.format_summary()


@needs_source
def test_masks_are_the_source_masks_and_never_overlap(converted):
    _, data = converted
    images = {img["id"]: img for s in ("train", "val") for img in data[s]["images"]}
    by_image = {}
    for split in ("train", "val"):
        for ann in data[split]["annotations"]:
            by_image.setdefault(images[ann["image_id"]]["file_name"][:-4], []).append(ann)
    for source_id in (QUIRK, sorted(by_image)[0]):
        anns = by_image[source_id]
        masks = np.stack([_decode(a["segmentation"]) for a in anns])
        assert masks.sum(axis=0).max() == 1  # instances never overlap
        union = np.zeros(masks.shape[1:], bool)
        for mask_file in (SOURCE / "stage1_train" / source_id / "masks").glob("*.png"):
            union |= np.asarray(Image.open(mask_file)) > 127
        assert np.array_equal(masks.any(axis=0), union)
        for ann, mask in zip(anns, masks, strict=True):
            assert ann["area"] == mask.sum()
            source = np.asarray(Image.open(SOURCE / "stage1_train" / source_id / "masks"
                                           / f"{ann['dsb2018_mask']}.png")) > 127
            lost = int(source.sum() - mask.sum())
            assert lost == 0 or (source_id == QUIRK and lost == 1)
            assert not (mask & ~source).any()
    quirk_total = sum(_decode(a["segmentation"]).sum() for a in by_image[QUIRK])
    source_total = sum((np.asarray(Image.open(p)) > 127).sum()
                       for p in (SOURCE / "stage1_train" / QUIRK / "masks").glob("*.png"))
    assert source_total - quirk_total == 1  # the one pixel two masks shared


@needs_source
def test_images_are_rgb_copies(converted):
    paths, data = converted
    img = data["val"]["images"][0]
    ours = Image.open(Path(paths["image_root"]) / img["file_name"])
    source = Image.open(SOURCE / "stage1_train" / img["file_name"][:-4] / "images"
                        / img["file_name"])
    assert ours.mode == "RGB" and source.mode == "RGBA"
    assert np.array_equal(np.asarray(ours), np.asarray(source)[..., :3])
    assert (ours.width, ours.height) == (img["width"], img["height"])


@needs_source
def test_registered_dsb2018_maps_with_bitmasks(converted):
    paths, _ = converted
    register_coco_dataset("test_dsb2018_val", paths["val"], paths["image_root"])
    try:
        assert validate_dataset("test_dsb2018_val").ok
        meta = MetadataCatalog.get("test_dsb2018_val")
        assert meta.thing_classes == ["nucleus"] and meta.mask_format == "bitmask"
        cfg = get_cfg()
        add_segcontrast_config(cfg)
        cfg.MODEL.MASK_ON = True
        cfg.INPUT.MASK_FORMAT = meta.mask_format
        cfg.INPUT.MIN_SIZE_TRAIN = (128,)
        mapper = SegContrastDatasetMapper(cfg, True)
        record = DatasetCatalog.get("test_dsb2018_val")[0]
        out = mapper(record)
        assert len(out["instances"]) == len(record["annotations"]) > 0
        assert min(out["image"].shape[1:]) == 128
    finally:
        unregister_coco_dataset("test_dsb2018_val")


def _tiny_source(root, *, masks, size=(12, 10)):
    """A made-up source with one image; masks: {name: (y0, y1, x0, x1) or an array}."""
    width, height = size
    folder = root / "stage1_train" / "img0"
    (folder / "images").mkdir(parents=True)
    (folder / "masks").mkdir()
    rgba = np.zeros((height, width, 4), np.uint8)
    rgba[..., 3] = 255
    rgba[..., 1] = 100
    Image.fromarray(rgba).save(folder / "images" / "img0.png")
    for name, spec in masks.items():
        if isinstance(spec, tuple):
            mask = np.zeros((height, width), np.uint8)
            y0, y1, x0, x1 = spec
            mask[y0:y1, x0:x1] = 255
        else:
            mask = spec
        Image.fromarray(mask).save(folder / "masks" / f"{name}.png")
    (root / "stage1_train" / "img1" / "images").mkdir(parents=True)
    Image.fromarray(rgba).save(root / "stage1_train" / "img1" / "images" / "img1.png")
    (root / "stage1_train" / "img1" / "masks").mkdir()
    return root


def test_overlap_goes_to_the_first_mask_and_empty_masks_are_skipped(tmp_path):
    source = _tiny_source(tmp_path / "src", masks={
        "a": (0, 4, 0, 4), "b": (3, 6, 3, 6), "c": np.zeros((10, 12), np.uint8)})
    paths = convert_dsb2018(source, tmp_path / "out", val_fraction=0.5, seed=1, progress=False)
    anns = [a for s in ("train", "val") for a in json.loads(Path(paths[s]).read_text())
            ["annotations"]]
    assert [a["dsb2018_mask"] for a in anns] == ["a", "b"]
    a, b = (_decode(x["segmentation"]) for x in anns)
    assert a.sum() == 16 and b.sum() == 8 and not (a & b).any()  # pixel (3, 3) stays in "a"
    assert anns[1]["bbox"] == [3.0, 3.0, 3.0, 3.0]


def test_idempotent_force_and_parameters(tmp_path):
    source = _tiny_source(tmp_path / "src", masks={"a": (0, 4, 0, 4)})
    out = tmp_path / "out"
    paths = convert_dsb2018(source, out, progress=False)
    stamp = {k: os.stat(paths[k]).st_mtime_ns for k in ("train", "val")}
    image = Path(paths["image_root"]) / "img0.png"
    image_stamp = image.stat().st_mtime_ns
    assert convert_dsb2018(source, out, progress=False) == paths
    assert {k: os.stat(paths[k]).st_mtime_ns for k in stamp} == stamp
    assert image.stat().st_mtime_ns == image_stamp
    convert_dsb2018(source, out, progress=False, seed=5)  # other parameters: redone
    info = json.loads(Path(paths["train"]).read_text())["info"]
    assert info["seed"] == 5
    image.unlink()  # an output went missing: redone
    convert_dsb2018(source, out, progress=False, seed=5)
    assert image.is_file()
    assert sorted(p.name for p in out.iterdir()) == ["images", "train.json", "val.json"]
    assert not list(out.rglob("*.tmp"))


def test_bad_sources(tmp_path):
    with pytest.raises(DatasetValidationError, match="no stage1_train"):
        convert_dsb2018(tmp_path / "nowhere", tmp_path / "out", progress=False)
    source = _tiny_source(tmp_path / "src", masks={"a": np.zeros((3, 3), np.uint8)})
    with pytest.raises(DatasetValidationError, match="is 3x3, its image img0 is 12x10"):
        convert_dsb2018(source, tmp_path / "out", progress=False)
    with pytest.raises(ValueError, match="val_fraction"):
        convert_dsb2018(source, tmp_path / "out", val_fraction=1.0)

"""Images deeper than 8 bits: one rule (each image's minimum to 0, its maximum to 255) for
validation, training, evaluation overlays and prediction, whatever the file format."""

import json

import cv2
import numpy as np
import pytest
import torch
from detectron2.config import get_cfg
from PIL import Image
from segcontrast.config import add_segcontrast_config
from segcontrast.data import validate_coco_file
from segcontrast.datasets import SegContrastDatasetMapper
from segcontrast.datasets.image_reader import read_image
from segcontrast.evaluation.report import overlays

H, W = 24, 32


def _pattern(channels: int, low: int = 100, high: int = 3700) -> np.ndarray:
    """(H, W[, C]) uint16 12-bit data: a distinct gradient per channel."""
    ramp = np.linspace(0, 1, H * W).reshape(H, W)
    layers = [low + (high - low) * np.roll(ramp, 97 * c) for c in range(max(channels, 1))]
    values = np.stack(layers, axis=-1) if channels else layers[0]
    return np.rint(values).astype(np.uint16)


def _rule(values: np.ndarray) -> np.ndarray:
    """The documented rule, written out: (v - min) * 255 / (max - min), rounded."""
    v = values.astype(np.float64)
    return np.rint((v - v.min()) * 255.0 / (v.max() - v.min())).astype(np.uint8)


def _write(path, rgb_or_gray: np.ndarray) -> None:
    if rgb_or_gray.ndim == 2:  # Pillow writes 16-bit grayscale PNG and TIFF (mode I;16)
        Image.fromarray(rgb_or_gray).save(path)
    else:  # Pillow cannot write 16-bit colour; OpenCV can (BGR order in memory)
        channels = rgb_or_gray.shape[2]
        order = [2, 1, 0, 3][:channels]
        assert cv2.imwrite(str(path), rgb_or_gray[:, :, order])


CASES = {
    "gray16.png": (_pattern(0), "16-bit grayscale"),
    "rgb16.png": (_pattern(3), "16-bit RGB"),
    "rgba16.png": (np.dstack([_pattern(3), np.full((H, W), 65535, np.uint16)]), "16-bit RGBA"),
    "gray16.tif": (_pattern(0), "16-bit grayscale"),
    "rgb16.tif": (_pattern(3), "16-bit RGB"),
}


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("deep")
    for name, (values, _) in CASES.items():
        _write(folder / name, values)
    return folder


@pytest.mark.parametrize("name", list(CASES))
def test_read_image_applies_the_rule_to_every_deep_format(files, name):
    values, _ = CASES[name]
    colour = values[:, :, :3] if values.ndim == 3 else np.dstack([values] * 3)
    expected = _rule(colour)  # over the colour channels together, alpha left out
    rgb = read_image(str(files / name), format="RGB")
    assert rgb.dtype == np.uint8 and rgb.shape == (H, W, 3)
    assert np.array_equal(rgb, expected)
    assert np.array_equal(read_image(str(files / name), format="BGR"), expected[:, :, ::-1])


def test_the_validator_reports_the_bit_depths_it_found(files, tmp_path):
    images = [{"id": i, "file_name": name, "height": H, "width": W}
              for i, name in enumerate(CASES, start=1)]
    coco = {"images": images, "categories": [{"id": 1, "name": "thing"}], "annotations": [
        {"id": i, "image_id": i, "category_id": 1, "bbox": [2, 2, 8, 8],
         "segmentation": [[2, 2, 10, 2, 10, 10, 2, 10]]} for i in range(1, len(images) + 1)]}
    path = tmp_path / "deep.json"
    path.write_text(json.dumps(coco))
    report = validate_coco_file(path, files)
    assert report.ok and not report.problems, report.format_summary()
    assert report.bit_depths == {"16-bit RGB": 2, "16-bit RGBA": 1, "16-bit grayscale": 2}
    summary = report.format_summary()
    assert "image files: 2 16-bit RGB, 1 16-bit RGBA, 2 16-bit grayscale" in summary
    assert "rescaled to 8 bits, each image from its own minimum to its maximum" in summary


def test_the_mapper_feeds_training_and_evaluation_the_same_pixels(files):
    cfg = get_cfg()
    add_segcontrast_config(cfg)
    cfg.INPUT.MIN_SIZE_TRAIN, cfg.INPUT.MAX_SIZE_TRAIN = (H,), 1000
    cfg.INPUT.MIN_SIZE_TEST, cfg.INPUT.MAX_SIZE_TEST = H, 1000
    cfg.INPUT.RANDOM_FLIP = "none"
    record = {"file_name": str(files / "rgb16.tif"), "image_id": 1, "height": H, "width": W,
              "annotations": []}
    expected = torch.from_numpy(np.ascontiguousarray(
        read_image(record["file_name"], "BGR").transpose(2, 0, 1)))
    for is_train in (True, False):
        mapped = SegContrastDatasetMapper(cfg, is_train)(record)
        assert torch.equal(mapped["image"], expected), is_train


def test_evaluation_overlays_draw_the_image_as_training_reads_it(files):
    for name in CASES:
        background = overlays._load_rgb(str(files / name), H, W)
        assert np.array_equal(background, read_image(str(files / name), "RGB")), name

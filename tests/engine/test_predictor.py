"""The predictor reads a file exactly as training and evaluation do (one image reader)."""

from pathlib import Path

import numpy as np
import pytest
import torch
from detectron2.modeling import build_model
from detectron2.structures import Instances
from PIL import Image
from segcontrast.config import load_config
from segcontrast.datasets import SegContrastDatasetMapper
from segcontrast.engine.predictor import Predictor

REPO = Path(__file__).resolve().parents[2]


class _RecordingModel(torch.nn.Module):
    """Stands in for the network: keeps its inputs, predicts nothing."""

    def __init__(self):
        super().__init__()
        self.inputs = []

    def forward(self, batched_inputs):
        self.inputs += batched_inputs
        return [{"instances": Instances((x["height"], x["width"]))} for x in batched_inputs]


@pytest.fixture(scope="module")
def predictor_and_cfg(tmp_path_factory):
    folder = tmp_path_factory.mktemp("predictor")
    cfg = load_config(str(REPO / "configs" / "shapes" / "mask_rcnn_bce.yaml"), [
        "INPUT.MIN_SIZE_TEST", "48", "INPUT.MAX_SIZE_TEST", "96",
        "INPUT.MIN_SIZE_TRAIN", "(48,)", "INPUT.MAX_SIZE_TRAIN", "96", "INPUT.RANDOM_FLIP", "none",
    ])
    weights = folder / "weights.pth"
    torch.save({"model": build_model(cfg).state_dict()}, weights)
    predictor = Predictor(cfg, str(weights))
    predictor.model = _RecordingModel()
    return predictor, cfg


def test_16bit_png_reaches_the_model_as_in_training(predictor_and_cfg, tmp_path):
    predictor, cfg = predictor_and_cfg
    # 12-bit data in a 16-bit file (as microscopes write it): values 100..3700 in a gradient.
    pattern = (100 + 3600 * np.linspace(0, 1, 40 * 30).reshape(30, 40)).astype(np.uint16)
    path = tmp_path / "sixteen.png"
    Image.fromarray(pattern).save(path)
    assert Image.open(path).mode.startswith("I;16")

    image, _ = predictor.predict_file(path)
    # The documented rule: the image's own minimum becomes 0, its maximum 255.
    assert image.shape == (30, 40, 3) and image.dtype == np.uint8
    assert image[0, 0].tolist() == [0, 0, 0] and image[-1, -1].tolist() == [255, 255, 255]
    assert len(np.unique(image[..., 0])) > 200  # a gradient, not a white square

    fed = predictor.model.inputs[-1]
    record = {"file_name": str(path), "image_id": 1, "height": 30, "width": 40,
              "annotations": []}
    for is_train in (False, True):
        mapped = SegContrastDatasetMapper(cfg, is_train)(record)
        assert torch.equal(fed["image"], mapped["image"].float()), f"is_train={is_train}"
    assert (fed["height"], fed["width"]) == (30, 40)


def test_16bit_rgb_png_reaches_the_model_as_in_training(predictor_and_cfg, tmp_path):
    import cv2

    predictor, cfg = predictor_and_cfg
    # 12-bit colour data in a 16-bit RGB PNG: Pillow alone would keep only the high byte.
    ramp = np.linspace(0, 1, 40 * 30).reshape(30, 40)
    rgb = np.stack([100 + 3600 * ramp, 3700 - 3600 * ramp, np.full((30, 40), 2000.0)], -1)
    rgb = np.rint(rgb).astype(np.uint16)
    path = tmp_path / "sixteen_rgb.png"
    assert cv2.imwrite(str(path), rgb[:, :, ::-1])

    image, _ = predictor.predict_file(path)
    expected = np.rint((rgb - 100.0) * 255.0 / 3600.0).astype(np.uint8)  # min 100, max 3700
    assert np.array_equal(image, expected[:, :, ::-1])  # BGR, as Detectron2's models take
    fed = predictor.model.inputs[-1]
    record = {"file_name": str(path), "image_id": 1, "height": 30, "width": 40,
              "annotations": []}
    for is_train in (False, True):
        mapped = SegContrastDatasetMapper(cfg, is_train)(record)
        assert torch.equal(fed["image"], mapped["image"].float()), f"is_train={is_train}"

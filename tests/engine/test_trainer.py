"""The trainer's safety nets: a NaN loss stops training with a message that names the iteration
and the last good checkpoint, before the NaN reaches the weights."""

from pathlib import Path

import pytest
import torch
from segcontrast.config import load_config
from segcontrast.data.shapes import ShapesConfig, generate_shapes
from segcontrast.datasets import register_coco_dataset, validate_dataset
from segcontrast.datasets.coco import unregister_coco_dataset
from segcontrast.engine.trainer import ProgressLoader, SegContrastTrainer, TrainingDivergedError

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def tiny_train(tmp_path):
    paths = generate_shapes(tmp_path / "data", ShapesConfig(num_train=4, num_val=1, image_size=64,
                                                            min_objects=2, max_objects=3, seed=1),
                            progress=False)
    register_coco_dataset("nan_check_train", paths["train"], paths["image_root"])
    validate_dataset("nan_check_train")
    yield "nan_check_train"
    unregister_coco_dataset("nan_check_train")


@pytest.mark.usefixtures("one_torch_thread")
def test_nan_loss_stops_training_naming_iteration_and_checkpoint(tiny_train, tmp_path):
    out = tmp_path / "out"
    cfg = load_config(str(REPO / "configs" / "shapes" / "mask_rcnn_bce.yaml"), [
        "DATASETS.TRAIN", f"('{tiny_train}',)", "DATASETS.TEST", "()",
        "SOLVER.MAX_ITER", "10", "SOLVER.CHECKPOINT_PERIOD", "2", "SOLVER.IMS_PER_BATCH", "2",
        "INPUT.MIN_SIZE_TRAIN", "(64,)", "INPUT.MASK_FORMAT", "bitmask",
        "OUTPUT_DIR", str(out),
    ])
    trainer = SegContrastTrainer(cfg)
    model = trainer._trainer.model
    real_forward = model.forward

    def forward_turning_nan(batched_inputs):
        losses = real_forward(batched_inputs)
        if trainer.iter >= 5:
            losses["loss_mask"] = losses["loss_mask"] * float("nan")
        return losses

    model.forward = forward_turning_nan
    with pytest.raises(TrainingDivergedError) as info:
        trainer.train()
    message = str(info.value)
    assert "iteration 5" in message
    assert "model_0000003.pth" in message
    assert "--resume" in message
    assert not (out / "model_0000005.pth").exists()
    saved = torch.load(out / "model_0000003.pth", weights_only=True)["model"]
    assert all(torch.isfinite(v).all() for v in saved.values() if v.is_floating_point())
    assert all(torch.isfinite(p).all() for p in model.parameters()), "NaN reached the weights"


def test_progress_loader_keeps_length_and_items():
    items = [[1], [2], [3]]
    loader = ProgressLoader(items, "test", enabled=False)
    assert len(loader) == 3
    assert list(loader) == items

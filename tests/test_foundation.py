"""The foundation: Detectron2 imports through segcontrast, a Mask R-CNN trains on the CPU,
compiled ops fail clearly, and the install steps are idempotent."""

import importlib
import subprocess
import sys
from pathlib import Path

import pytest
import segcontrast
import torch
from segcontrast import compat

REPO = Path(__file__).resolve().parents[1]


def test_detectron2_subpackages_import_after_segcontrast():
    for name in ("modeling", "data", "engine", "evaluation", "checkpoint", "model_zoo"):
        importlib.import_module(f"detectron2.{name}")


def test_description_names_detectron2_and_compiled_ops():
    text = compat.detectron2_description()
    assert text.startswith("detectron2 0.")
    assert "compiled ops" in text


def test_pillow_linear_alias():
    from PIL import Image

    assert Image.LINEAR == Image.BILINEAR


@pytest.mark.skipif(compat.has_compiled_ops(), reason="an official build has compiled ops")
def test_compiled_op_raises_clear_error():
    from detectron2.layers.rotated_boxes import pairwise_iou_rotated

    boxes = torch.tensor([[10.0, 10.0, 4.0, 4.0, 0.0]])
    with pytest.raises(compat.CompiledOpsUnavailableError) as info:
        pairwise_iou_rotated(boxes, boxes)
    message = str(info.value)
    assert "box_iou_rotated" in message
    assert "official build" in message and "README" in message


@pytest.mark.skipif(compat.has_compiled_ops(), reason="an official build has compiled ops")
def test_placeholder_looks_absent_to_introspection():
    placeholder = sys.modules["detectron2._C"]
    with pytest.raises(AttributeError):
        placeholder.__wrapped__  # noqa: B018
    assert not hasattr(placeholder, "__file__")
    # Detectron2's environment report still works (default_setup logs it).
    from detectron2.utils.collect_env import collect_env_info

    assert "detectron2" in collect_env_info()


def test_compat_apply_is_idempotent():
    before = sys.modules["detectron2._C"]
    compat.apply()
    assert sys.modules["detectron2._C"] is before


def _tiny_cfg():
    from detectron2.config import get_cfg

    cfg = get_cfg()
    segcontrast.add_segcontrast_config(cfg)
    cfg.merge_from_file(str(REPO / "configs" / "Base-Tiny-R18-GN.yaml"))
    cfg.MODEL.DEVICE = "cpu"
    cfg.MODEL.ROI_HEADS.NUM_CLASSES = 2
    return cfg


def _synthetic_batch(num_images=2, size=64):
    from detectron2.structures import BitMasks, Boxes, Instances

    batch = []
    for _ in range(num_images):
        masks = torch.zeros(2, size, size, dtype=torch.bool)
        masks[0, 8:30, 8:30] = True
        masks[1, 28:56, 30:60] = True
        instances = Instances((size, size))
        instances.gt_boxes = Boxes(torch.tensor([[8.0, 8.0, 30.0, 30.0], [30.0, 28.0, 60.0, 56.0]]))
        instances.gt_classes = torch.tensor([0, 1])
        instances.gt_masks = BitMasks(masks)
        image = torch.randint(0, 256, (3, size, size), dtype=torch.uint8)
        batch.append({"image": image, "instances": instances, "height": size, "width": size})
    return batch


def test_mask_rcnn_trains_one_step_on_cpu():
    from detectron2.modeling import build_model
    from detectron2.utils.events import EventStorage

    torch.manual_seed(0)
    model = build_model(_tiny_cfg())
    model.train()
    before = {k: v.detach().clone() for k, v in model.named_parameters()}
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    with EventStorage():
        losses = model(_synthetic_batch())
    assert set(losses) == {"loss_cls", "loss_box_reg", "loss_mask", "loss_rpn_cls", "loss_rpn_loc"}
    for name, value in losses.items():
        assert torch.isfinite(value), name
    optimizer.zero_grad()
    sum(losses.values()).backward()
    optimizer.step()
    changed = [k for k, v in model.named_parameters() if not torch.equal(v, before[k])]
    assert "roi_heads.mask_head.predictor.weight" in changed
    assert "backbone.bottom_up.stem.conv1.weight" in changed


def test_install_script_second_run_does_nothing():
    result = subprocess.run(
        [sys.executable, str(REPO / "tools" / "install_detectron2.py")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "already installed; nothing to do" in result.stdout
    assert len(result.stdout.strip().splitlines()) == 1


def test_install_script_patch_fails_loudly_on_unknown_setup_py(tmp_path):
    spec = importlib.util.spec_from_file_location(
        "install_detectron2", REPO / "tools" / "install_detectron2.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    known = tmp_path / "setup.py"
    known.write_text(
        "setup(\n"
        '    package_data={"detectron2.model_zoo": get_model_zoo_configs()},\n'
        "    ext_modules=get_extensions(),\n"
        '    cmdclass={"build_ext": torch.utils.cpp_extension.BuildExtension},\n'
        ")\n"
    )
    module.patch_setup_py(known)
    text = known.read_text()
    assert "ext_modules" not in text and "cmdclass" not in text
    assert '"configs/**/*.yaml"' in text
    with pytest.raises(module.InstallError, match="not the one this script knows"):
        module.patch_setup_py(known)


def test_make_setup_is_up_to_date_after_setup():
    # `make test` ran `make setup` first; a second setup must have nothing to do.
    result = subprocess.run(["make", "-q", "setup"], cwd=REPO, capture_output=True, timeout=60)
    assert result.returncode == 0, "make setup would reinstall: the stamp is not honoured"

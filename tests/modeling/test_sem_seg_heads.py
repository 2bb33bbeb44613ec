"""The focal and pos-weighted semantic heads inside Detectron2's SemanticSegmentor and PanopticFPN
on CPU: one training step against the stock SemSegFPNHead and an independent recomputation, a
batch without foreground, inference formats, the weights from pixel frequencies, and the config.
"""

from pathlib import Path

import numpy as np
import pytest
import segcontrast
import torch
import torch.nn.functional as F
from detectron2.config import get_cfg
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.layers import ShapeSpec
from detectron2.modeling import build_model
from detectron2.structures import BitMasks, Boxes, Instances
from detectron2.utils.events import EventStorage
from segcontrast.config import ConfigValueError, load_config, merge_config_file
from segcontrast.data.semantic_gt import semantic_gt_from_record
from segcontrast.modeling.postprocessing import MaskThresholdModel
from segcontrast.modeling.sem_seg_heads import FocalSemSegFPNHead, PosWeightedSemSegFPNHead

from tests.evaluation.synthetic import register_synthetic_dataset, synthetic_dataset

REPO = Path(__file__).resolve().parents[2]
ARCHS = ["semantic", "panoptic"]
HEADS = ["FocalSemSegFPNHead", "PosWeightedSemSegFPNHead"]
IGNORE = 255
K = 2  # thing classes; the semantic head predicts K + 1 labels


def _cfg(arch="semantic", head="SemSegFPNHead", **head_keys):
    cfg = get_cfg()
    segcontrast.add_segcontrast_config(cfg)
    merge_config_file(cfg, str(REPO / "configs" / "shapes" / f"Base-{arch}.yaml"))
    cfg.MODEL.DEVICE = "cpu"
    cfg.MODEL.ROI_HEADS.NUM_CLASSES = K
    cfg.MODEL.SEM_SEG_HEAD.NUM_CLASSES = K + 1
    cfg.MODEL.SEM_SEG_HEAD.CONVS_DIM = 32
    cfg.MODEL.RPN.POST_NMS_TOPK_TRAIN = 200
    cfg.MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE = 48
    cfg.MODEL.RPN.POST_NMS_TOPK_TEST = 100
    cfg.TEST.DETECTIONS_PER_IMAGE = 20
    cfg.MODEL.SEM_SEG_HEAD.NAME = head
    for key, value in head_keys.items():
        cfg.MODEL.SEM_SEG_HEAD[key] = value
    return cfg


def _image(gen, size, boxes, classes):
    """An image with an ellipse per box; ``sem_seg`` painted from them, a strip ignored."""
    ys, xs = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    masks = torch.zeros(len(boxes), size, size, dtype=torch.bool)
    labels = torch.zeros(size, size, dtype=torch.long)
    for i, ((x0, y0, x1, y1), label) in enumerate(zip(boxes, classes, strict=True)):
        cy, cx, ry, rx = (y0 + y1) / 2, (x0 + x1) / 2, (y1 - y0) / 2, (x1 - x0) / 2
        masks[i] = ((ys + 0.5 - cy) / ry) ** 2 + ((xs + 0.5 - cx) / rx) ** 2 <= 1
        labels[masks[i]] = label + 1
    labels[:, :3] = IGNORE
    instances = Instances((size, size))
    instances.gt_boxes = Boxes(torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4))
    instances.gt_classes = torch.tensor(classes, dtype=torch.int64)
    instances.gt_masks = BitMasks(masks)
    image = torch.randint(0, 256, (3, size, size), dtype=torch.uint8, generator=gen)
    return {"image": image, "instances": instances, "sem_seg": labels, "height": size,
            "width": size}


def _batch(empty=False, size=64):
    gen = torch.Generator().manual_seed(0)
    if empty:
        return [_image(gen, size, [], []), _image(gen, size, [], [])]
    return [
        _image(gen, size, [[6, 8, 30, 34], [34, 30, 60, 58]], [0, 1]),
        _image(gen, size, [[10, 10, 40, 30]], [1]),
    ]


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny tensors gain nothing from intra-op threads (and a busy machine makes them slow)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def stock_states():
    states = {}
    for arch in ARCHS:
        torch.manual_seed(0)
        states[arch] = build_model(_cfg(arch)).state_dict()
    return states


def _model(cfg, state):
    model = build_model(cfg)
    model.load_state_dict(state)
    return model


class _Capture:
    """Records the semantic head's raw predictions and targets in a forward."""

    def __init__(self, model):
        head = model.sem_seg_head
        head.register_forward_pre_hook(lambda _m, args: setattr(self, "targets", args[1]))
        head.predictor.register_forward_hook(lambda _m, _i, out: setattr(self, "logits", out))


def _train_step(model, batch, seed=1):
    model.train()
    capture = _Capture(model)
    torch.manual_seed(seed)  # proposal sampling
    with EventStorage() as storage:
        losses = model(batch)
    sum(losses.values()).backward()
    return losses, capture, storage


@pytest.fixture(scope="module")
def stock_losses(stock_states):
    return {arch: _train_step(_model(_cfg(arch), stock_states[arch]), _batch())[0]
            for arch in ARCHS}


def _upsampled(capture, stride=4):
    return F.interpolate(capture.logits.detach().float(), scale_factor=stride, mode="bilinear",
                         align_corners=False)


# --- training ---------------------------------------------------------------------------------


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("head", HEADS)
def test_training_step_changes_only_the_semantic_loss(arch, head, stock_states, stock_losses):
    model = _model(_cfg(arch, head), stock_states[arch])
    losses, _, storage = _train_step(model, _batch())
    stock = stock_losses[arch]
    assert set(losses) == set(stock)
    assert all(torch.isfinite(v) for v in losses.values())
    assert losses["loss_sem_seg"].item() != pytest.approx(stock["loss_sem_seg"].item(), rel=1e-3)
    for name in set(stock) - {"loss_sem_seg"}:  # the instance branch sees the same batch
        torch.testing.assert_close(losses[name], stock[name])
    predictor = model.sem_seg_head.predictor
    assert predictor.weight.grad is not None and predictor.weight.grad.abs().sum() > 0
    assert ("sem_seg/pos_weight" in storage.latest()) == (head == "PosWeightedSemSegFPNHead")


@pytest.mark.parametrize(
    "head, keys",
    [
        ("FocalSemSegFPNHead", {"FOCAL_GAMMA": 2.0}),
        ("FocalSemSegFPNHead", {"FOCAL_GAMMA": 1.5, "FOCAL_ALPHA": [0.5, 2.0, 1.0]}),
        ("PosWeightedSemSegFPNHead", {"POS_WEIGHT": "auto"}),
        ("PosWeightedSemSegFPNHead", {"POS_WEIGHT": "auto", "MAX_POS_WEIGHT": 1.5}),
        ("PosWeightedSemSegFPNHead", {"POS_WEIGHT": "3.5"}),
    ],
)
def test_loss_equals_independent_recomputation(head, keys, stock_states):
    cfg = _cfg("semantic", head, LOSS_WEIGHT=2.0, **keys)
    losses, capture, storage = _train_step(_model(cfg, stock_states["semantic"]), _batch())
    logits, targets = _upsampled(capture), capture.targets
    assert targets.shape == (2, 64, 64) and logits.shape == (2, K + 1, 64, 64)
    valid = targets != IGNORE
    if head == "FocalSemSegFPNHead":
        p = logits.double().softmax(dim=1)
        pt = p.gather(1, torch.where(valid, targets, 0).unsqueeze(1)).squeeze(1)
        alpha = torch.tensor(keys.get("FOCAL_ALPHA", [1.0] * (K + 1)), dtype=torch.float64)
        per_pixel = -alpha[torch.where(valid, targets, 0)] * (1 - pt) ** keys["FOCAL_GAMMA"] \
            * pt.log()
        expected = per_pixel[valid].mean().float()
    else:
        if keys["POS_WEIGHT"] == "auto":
            background = (targets == 0).sum().item()
            foreground = (valid & (targets > 0)).sum().item()
            weight = min(max(background / foreground, 1.0), keys.get("MAX_POS_WEIGHT", 20.0))
            assert 1.0 < background / foreground  # the clamp at 1.5 really bites below
        else:
            weight = float(keys["POS_WEIGHT"])
        assert storage.latest()["sem_seg/pos_weight"][0] == pytest.approx(weight, rel=1e-6)
        w = torch.tensor([1.0] + [weight] * K)
        expected = F.cross_entropy(logits, targets, weight=w, ignore_index=IGNORE,
                                   reduction="sum") / valid.sum()
    torch.testing.assert_close(losses["loss_sem_seg"], 2.0 * expected, rtol=1e-5, atol=0)


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("head", HEADS)
def test_batch_without_foreground(arch, head, stock_states):
    model = _model(_cfg(arch, head), stock_states[arch])
    losses, capture, storage = _train_step(model, _batch(empty=True))
    assert all(torch.isfinite(v) for v in losses.values())
    assert (capture.targets[capture.targets != IGNORE] == 0).all()
    assert losses["loss_sem_seg"] > 0
    if head == "PosWeightedSemSegFPNHead":
        # No foreground: the weight is the cap (it multiplies no pixel), as for the mask heads.
        assert storage.latest()["sem_seg/pos_weight"][0] == 20.0


# --- inference --------------------------------------------------------------------------------


def _inference_inputs(height=96, width=80):
    # The output size ("height", "width") differs from the network's input, as after resizing.
    return [{"image": d["image"], "height": height, "width": width} for d in _batch()]


@pytest.mark.parametrize("arch", ARCHS)
def test_inference_outputs_have_detectron2s_formats_and_equal_the_stock_heads(arch,
                                                                          stock_states):
    outputs = {}
    for head in ["SemSegFPNHead", *HEADS]:
        model = _model(_cfg(arch, head), stock_states[arch]).eval()
        with torch.no_grad():
            outputs[head] = model(_inference_inputs())
    stock = outputs.pop("SemSegFPNHead")
    for out in stock:
        assert out["sem_seg"].shape == (K + 1, 96, 80) and out["sem_seg"].dtype == torch.float32
        if arch == "semantic":
            assert list(out) == ["sem_seg"]
        else:
            assert list(out) == ["sem_seg", "instances", "panoptic_seg"]
            assert out["instances"].image_size == (96, 80)
            assert out["instances"].pred_masks.shape[1:] == (96, 80)
    for per_head in outputs.values():
        for ours, ref in zip(per_head, stock, strict=True):
            torch.testing.assert_close(ours["sem_seg"], ref["sem_seg"])


def test_mask_threshold_model_keeps_panoptic_fpns_outputs(stock_states):
    torch.manual_seed(0)
    model = _model(_cfg("panoptic"), stock_states["panoptic"]).eval()
    # Untrained, every mask probability is near 0.5: a higher score threshold is not needed,
    # but the masks must be non-trivial for the threshold to matter.
    model.roi_heads.box_predictor.test_score_thresh = 0.0
    inputs = _inference_inputs()
    with torch.no_grad():
        reference = model(inputs)
        at_half = MaskThresholdModel(model, 0.5).eval()(inputs)
        low = MaskThresholdModel(model, 0.3, combine_panoptic=False).eval()(inputs)
    for ref, ours, lower in zip(reference, at_half, low, strict=True):
        assert list(ours) == list(ref)
        torch.testing.assert_close(ours["sem_seg"], ref["sem_seg"], rtol=0, atol=0)
        for name in ref["instances"].get_fields():
            a, b = ours["instances"].get(name), ref["instances"].get(name)
            a, b = (a.tensor, b.tensor) if isinstance(b, Boxes) else (a, b)
            assert torch.equal(a, b), name
        assert torch.equal(ours["panoptic_seg"][0], ref["panoptic_seg"][0])
        assert ours["panoptic_seg"][1] == ref["panoptic_seg"][1]
        assert list(lower) == ["sem_seg", "instances"]
        torch.testing.assert_close(lower["sem_seg"], ref["sem_seg"], rtol=0, atol=0)
        masks_low, masks_half = lower["instances"].pred_masks, ours["instances"].pred_masks
        assert len(masks_half) > 0
        assert (masks_low >= masks_half).all() and masks_low.sum() > masks_half.sum()


def test_semantic_segmentor_is_called_as_it_is(stock_states):
    model = _model(_cfg("semantic"), stock_states["semantic"]).eval()
    with torch.no_grad():
        ref = model(_inference_inputs())
        ours = MaskThresholdModel(model, 0.3).eval()(_inference_inputs())
    for a, b in zip(ours, ref, strict=True):
        assert list(a) == ["sem_seg"]
        torch.testing.assert_close(a["sem_seg"], b["sem_seg"], rtol=0, atol=0)


# --- weights from the training set's pixel frequencies ----------------------------------------


@pytest.fixture(scope="module")
def counted_dataset():
    name = "segcontrast_test_semantic_frequencies"
    dicts = synthetic_dataset(5, height=48, width=56, num_classes=K, instances_per_image=4,
                              seed=3)
    register_synthetic_dataset(name, dicts, K)
    counts = np.zeros(K + 1, np.int64)
    for record in dicts:
        labels = semantic_gt_from_record(record, K)
        counts += np.array([(labels == c).sum() for c in range(K + 1)])
    yield name, counts
    DatasetCatalog.remove(name)
    MetadataCatalog.remove(name)


def test_frequency_weights_come_from_the_training_set_once(counted_dataset, stock_states):
    name, counts = counted_dataset
    cfg = _cfg("semantic", "PosWeightedSemSegFPNHead", POS_WEIGHT="frequency",
               MAX_POS_WEIGHT=50.0)
    cfg.DATASETS.TRAIN = (name,)
    model = _model(cfg, stock_states["semantic"])
    head = model.sem_seg_head
    assert head.class_weights is None  # built, not yet counted: eval-only never counts
    losses, capture, storage = _train_step(model, _batch())
    total = counts.sum()
    expected = np.clip((total - counts) / counts, 1, 50)
    assert expected[1:].min() > 1  # foreground is the minority in this set
    torch.testing.assert_close(head.class_weights, torch.tensor(expected, dtype=torch.float32))
    targets = capture.targets
    fg_counts = np.array([(targets == c).sum().item() for c in range(1, K + 1)])
    logged = (expected[1:] * fg_counts).sum() / fg_counts.sum()
    assert storage.latest()["sem_seg/pos_weight"][0] == pytest.approx(logged, rel=1e-6)
    reference = F.cross_entropy(_upsampled(capture), targets, weight=head.class_weights,
                                ignore_index=IGNORE, reduction="sum") / (targets != IGNORE).sum()
    torch.testing.assert_close(losses["loss_sem_seg"], reference, rtol=1e-5, atol=0)
    weights = head.class_weights
    _train_step(model, _batch())
    assert head.class_weights is weights  # not recounted per batch
    assert "class_weights" not in model.state_dict()  # checkpoints stay the stock head's


def test_frequency_head_without_its_dataset_still_predicts(stock_states):
    cfg = _cfg("semantic", "PosWeightedSemSegFPNHead", POS_WEIGHT="frequency")
    cfg.DATASETS.TRAIN = ("segcontrast_test_not_registered",)
    model = _model(cfg, stock_states["semantic"]).eval()
    with torch.no_grad():
        assert model(_inference_inputs())[0]["sem_seg"].shape == (K + 1, 96, 80)


# --- the heads without a cfg, and the config --------------------------------------------------


def _features():
    gen = torch.Generator().manual_seed(2)
    shapes = {f"p{i}": ShapeSpec(channels=8, stride=2**i) for i in range(2, 6)}
    feats = {k: torch.randn(1, 8, 32 // v.stride, 32 // v.stride, generator=gen)
             for k, v in shapes.items()}
    return shapes, feats


def test_heads_build_without_cfg_and_check_arguments():
    shapes, feats = _features()
    common = {"num_classes": 3, "conv_dims": 8, "common_stride": 4, "ignore_value": IGNORE}
    head = FocalSemSegFPNHead(shapes, focal_gamma=1.0, focal_alpha=[1, 2, 3], **common).train()
    targets = torch.randint(0, 3, (1, 32, 32))
    with EventStorage():
        _, losses = head(feats, targets)
    logits = F.interpolate(head.layers(feats), scale_factor=4, mode="bilinear",
                           align_corners=False)
    expected = -torch.tensor([1.0, 2, 3])[targets] * (1 - logits.softmax(1).gather(
        1, targets[:, None])[:, 0]) * logits.log_softmax(1).gather(1, targets[:, None])[:, 0]
    torch.testing.assert_close(losses["loss_sem_seg"], expected.mean(), rtol=1e-5, atol=0)
    head = PosWeightedSemSegFPNHead(shapes, pos_weight="frequency", class_weights=[1, 4, 5],
                                    **common)
    assert head.frequency_weights().tolist() == [1.0, 4.0, 5.0]
    with pytest.raises(ConfigValueError, match="MODEL.SEM_SEG_HEAD.POS_WEIGHT = 'autoo'"):
        PosWeightedSemSegFPNHead(shapes, pos_weight="autoo", **common)
    with pytest.raises(ValueError, match="needs frequency_datasets"):
        PosWeightedSemSegFPNHead(shapes, pos_weight="frequency", **common)
    with pytest.raises(ValueError, match="focal_alpha must hold 3"):
        FocalSemSegFPNHead(shapes, focal_alpha=[1.0, 2.0], **common)
    with pytest.raises(ValueError, match="max_pos_weight"):
        PosWeightedSemSegFPNHead(shapes, max_pos_weight=0.5, **common)


@pytest.mark.parametrize("dataset", ["shapes", "dsb2018"])
@pytest.mark.parametrize("arch", ARCHS)
def test_leaf_configs_pick_the_heads(dataset, arch):
    names = {"ce": "SemSegFPNHead", "focal": "FocalSemSegFPNHead",
             "posce": "PosWeightedSemSegFPNHead"}
    classes = {"shapes": 3, "dsb2018": 1}[dataset]
    for leaf, name in names.items():
        cfg = load_config(str(REPO / "configs" / dataset / f"{arch}_{leaf}.yaml"), [])
        assert cfg.MODEL.SEM_SEG_HEAD.NAME == name
        assert cfg.MODEL.SEM_SEG_HEAD.NUM_CLASSES == classes + 1
        assert cfg.MODEL.META_ARCHITECTURE == {"semantic": "SemanticSegmentor",
                                               "panoptic": "PanopticFPN"}[arch]
        if arch == "panoptic":
            assert cfg.MODEL.PANOPTIC_FPN.COMBINE.ENABLED is False and cfg.MODEL.MASK_ON


def test_config_keys_from_yaml_and_command_line(tmp_path):
    leaf = tmp_path / "leaf.yaml"
    leaf.write_text(f'_BASE_: "{REPO}/configs/shapes/semantic_posce.yaml"\n'
                    "MODEL:\n  SEM_SEG_HEAD:\n    POS_WEIGHT: 4.5\n    MAX_POS_WEIGHT: 8.0\n")
    cfg = load_config(str(leaf), [])
    assert cfg.MODEL.SEM_SEG_HEAD.POS_WEIGHT == "4.5" and cfg.MODEL.SEM_SEG_HEAD.MAX_POS_WEIGHT == 8
    cfg = load_config(str(leaf), ["MODEL.SEM_SEG_HEAD.POS_WEIGHT", "3",
                                  "MODEL.SEM_SEG_HEAD.NAME", "FocalSemSegFPNHead",
                                  "MODEL.SEM_SEG_HEAD.FOCAL_ALPHA", "[0.5, 1.0, 1.0, 1.0]",
                                  "MODEL.SEM_SEG_HEAD.FOCAL_GAMMA", "1.0"])
    assert cfg.MODEL.SEM_SEG_HEAD.POS_WEIGHT == "3"
    cfg.MODEL.DEVICE = "cpu"
    head = build_model(cfg).sem_seg_head
    assert isinstance(head, FocalSemSegFPNHead) and head.focal_gamma == 1.0
    assert head.focal_alpha.tolist() == [0.5, 1.0, 1.0, 1.0]


@pytest.mark.parametrize(
    "key, value, message",
    [
        ("POS_WEIGHT", "autoo", "MODEL.SEM_SEG_HEAD.POS_WEIGHT = 'autoo' is not allowed"),
        ("POS_WEIGHT", "-2", "MODEL.SEM_SEG_HEAD.POS_WEIGHT = '-2' is not allowed"),
        ("MAX_POS_WEIGHT", "0.5", "MODEL.SEM_SEG_HEAD.MAX_POS_WEIGHT = 0.5 is not allowed"),
        ("FOCAL_GAMMA", "-1.0", "MODEL.SEM_SEG_HEAD.FOCAL_GAMMA = -1.0 is not allowed"),
        ("FOCAL_ALPHA", "[1.0, 2.0]", r"FOCAL_ALPHA = \[1.0, 2.0\] is not allowed: expected \[\] "
         r"or MODEL.SEM_SEG_HEAD.NUM_CLASSES \(4\)"),
        ("IGNORE_VALUE", "0", "MODEL.SEM_SEG_HEAD.IGNORE_VALUE = 0 is not allowed"),
    ],
)
def test_bad_values_stop_at_config_time(key, value, message):
    with pytest.raises(ConfigValueError, match=message):
        load_config(str(REPO / "configs" / "shapes" / "semantic_posce.yaml"),
                    [f"MODEL.SEM_SEG_HEAD.{key}", value])

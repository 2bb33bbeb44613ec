"""The focal and pos-weighted BCE mask heads inside a tiny Mask R-CNN on CPU, and their config.

The references are Detectron2's own target building (``crop_and_resize``; checked against its
``mask_rcnn_loss``), torchvision's ``sigmoid_focal_loss`` and torch's BCE with ``pos_weight``.
"""

from pathlib import Path

import pytest
import segcontrast
import torch
import torch.nn.functional as F
from detectron2.config import get_cfg
from detectron2.layers import ShapeSpec
from detectron2.modeling import build_model
from detectron2.modeling.roi_heads.mask_head import build_mask_head, mask_rcnn_loss
from detectron2.structures import BitMasks, Boxes, Instances
from detectron2.utils.events import EventStorage
from segcontrast.config import (
    ConfigValueError,
    merge_config_file,
    normalize_opts,
    validate_segcontrast_config,
)
from segcontrast.modeling import FocalLossMaskHead, PosWeightedBCEMaskHead, build_mask_targets
from torchvision.ops import sigmoid_focal_loss

REPO = Path(__file__).resolve().parents[2]
HEADS = ["FocalLossMaskHead", "PosWeightedBCEMaskHead"]
METRICS = ("mask_rcnn/accuracy", "mask_rcnn/false_positive", "mask_rcnn/false_negative")


def _cfg(head="MaskRCNNConvUpsampleHead", **mask_head_keys):
    cfg = get_cfg()
    segcontrast.add_segcontrast_config(cfg)
    cfg.merge_from_file(str(REPO / "configs" / "Base-Tiny-R18-GN.yaml"))
    cfg.MODEL.DEVICE = "cpu"
    cfg.MODEL.ROI_HEADS.NUM_CLASSES = 2
    # Fewer sampled proposals than the base config: a faster step, still ~10 mask ROIs an image.
    cfg.MODEL.RPN.POST_NMS_TOPK_TRAIN = 200
    cfg.MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE = 48
    cfg.MODEL.RPN.POST_NMS_TOPK_TEST = 100
    cfg.TEST.DETECTIONS_PER_IMAGE = 20
    cfg.MODEL.ROI_MASK_HEAD.NAME = head
    for key, value in mask_head_keys.items():
        cfg.MODEL.ROI_MASK_HEAD[key] = value
    return cfg


def _image(gen, size, boxes, classes):
    """An image dict with an instance per box: an ellipse (class 0) or a thin ring (class 1).

    Rings cover less than half of their box, so that "auto" pos_weight is above its floor of 1.
    """
    ys, xs = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    masks = torch.zeros(len(boxes), size, size, dtype=torch.bool)
    for i, ((x0, y0, x1, y1), label) in enumerate(zip(boxes, classes, strict=True)):
        cy, cx, ry, rx = (y0 + y1) / 2, (x0 + x1) / 2, (y1 - y0) / 2, (x1 - x0) / 2
        radius = ((ys + 0.5 - cy) / ry) ** 2 + ((xs + 0.5 - cx) / rx) ** 2
        masks[i] = (radius <= 1) & (radius > (0.5 if label == 1 else -1))
    instances = Instances((size, size))
    instances.gt_boxes = Boxes(torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4))
    instances.gt_classes = torch.tensor(classes, dtype=torch.int64)
    instances.gt_masks = BitMasks(masks)
    image = torch.randint(0, 256, (3, size, size), dtype=torch.uint8, generator=gen)
    return {"image": image, "instances": instances, "height": size, "width": size}


def _batch(empty=False, size=64):
    gen = torch.Generator().manual_seed(0)
    if empty:
        return [_image(gen, size, [], []), _image(gen, size, [], [])]
    return [
        _image(gen, size, [[6, 8, 30, 34], [30, 28, 60, 58], [36, 4, 58, 22]], [0, 1, 1]),
        _image(gen, size, [[10, 10, 50, 40], [4, 40, 24, 62]], [1, 0]),
    ]


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny tensors gain nothing from intra-op threads, and on a busy machine OpenMP's spinning
    workers make each step 10-30x slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def stock_state():
    torch.manual_seed(0)
    return build_model(_cfg()).state_dict()


@pytest.fixture(scope="module")
def stock_losses(stock_state):
    return _train_step(_model(_cfg(), stock_state), _batch())[0]


def _model(cfg, state):
    model = build_model(cfg)
    model.load_state_dict(state)
    return model


class _Capture:
    """Records what the mask head receives (instances) and predicts (logits) in a forward."""

    def __init__(self, model):
        head = model.roi_heads.mask_head
        head.register_forward_pre_hook(lambda _module, args: setattr(self, "instances", args[1]))
        head.predictor.register_forward_hook(lambda _m, _i, out: setattr(self, "logits", out))


def _train_step(model, batch, seed=1):
    """One forward/backward with a fixed seed (proposal sampling is random)."""
    model.train()
    capture = _Capture(model)
    torch.manual_seed(seed)
    with EventStorage() as storage:
        losses = model(batch)
    sum(losses.values()).backward()
    return losses, capture, storage


def _reference_inputs(logits, instances):
    """Detectron2's target building, written out: GT masks cropped to proposals, GT channel."""
    logits = logits.detach()
    masks = torch.cat(
        [
            i.gt_masks.crop_and_resize(i.proposal_boxes.tensor, logits.shape[-1])
            for i in instances
            if len(i)
        ]
    ).float()
    if logits.shape[1] == 1:
        selected = logits[:, 0]
    else:
        classes = torch.cat([i.gt_classes for i in instances])
        selected = logits[torch.arange(len(classes)), classes]
    # The targets are Detectron2's: its own loss on them is its mask_rcnn_loss.
    with EventStorage():
        torch.testing.assert_close(
            F.binary_cross_entropy_with_logits(selected, masks), mask_rcnn_loss(logits, instances)
        )
    return selected, masks


def _pos_weight(masks, max_weight, dims=None):
    """num_neg / num_pos, clamped to [1, max_weight]; max_weight where there is no foreground."""
    if dims is None:
        pos, total = masks.sum().double(), masks.numel()
    else:
        pos, total = masks.sum(dims, keepdim=True).double(), masks[0].numel()
    ratio = torch.where(pos > 0, (total - pos) / pos.clamp_min(1), torch.tensor(max_weight))
    return ratio.clamp(1, max_weight)


# --- training ---------------------------------------------------------------------------------


@pytest.mark.parametrize("head", HEADS)
def test_training_step_changes_only_the_mask_loss(head, stock_state, stock_losses):
    losses, capture, storage = _train_step(_model(_cfg(head), stock_state), _batch())
    assert torch.isfinite(losses["loss_mask"])
    assert losses["loss_mask"].item() != pytest.approx(stock_losses["loss_mask"].item(), rel=1e-3)
    for name in ("loss_cls", "loss_box_reg", "loss_rpn_cls", "loss_rpn_loc"):
        torch.testing.assert_close(losses[name], stock_losses[name])
    assert len(capture.logits) > 4  # the step did train masks
    latest = storage.latest()
    assert all(0 <= latest[name][0] <= 1 for name in METRICS)
    assert ("mask_rcnn/pos_weight" in latest) == (head == "PosWeightedBCEMaskHead")


@pytest.mark.parametrize(
    "head, keys, agnostic",
    [
        ("FocalLossMaskHead", {"FOCAL_ALPHA": 0.4, "FOCAL_GAMMA": 1.5}, False),
        ("FocalLossMaskHead", {"FOCAL_ALPHA": 0.4, "FOCAL_GAMMA": 1.5}, True),
        ("PosWeightedBCEMaskHead", {"POS_WEIGHT": "auto", "MAX_POS_WEIGHT": 2.0}, False),
        ("PosWeightedBCEMaskHead", {"POS_WEIGHT": "auto", "POS_WEIGHT_SCOPE": "instance"}, False),
        ("PosWeightedBCEMaskHead", {"POS_WEIGHT": "auto", "POS_WEIGHT_SCOPE": "instance"}, True),
        ("PosWeightedBCEMaskHead", {"POS_WEIGHT": "3.5"}, False),
    ],
)
def test_loss_mask_equals_independent_recomputation(head, keys, agnostic):
    cfg = _cfg(head, LOSS_WEIGHT=2.0, CLS_AGNOSTIC_MASK=agnostic, **keys)
    torch.manual_seed(0)
    model = build_model(cfg)
    losses, capture, storage = _train_step(model, _batch())
    assert capture.logits.shape[1] == (1 if agnostic else 2)
    logits, masks = _reference_inputs(capture.logits, capture.instances)
    if head == "FocalLossMaskHead":
        expected = sigmoid_focal_loss(logits, masks, 0.4, 1.5, reduction="mean")
    else:
        if keys["POS_WEIGHT"] != "auto":
            weight = torch.tensor(float(keys["POS_WEIGHT"]))
        elif keys.get("POS_WEIGHT_SCOPE") == "instance":
            weight = _pos_weight(masks, 20.0, dims=(1, 2))
            assert weight.shape == (len(masks), 1, 1) and len(weight.unique()) > 1
        else:
            weight = _pos_weight(masks, keys["MAX_POS_WEIGHT"])
        expected = F.binary_cross_entropy_with_logits(logits, masks, pos_weight=weight.float())
        logged = storage.latest()["mask_rcnn/pos_weight"][0]
        assert logged == pytest.approx(weight.double().mean().item(), rel=1e-9)
    torch.testing.assert_close(losses["loss_mask"], 2.0 * expected, rtol=1e-6, atol=0)
    # Metrics as Detectron2's mask_rcnn_loss logs them on the same logits and instances.
    with EventStorage() as stock_storage:
        mask_rcnn_loss(capture.logits.detach(), capture.instances)
    for name in METRICS:
        assert storage.latest()[name][0] == stock_storage.latest()[name][0]


@pytest.mark.parametrize("head", HEADS)
def test_batch_without_instances(head, stock_state):
    model = _model(_cfg(head), stock_state)
    losses, capture, _ = _train_step(model, _batch(empty=True))
    assert len(capture.logits) == 0
    assert losses["loss_mask"].item() == 0 and losses["loss_mask"].requires_grad
    predictor = model.roi_heads.mask_head.predictor
    assert predictor.weight.grad is not None and (predictor.weight.grad == 0).all()
    # One image without instances next to one with them: only the latter's ROIs count.
    batch = [_batch(empty=True)[0], _batch()[1]]
    losses, capture, _ = _train_step(_model(_cfg(head), stock_state), batch)
    assert torch.isfinite(losses["loss_mask"]) and losses["loss_mask"] > 0


@pytest.mark.parametrize("agnostic", [False, True])
def test_inference_output_matches_stock_head(agnostic, stock_state):
    torch.manual_seed(0)
    stock_cfg = _cfg(CLS_AGNOSTIC_MASK=agnostic)
    state = build_model(stock_cfg).state_dict() if agnostic else stock_state
    images = [{k: v for k, v in d.items() if k != "instances"} for d in _batch()]
    outputs = {}
    for head in ["MaskRCNNConvUpsampleHead", *HEADS]:
        model = _model(_cfg(head, CLS_AGNOSTIC_MASK=agnostic), state).eval()
        with torch.no_grad():
            outputs[head] = [o["instances"] for o in model(images)]
    stock = outputs.pop("MaskRCNNConvUpsampleHead")
    assert sum(len(i) for i in stock) > 0
    for per_head in outputs.values():
        for ours, ref in zip(per_head, stock, strict=True):
            assert ours.image_size == ref.image_size
            assert set(ours.get_fields()) == set(ref.get_fields()) >= {"pred_masks", "scores"}
            for name in ref.get_fields():
                a, b = ours.get(name), ref.get(name)
                a, b = (a.tensor, b.tensor) if isinstance(b, Boxes) else (a, b)
                assert a.dtype == b.dtype and a.shape == b.shape, name
                torch.testing.assert_close(a, b)  # same weights: the same predictions


# --- the heads on their own (no cfg) ----------------------------------------------------------


def _roi_inputs(num_rois=4, side=14):
    """Features and one image's foreground proposals, one ROI without foreground."""
    gen = torch.Generator().manual_seed(3)
    masks = torch.zeros(num_rois, 40, 40, dtype=torch.bool)
    masks[0, 5:30, 5:30] = True
    masks[1, 10:14, 10:14] = True  # a small object: a high ratio
    masks[2, 0:40, 0:35] = True  # a large one: ratio < 1, clamped
    instances = Instances((40, 40))
    instances.proposal_boxes = Boxes(torch.tensor([[0.0, 0.0, 40.0, 40.0]] * num_rois))
    instances.gt_classes = torch.tensor([0, 1, 1, 0])
    instances.gt_masks = BitMasks(masks)
    features = torch.randn(num_rois, 8, side, side, generator=gen)
    return features, [instances]


def _head(cls, **kwargs):
    torch.manual_seed(0)
    return cls(
        ShapeSpec(channels=8, height=14, width=14), num_classes=2, conv_dims=[8, 8], **kwargs
    )


def test_instance_scope_uses_one_ratio_per_roi():
    features, instances = _roi_inputs()
    results = {}
    for scope in ("batch", "instance"):
        head = _head(PosWeightedBCEMaskHead, pos_weight_scope=scope, max_pos_weight=10.0).train()
        with EventStorage() as storage:
            loss = head(features, instances)["loss_mask"]
        results[scope] = loss, storage.latest()["mask_rcnn/pos_weight"][0]
        batch = build_mask_targets(head.layers(features), instances)
    per_roi = _pos_weight(batch.targets, 10.0, dims=(1, 2))
    assert per_roi.flatten().tolist()[2:] == [1.0, 10.0]  # clamped below; no foreground: the cap
    expected = F.binary_cross_entropy_with_logits(
        batch.logits.detach(), batch.targets, pos_weight=per_roi.float()
    )
    torch.testing.assert_close(results["instance"][0], expected, rtol=1e-6, atol=0)
    assert results["instance"][1] == pytest.approx(per_roi.mean().item())
    assert results["batch"][1] == pytest.approx(_pos_weight(batch.targets, 10.0).item())
    assert results["batch"][0].item() != pytest.approx(results["instance"][0].item(), rel=1e-3)


def test_heads_build_without_cfg_and_check_arguments():
    head = _head(FocalLossMaskHead, focal_alpha=0.5, focal_gamma=1.0, loss_weight=3.0)
    assert (head.focal_alpha, head.focal_gamma, head.loss_weight) == (0.5, 1.0, 3.0)
    head = _head(PosWeightedBCEMaskHead, pos_weight="4")
    assert head.pos_weight == 4.0 and head.pos_weight_scope == "batch"
    with pytest.raises(
        ValueError, match=r"pos_weight_scope must be one of \['batch', 'instance'\]"
    ):
        _head(PosWeightedBCEMaskHead, pos_weight_scope="roi")
    with pytest.raises(ConfigValueError, match="MODEL.ROI_MASK_HEAD.POS_WEIGHT = 'autoo'"):
        _head(PosWeightedBCEMaskHead, pos_weight="autoo")
    with pytest.raises(ValueError, match="max_pos_weight must be >= 1"):
        _head(PosWeightedBCEMaskHead, max_pos_weight=0.5)
    with pytest.raises(ValueError, match="focal_gamma must be >= 0"):
        _head(FocalLossMaskHead, focal_gamma=-1.0)


# --- config -----------------------------------------------------------------------------------

NEW_KEYS = {
    "FOCAL_ALPHA": 0.4,
    "FOCAL_GAMMA": 1.5,
    "POS_WEIGHT": "4.5",
    "POS_WEIGHT_SCOPE": "instance",
    "MAX_POS_WEIGHT": 8.0,
    "LOSS_WEIGHT": 2.5,
}


def _check_heads_read_keys(cfg):
    shape = ShapeSpec(channels=64, height=14, width=14)
    cfg.MODEL.ROI_MASK_HEAD.NAME = "FocalLossMaskHead"
    focal = build_mask_head(cfg, shape)
    assert isinstance(focal, FocalLossMaskHead)
    assert (focal.focal_alpha, focal.focal_gamma, focal.loss_weight) == (0.4, 1.5, 2.5)
    cfg.MODEL.ROI_MASK_HEAD.NAME = "PosWeightedBCEMaskHead"
    posbce = build_mask_head(cfg, shape)
    assert (posbce.pos_weight, posbce.pos_weight_scope, posbce.max_pos_weight) == (
        4.5,
        "instance",
        8.0,
    )
    assert posbce.loss_weight == 2.5


def _yaml(tmp_path, lines):
    path = tmp_path / "mask_head.yaml"
    path.write_text("VERSION: 2\nMODEL:\n  ROI_MASK_HEAD:\n" + "".join(f"    {x}\n" for x in lines))
    return str(path)


def test_every_key_from_yaml(tmp_path):
    # POS_WEIGHT's number is quoted twice: yacs literal-evaluates a yaml string, so "4.5" alone
    # would arrive as a float (see test_pos_weight_plain_number_from_yaml).
    lines = [f"{key}: {value}" for key, value in NEW_KEYS.items() if key != "POS_WEIGHT"]
    lines.append("POS_WEIGHT: \"'4.5'\"")
    cfg = _cfg()
    cfg.merge_from_file(_yaml(tmp_path, lines))
    for key, value in NEW_KEYS.items():
        assert cfg.MODEL.ROI_MASK_HEAD[key] == value, key
    validate_segcontrast_config(cfg)
    _check_heads_read_keys(cfg)


def test_pos_weight_plain_number_from_yaml(tmp_path):
    # Detectron2's own merge_from_file refuses a number against the string default;
    # segcontrast.config.merge_config_file (what the tools use) accepts it.
    cfg = _cfg()
    with pytest.raises(ValueError):
        cfg.clone().merge_from_file(_yaml(tmp_path, ["POS_WEIGHT: 4.5"]))
    merge_config_file(cfg, _yaml(tmp_path, ["POS_WEIGHT: 4.5"]))
    assert cfg.MODEL.ROI_MASK_HEAD.POS_WEIGHT == "4.5"
    assert float(cfg.MODEL.ROI_MASK_HEAD.POS_WEIGHT) == 4.5
    merge_config_file(cfg, _yaml(tmp_path, ['POS_WEIGHT: "2"']))
    assert cfg.MODEL.ROI_MASK_HEAD.POS_WEIGHT == "2"
    merge_config_file(cfg, _yaml(tmp_path, ['POS_WEIGHT: "auto"']))
    assert cfg.MODEL.ROI_MASK_HEAD.POS_WEIGHT == "auto"


def test_every_key_from_command_line():
    # As argparse hands them over: every value a string.
    opts = []
    for key, value in NEW_KEYS.items():
        opts += [f"MODEL.ROI_MASK_HEAD.{key}", str(value)]
    cfg = _cfg()
    cfg.merge_from_list(normalize_opts(opts))
    for key, value in NEW_KEYS.items():
        assert cfg.MODEL.ROI_MASK_HEAD[key] == value, key
    validate_segcontrast_config(cfg)
    _check_heads_read_keys(cfg)
    cfg.merge_from_list(normalize_opts(["MODEL.ROI_MASK_HEAD.POS_WEIGHT", "auto"]))
    assert build_mask_head(cfg, ShapeSpec(channels=64, height=14, width=14)).pos_weight == "auto"


def test_unknown_value_fails_at_config_time(tmp_path):
    cfg = _cfg("PosWeightedBCEMaskHead")
    cfg.merge_from_file(_yaml(tmp_path, ['POS_WEIGHT: "autoo"']))
    with pytest.raises(ConfigValueError) as info:
        validate_segcontrast_config(cfg)
    message = str(info.value)
    assert "MODEL.ROI_MASK_HEAD.POS_WEIGHT" in message and "'autoo'" in message
    assert "'auto'" in message and "positive" in message
    # Building the model checks it too, for callers that skipped validation.
    with pytest.raises(ConfigValueError, match="MODEL.ROI_MASK_HEAD.POS_WEIGHT = 'autoo'"):
        build_model(cfg)
    cfg = _cfg("PosWeightedBCEMaskHead", POS_WEIGHT_SCOPE="roi")
    with pytest.raises(
        ConfigValueError, match=r"POS_WEIGHT_SCOPE = 'roi'.*\['batch', 'instance'\]"
    ):
        build_model(cfg)


@pytest.mark.parametrize(
    "config, head",
    [
        (f"{prefix}{loss}.yaml", name)
        for prefix in ("shapes/mask_rcnn_", "dsb2018/mask_rcnn_", "COCO/mask_rcnn_R_50_FPN_1x_")
        for loss, name in [
            ("bce", "MaskRCNNConvUpsampleHead"),
            ("focal", "FocalLossMaskHead"),
            ("posbce", "PosWeightedBCEMaskHead"),
        ]
    ],
)
def test_shipped_configs_select_the_heads(config, head):
    cfg = get_cfg()
    segcontrast.add_segcontrast_config(cfg)
    cfg.merge_from_file(str(REPO / "configs" / config))
    validate_segcontrast_config(cfg)
    built = build_mask_head(
        cfg, ShapeSpec(channels=cfg.MODEL.FPN.OUT_CHANNELS, height=14, width=14)
    )
    assert type(built).__name__ == head
    if head == "FocalLossMaskHead":
        assert built.focal_gamma == 2.0
        # COCO keeps torchvision's alpha; the built-in data use alpha 0.5 and loss weight 4
        # (see configs/shapes/mask_rcnn_focal.yaml).
        expected = (0.25, 1.0) if config.startswith("COCO") else (0.5, 4.0)
        assert (built.focal_alpha, built.loss_weight) == expected
    if head == "PosWeightedBCEMaskHead":
        assert (built.pos_weight, built.pos_weight_scope) == ("auto", "batch")

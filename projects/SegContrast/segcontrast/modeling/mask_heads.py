"""Mask R-CNN mask heads that differ from Detectron2's stock head only in the loss.

Both subclass ``MaskRCNNConvUpsampleHead`` (same layers, same weights, same inference), and are
selected with ``MODEL.ROI_MASK_HEAD.NAME``:

* ``FocalLossMaskHead``: :func:`segcontrast.modeling.losses.focal_loss_with_logits`
  (``FOCAL_ALPHA``, ``FOCAL_GAMMA``);
* ``PosWeightedBCEMaskHead``: :func:`segcontrast.modeling.losses.pos_weighted_bce_with_logits`
  (``POS_WEIGHT``, ``POS_WEIGHT_SCOPE``, ``MAX_POS_WEIGHT``).

Both scale their loss by ``LOSS_WEIGHT``. The mask targets, the choice of the ground-truth class's
channel and the training metrics are those of Detectron2's ``mask_rcnn_loss``.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from detectron2.config import configurable
from detectron2.layers import ShapeSpec, cat
from detectron2.modeling.roi_heads.mask_head import (
    ROI_MASK_HEAD_REGISTRY,
    MaskRCNNConvUpsampleHead,
    mask_rcnn_inference,
)
from detectron2.structures import Instances
from detectron2.utils.events import get_event_storage
from torch import Tensor

from ..config import POS_WEIGHT_SCOPES, parse_pos_weight, validate_segcontrast_config
from .losses import auto_pos_weight, focal_loss_with_logits, pos_weighted_bce_with_logits


class MaskTargets(NamedTuple):
    """The mask-loss inputs of a batch's foreground ROIs.

    Attributes:
        logits: (R, M, M) logits of each ROI's ground-truth class (or the class-agnostic channel).
        targets: (R, M, M) float32 targets (0/1 for bit and polygon masks).
        targets_bool: (R, M, M) ``targets > 0.5``, for the metrics.
    """

    logits: Tensor
    targets: Tensor
    targets_bool: Tensor


def build_mask_targets(pred_mask_logits: Tensor, instances: list[Instances]) -> MaskTargets | None:
    """Select the logits and build the targets exactly as Detectron2's ``mask_rcnn_loss`` does.

    Each ROI's ground-truth mask is cropped to its proposal box and resized to the mask side
    (``gt_masks.crop_and_resize``); the logits are those of the ROI's ground-truth class, or the
    single channel of a class-agnostic head.

    Args:
        pred_mask_logits (Tensor): (R, C, M, M) or (R, 1, M, M) logits of all ROIs of the batch.
        instances (list[Instances]): per image, the foreground proposals with ``proposal_boxes``,
            ``gt_classes`` and ``gt_masks``, in the order of ``pred_mask_logits``.

    Returns:
        The selected logits and targets, or None when the batch has no foreground ROI.
    """
    cls_agnostic_mask = pred_mask_logits.size(1) == 1
    mask_side_len = pred_mask_logits.size(2)
    if pred_mask_logits.size(2) != pred_mask_logits.size(3):
        raise ValueError(f"mask predictions must be square, got {tuple(pred_mask_logits.shape)}")
    gt_classes = []
    gt_masks = []
    for instances_per_image in instances:
        if len(instances_per_image) == 0:
            continue
        if not cls_agnostic_mask:
            gt_classes.append(instances_per_image.gt_classes.to(dtype=torch.int64))
        masks = instances_per_image.gt_masks.crop_and_resize(
            instances_per_image.proposal_boxes.tensor, mask_side_len
        )
        gt_masks.append(masks.to(device=pred_mask_logits.device))
    if not gt_masks:
        return None
    masks = cat(gt_masks, dim=0)
    if cls_agnostic_mask:
        logits = pred_mask_logits[:, 0]
    else:
        indices = torch.arange(pred_mask_logits.size(0), device=pred_mask_logits.device)
        classes = cat(gt_classes, dim=0).to(device=pred_mask_logits.device)
        logits = pred_mask_logits[indices, classes]
    # Rasterizers may return float masks; Detectron2 thresholds them for the metrics only.
    masks_bool = masks if masks.dtype == torch.bool else masks > 0.5
    return MaskTargets(logits, masks.to(dtype=torch.float32), masks_bool)


def log_mask_metrics(batch: MaskTargets, vis_period: int = 0) -> None:
    """Put Detectron2's mask training metrics (and its periodic visualization) in the storage.

    Logs ``mask_rcnn/accuracy``, ``mask_rcnn/false_positive`` and ``mask_rcnn/false_negative`` at
    the 0.5 probability threshold, as ``mask_rcnn_loss`` does.

    Args:
        batch: the ROIs' logits and targets from :func:`build_mask_targets`.
        vis_period: put prediction/target images every ``vis_period`` iterations (0: never).
    """
    gt = batch.targets_bool
    incorrect = (batch.logits > 0.0) != gt
    num_positive = gt.sum().item()
    accuracy = 1 - incorrect.sum().item() / max(incorrect.numel(), 1.0)
    false_positive = (incorrect & ~gt).sum().item() / max(gt.numel() - num_positive, 1.0)
    false_negative = (incorrect & gt).sum().item() / max(num_positive, 1.0)
    storage = get_event_storage()
    storage.put_scalar("mask_rcnn/accuracy", accuracy)
    storage.put_scalar("mask_rcnn/false_positive", false_positive)
    storage.put_scalar("mask_rcnn/false_negative", false_negative)
    if vis_period > 0 and storage.iter % vis_period == 0:
        vis_masks = torch.cat([batch.logits.detach().sigmoid(), batch.targets], dim=2)
        name = "Left: mask prediction;   Right: mask GT"
        for idx, vis_mask in enumerate(vis_masks):
            storage.put_image(name + f" ({idx})", torch.stack([vis_mask] * 3, dim=0))


class _LossOnlyMaskHead(MaskRCNNConvUpsampleHead):
    """``MaskRCNNConvUpsampleHead`` with the loss replaced by :meth:`mask_loss`."""

    @classmethod
    def from_config(cls, cfg, input_shape):
        # Fails on a bad SegContrast value even when the caller skipped the config-time check.
        validate_segcontrast_config(cfg)
        ret = super().from_config(cfg, input_shape)
        # The stock head's from_config does not read a loss weight; ours honour LOSS_WEIGHT.
        ret["loss_weight"] = cfg.MODEL.ROI_MASK_HEAD.LOSS_WEIGHT
        return ret

    def forward(self, x: Tensor, instances: list[Instances]):
        """Mask logits; in training the loss, in inference the masks attached to ``instances``.

        Args:
            x (Tensor): (R, C_in, P, P) ROI features.
            instances (list[Instances]): per image, the foreground proposals (training) or the
                detections (inference).

        Returns:
            ``{"loss_mask": Tensor}`` in training, else ``instances`` with ``pred_masks``
            (R_i, 1, M, M) probabilities.
        """
        x = self.layers(x)
        if not self.training:
            mask_rcnn_inference(x, instances)
            return instances
        batch = build_mask_targets(x, instances)
        if batch is None:
            # No foreground ROI: a zero that keeps every parameter in the graph.
            return {"loss_mask": x.sum() * 0}
        log_mask_metrics(batch, self.vis_period)
        return {"loss_mask": self.mask_loss(batch.logits, batch.targets) * self.loss_weight}

    def mask_loss(self, logits: Tensor, targets: Tensor) -> Tensor:
        """The loss of the selected logits.

        Args:
            logits (Tensor): (R, M, M) logits of the ROIs' ground-truth classes.
            targets (Tensor): (R, M, M) float targets in [0, 1].

        Returns:
            A scalar loss.
        """
        raise NotImplementedError


@ROI_MASK_HEAD_REGISTRY.register()
class FocalLossMaskHead(_LossOnlyMaskHead):
    """Mask head trained with the sigmoid focal loss, averaged over all mask pixels."""

    @configurable
    def __init__(
        self,
        input_shape: ShapeSpec,
        *,
        focal_alpha: float = 0.25,
        focal_gamma: float = 2.0,
        **kwargs,
    ):
        """Build the head.

        Args:
            input_shape (ShapeSpec): shape of the ROI features.
            focal_alpha (float): weight of foreground pixels (background gets ``1 - alpha``);
                < 0 disables alpha weighting.
            focal_gamma (float): focusing exponent, >= 0.
            **kwargs: ``MaskRCNNConvUpsampleHead`` arguments (``num_classes``, ``conv_dims``,
                ``conv_norm``, ``loss_weight``, ``vis_period``).
        """
        if not focal_gamma >= 0:
            raise ValueError(f"focal_gamma must be >= 0, got {focal_gamma!r}")
        if not focal_alpha <= 1:
            raise ValueError(f"focal_alpha must be in [0, 1] or < 0, got {focal_alpha!r}")
        super().__init__(input_shape, **kwargs)
        self.focal_alpha = float(focal_alpha)
        self.focal_gamma = float(focal_gamma)

    @classmethod
    def from_config(cls, cfg, input_shape):
        """Constructor arguments from ``MODEL.ROI_MASK_HEAD.FOCAL_*`` and ``LOSS_WEIGHT``."""
        ret = super().from_config(cfg, input_shape)
        ret["focal_alpha"] = cfg.MODEL.ROI_MASK_HEAD.FOCAL_ALPHA
        ret["focal_gamma"] = cfg.MODEL.ROI_MASK_HEAD.FOCAL_GAMMA
        return ret

    def mask_loss(self, logits: Tensor, targets: Tensor) -> Tensor:
        """Focal loss, averaged over the (R, M, M) pixels."""
        return focal_loss_with_logits(logits, targets, self.focal_alpha, self.focal_gamma)


@ROI_MASK_HEAD_REGISTRY.register()
class PosWeightedBCEMaskHead(_LossOnlyMaskHead):
    """Mask head trained with a BCE whose foreground term is weighted by ``pos_weight``.

    With ``pos_weight="auto"`` the weight is ``num_neg / num_pos`` of the mask targets, clamped to
    ``[1, max_pos_weight]``: one ratio over the batch's ROIs (``pos_weight_scope="batch"``) or one
    per ROI (``"instance"``). The weight used (the mean over ROIs for "instance") is logged as
    ``mask_rcnn/pos_weight``.
    """

    @configurable
    def __init__(
        self,
        input_shape: ShapeSpec,
        *,
        pos_weight: str | float = "auto",
        pos_weight_scope: str = "batch",
        max_pos_weight: float = 20.0,
        **kwargs,
    ):
        """Build the head.

        Args:
            input_shape (ShapeSpec): shape of the ROI features.
            pos_weight (str or float): "auto" or a positive number (also as a string, e.g. "4").
            pos_weight_scope (str): "batch" or "instance"; used with "auto".
            max_pos_weight (float): upper clamp of the "auto" weight, >= 1.
            **kwargs: ``MaskRCNNConvUpsampleHead`` arguments (``num_classes``, ``conv_dims``,
                ``conv_norm``, ``loss_weight``, ``vis_period``).
        """
        parsed = parse_pos_weight(pos_weight)
        if pos_weight_scope not in POS_WEIGHT_SCOPES:
            raise ValueError(
                f"pos_weight_scope must be one of {list(POS_WEIGHT_SCOPES)}, "
                f"got {pos_weight_scope!r}"
            )
        if not max_pos_weight >= 1:
            raise ValueError(f"max_pos_weight must be >= 1, got {max_pos_weight!r}")
        super().__init__(input_shape, **kwargs)
        self.pos_weight = parsed
        self.pos_weight_scope = pos_weight_scope
        self.max_pos_weight = float(max_pos_weight)

    @classmethod
    def from_config(cls, cfg, input_shape):
        """Constructor arguments from ``MODEL.ROI_MASK_HEAD.*POS_WEIGHT*`` and ``LOSS_WEIGHT``."""
        ret = super().from_config(cfg, input_shape)
        head = cfg.MODEL.ROI_MASK_HEAD
        ret["pos_weight"] = head.POS_WEIGHT
        ret["pos_weight_scope"] = head.POS_WEIGHT_SCOPE
        ret["max_pos_weight"] = head.MAX_POS_WEIGHT
        return ret

    def resolve_pos_weight(self, targets: Tensor) -> float | Tensor:
        """The positive weight for a batch of targets.

        Args:
            targets (Tensor): (R, M, M) mask targets.

        Returns:
            A float (fixed weight or "batch" scope) or an (R, 1, 1) tensor ("instance" scope).
        """
        if self.pos_weight != "auto":
            return self.pos_weight
        if self.pos_weight_scope == "instance":
            return auto_pos_weight(targets, self.max_pos_weight, dim=(1, 2))
        return float(auto_pos_weight(targets, self.max_pos_weight).item())

    def mask_loss(self, logits: Tensor, targets: Tensor) -> Tensor:
        """Pos-weighted BCE, averaged over the (R, M, M) pixels; logs the weight used."""
        weight = self.resolve_pos_weight(targets)
        used = weight.mean().item() if isinstance(weight, Tensor) else weight
        get_event_storage().put_scalar("mask_rcnn/pos_weight", used)
        return pos_weighted_bce_with_logits(logits, targets, pos_weight=weight)

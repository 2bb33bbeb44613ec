"""Semantic FPN heads that differ from Detectron2's ``SemSegFPNHead`` only in the loss.

Both subclass ``SemSegFPNHead`` (same layers, same weights, same inference output: (N, K + 1, H, W)
logits) and are selected with ``MODEL.SEM_SEG_HEAD.NAME``, in a ``SemanticSegmentor`` or a
``PanopticFPN``:

* ``FocalSemSegFPNHead``: :func:`~.semantic_losses.softmax_focal_loss` (``FOCAL_GAMMA``,
  ``FOCAL_ALPHA``);
* ``PosWeightedSemSegFPNHead``: :func:`~.semantic_losses.class_weighted_cross_entropy` whose
  foreground labels weigh ``POS_WEIGHT``: "auto" (``num_background / num_foreground`` of the
  batch, the source's ``pos_weight``), a number, or "frequency" (per label, from the pixel counts
  of ``DATASETS.TRAIN``), clamped to ``[1, MAX_POS_WEIGHT]``.

As in the stock head, the logits are upsampled to the input size before the loss, the loss is
computed in float32, pixels labelled ``IGNORE_VALUE`` take no loss, and it is multiplied by
``LOSS_WEIGHT``; the loss is averaged over the non-ignored pixels.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from detectron2.config import configurable
from detectron2.layers import ShapeSpec
from detectron2.modeling.meta_arch.semantic_seg import SEM_SEG_HEADS_REGISTRY, SemSegFPNHead
from detectron2.utils.events import get_event_storage
from torch import Tensor

from ..config import parse_semantic_pos_weight, validate_semantic_head_config
from ..datasets.semantic_frequencies import semantic_pixel_counts
from .semantic_losses import (
    auto_pos_weight,
    class_weighted_cross_entropy,
    frequency_class_weights,
    pos_weight_class_weights,
    softmax_focal_loss,
)

__all__ = ["FocalSemSegFPNHead", "PosWeightedSemSegFPNHead"]

logger = logging.getLogger(__name__)


class _LossOnlySemSegHead(SemSegFPNHead):
    """``SemSegFPNHead`` with the loss replaced by :meth:`semantic_loss`."""

    @classmethod
    def from_config(cls, cfg, input_shape):
        # Fails on a bad SegContrast value even when the caller skipped the config-time check.
        validate_semantic_head_config(cfg)
        return super().from_config(cfg, input_shape)

    def losses(self, predictions: Tensor, targets: Tensor) -> dict[str, Tensor]:
        """The training loss, as the stock head computes it but for the loss function.

        Args:
            predictions (Tensor): (N, K + 1, H / s, W / s) logits at the common stride ``s``.
            targets (Tensor): (N, H, W) int64 labels, ``ignore_value`` where ignored (padding
                included).

        Returns:
            ``{"loss_sem_seg": Tensor}``.
        """
        predictions = predictions.float()  # as the stock head (pytorch/pytorch#48163)
        predictions = F.interpolate(
            predictions, scale_factor=self.common_stride, mode="bilinear", align_corners=False
        )
        return {"loss_sem_seg": self.semantic_loss(predictions, targets) * self.loss_weight}

    def semantic_loss(self, logits: Tensor, targets: Tensor) -> Tensor:
        """The loss of upsampled logits.

        Args:
            logits (Tensor): (N, K + 1, H, W) float32 logits.
            targets (Tensor): (N, H, W) int64 labels.

        Returns:
            A scalar loss.
        """
        raise NotImplementedError


@SEM_SEG_HEADS_REGISTRY.register()
class FocalSemSegFPNHead(_LossOnlySemSegHead):
    """Semantic FPN head trained with the softmax focal loss, averaged over non-ignored pixels."""

    @configurable
    def __init__(
        self,
        input_shape: dict[str, ShapeSpec],
        *,
        focal_gamma: float = 2.0,
        focal_alpha: Sequence[float] | None = None,
        **kwargs,
    ):
        """Build the head.

        Args:
            input_shape: shapes (channels and stride) of the input features.
            focal_gamma: focusing exponent, >= 0.
            focal_alpha: None, or ``num_classes`` non-negative per-label weights (background
                first).
            **kwargs: ``SemSegFPNHead`` arguments (``num_classes``, ``conv_dims``,
                ``common_stride``, ``loss_weight``, ``norm``, ``ignore_value``).
        """
        if not focal_gamma >= 0:
            raise ValueError(f"focal_gamma must be >= 0, got {focal_gamma!r}")
        super().__init__(input_shape, **kwargs)
        num_classes = self.predictor.out_channels
        alpha = None
        if focal_alpha is not None and len(focal_alpha):
            alpha = torch.as_tensor(list(focal_alpha), dtype=torch.float32)
            if alpha.numel() != num_classes or not bool(
                ((alpha >= 0) & torch.isfinite(alpha)).all()
            ):
                raise ValueError(
                    f"focal_alpha must hold {num_classes} non-negative numbers, got "
                    f"{list(focal_alpha)}"
                )
        self.focal_gamma = float(focal_gamma)
        # A buffer, not saved: it follows the module to its device, and checkpoints stay those
        # of the stock head.
        self.register_buffer("focal_alpha", alpha, persistent=False)

    @classmethod
    def from_config(cls, cfg, input_shape):
        """Constructor arguments, with ``MODEL.SEM_SEG_HEAD.FOCAL_GAMMA`` and ``FOCAL_ALPHA``."""
        ret = super().from_config(cfg, input_shape)
        ret["focal_gamma"] = cfg.MODEL.SEM_SEG_HEAD.FOCAL_GAMMA
        ret["focal_alpha"] = list(cfg.MODEL.SEM_SEG_HEAD.FOCAL_ALPHA) or None
        return ret

    def semantic_loss(self, logits: Tensor, targets: Tensor) -> Tensor:
        """Softmax focal loss, averaged over the non-ignored pixels."""
        return softmax_focal_loss(logits, targets, gamma=self.focal_gamma,
                                  alpha=self.focal_alpha, ignore_index=self.ignore_value)


@SEM_SEG_HEADS_REGISTRY.register()
class PosWeightedSemSegFPNHead(_LossOnlySemSegHead):
    """Semantic FPN head trained with a cross-entropy whose foreground labels are weighted.

    The weight of each training step is logged as ``sem_seg/pos_weight``: the foreground weight
    ("auto" or a number), or with "frequency" the mean weight of the batch's foreground pixels
    (the mean over the foreground labels when the batch has none).
    """

    @configurable
    def __init__(
        self,
        input_shape: dict[str, ShapeSpec],
        *,
        pos_weight: str | float = "auto",
        max_pos_weight: float = 20.0,
        frequency_datasets: Sequence[str] = (),
        class_weights: Sequence[float] | None = None,
        **kwargs,
    ):
        """Build the head.

        Args:
            input_shape: shapes (channels and stride) of the input features.
            pos_weight: "auto", "frequency" or a positive number (also as a string, e.g. "4").
            max_pos_weight: upper clamp of the "auto" and "frequency" weights, >= 1.
            frequency_datasets: with "frequency", the registered datasets whose pixels are
                counted, at the first training step (once per process).
            class_weights: with "frequency", ``num_classes`` per-label weights to use instead of
                counting.
            **kwargs: ``SemSegFPNHead`` arguments (``num_classes``, ``conv_dims``,
                ``common_stride``, ``loss_weight``, ``norm``, ``ignore_value``).
        """
        parsed = parse_semantic_pos_weight(pos_weight)
        if not max_pos_weight >= 1:
            raise ValueError(f"max_pos_weight must be >= 1, got {max_pos_weight!r}")
        super().__init__(input_shape, **kwargs)
        num_classes = self.predictor.out_channels
        if parsed == "frequency" and class_weights is None and not frequency_datasets:
            raise ValueError('pos_weight "frequency" needs frequency_datasets or class_weights')
        weights = None
        if class_weights is not None:
            weights = torch.as_tensor(list(class_weights), dtype=torch.float32)
            if weights.numel() != num_classes:
                raise ValueError(f"{weights.numel()} class_weights for {num_classes} labels")
        self.pos_weight = parsed
        self.max_pos_weight = float(max_pos_weight)
        self.frequency_datasets = tuple(frequency_datasets)
        # Not saved in checkpoints: a property of the training set, resolved when training starts.
        self.register_buffer("class_weights", weights, persistent=False)

    @classmethod
    def from_config(cls, cfg, input_shape):
        """Constructor arguments, with ``MODEL.SEM_SEG_HEAD.POS_WEIGHT``, ``MAX_POS_WEIGHT``."""
        ret = super().from_config(cfg, input_shape)
        ret["pos_weight"] = cfg.MODEL.SEM_SEG_HEAD.POS_WEIGHT
        ret["max_pos_weight"] = cfg.MODEL.SEM_SEG_HEAD.MAX_POS_WEIGHT
        ret["frequency_datasets"] = tuple(cfg.DATASETS.TRAIN)
        return ret

    def frequency_weights(self) -> Tensor:
        """The "frequency" per-label weights; counted from the training set on first use.

        Returns:
            (K + 1,) float32 weights on the head's device.
        """
        if self.class_weights is None:
            num_classes = self.predictor.out_channels
            counts = semantic_pixel_counts(self.frequency_datasets, num_classes - 1)
            weights = frequency_class_weights(counts, self.max_pos_weight)
            logger.info("PosWeightedSemSegFPNHead: per-label weights from the pixel counts of "
                        "%s (background first): %s", ", ".join(self.frequency_datasets),
                        [round(w, 3) for w in weights.tolist()])
            self.class_weights = weights.to(self.predictor.weight.device)
        return self.class_weights

    def label_weights(self, targets: Tensor) -> tuple[Tensor, float]:
        """The per-label weights for a batch, and the foreground weight to log.

        Args:
            targets (Tensor): (N, H, W) int64 labels.

        Returns:
            (K + 1,) float32 weights, and the weight logged as ``sem_seg/pos_weight``.
        """
        num_labels = self.predictor.out_channels
        if self.pos_weight == "frequency":
            weights = self.frequency_weights()
            # Ignored pixels are counted as background, which is not used here.
            labelled = torch.where(targets != self.ignore_value, targets, 0).flatten()
            counts = torch.bincount(labelled, minlength=num_labels)[1:num_labels].float()
            foreground = weights[1:]
            total = float(counts.sum())
            used = float((foreground * counts).sum()) / total if total else float(
                foreground.mean())
            return weights, used
        if self.pos_weight == "auto":
            weight = auto_pos_weight(targets, self.max_pos_weight, self.ignore_value)
        else:
            weight = torch.tensor(self.pos_weight, device=targets.device)
        return pos_weight_class_weights(weight, num_labels), float(weight)

    def semantic_loss(self, logits: Tensor, targets: Tensor) -> Tensor:
        """Class-weighted cross-entropy, averaged over the non-ignored pixels; logs the weight."""
        weights, used = self.label_weights(targets)
        get_event_storage().put_scalar("sem_seg/pos_weight", used)
        return class_weighted_cross_entropy(logits, targets, weights,
                                            ignore_index=self.ignore_value)

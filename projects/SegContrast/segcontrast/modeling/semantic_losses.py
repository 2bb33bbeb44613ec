"""Pixel losses of a semantic segmentation head: softmax focal loss and class-weighted CE.

Pure functions of ``(logits, targets)``: logits ``(N, C, ...)`` (``C`` = K + 1 labels, background
first), integer targets ``(N, ...)`` in ``[0, C)`` or ``ignore_index`` (255, Detectron2's
``MODEL.SEM_SEG_HEAD.IGNORE_VALUE``). With ``p_t`` the softmax probability of a pixel's target
label:

* softmax focal loss: ``-alpha_t (1 - p_t)^gamma log p_t`` (Lin et al. 2017, multi-class form);
  ``alpha_t`` is a per-label weight or 1; ``gamma = 0`` without alpha is plain cross-entropy;
* class-weighted cross-entropy: ``-w_t log p_t``. The source's ``pos_weight`` weighs every
  foreground label by ``num_background / num_foreground`` (:func:`auto_pos_weight`, of the batch)
  or by a fixed number (:func:`pos_weight_class_weights`); per-label weights can also come from a
  training set's pixel counts (:func:`frequency_class_weights`).

``reduction="mean"`` divides the summed loss by the number of non-ignored pixels, not by the sum
of their weights as ``F.cross_entropy(weight=...)`` does: this is the source's convention (its
``BCEWithLogitsLoss(pos_weight=w)`` averages over all elements), and with two labels the weighted
CE is then exactly the pos-weighted BCE of the logit difference. A batch whose pixels are all
ignored gives a zero loss still connected to the graph (``F.cross_entropy`` gives NaN).

Numerics: ``log p_t`` comes from ``log_softmax`` (finite for any finite logits; the weighted CE is
``F.cross_entropy``'s fused kernel) and ``1 - p_t`` is ``-expm1(log p_t)``, keeping its digits
when ``p_t`` is close to 1; autograd does the backward pass. Both losses compute in float32
(float64 for float64 logits), also inside ``torch.autocast`` with fp16 or bf16 logits.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "IGNORE_INDEX",
    "auto_pos_weight",
    "class_weighted_cross_entropy",
    "frequency_class_weights",
    "pos_weight_class_weights",
    "softmax_focal_loss",
]

IGNORE_INDEX = 255
Reduction = Literal["none", "mean", "sum"]
_REDUCTIONS = ("none", "mean", "sum")


def _check_labels(logits: Tensor, targets: Tensor, ignore_index: int) -> Tensor:
    """The non-ignored pixels; raise on shapes that do not fit or labels outside ``[0, C)``.

    Args:
        logits (Tensor): (N, C, ...) logits.
        targets (Tensor): (N, ...) integer labels.
        ignore_index: the label that takes no loss.

    Returns:
        (N, ...) bool, True where the label is not ``ignore_index``.
    """
    if logits.dim() < 2 or targets.shape != logits.shape[:1] + logits.shape[2:]:
        raise ValueError(
            f"logits (N, C, ...) and targets (N, ...) do not fit: {tuple(logits.shape)} and "
            f"{tuple(targets.shape)}"
        )
    valid = targets != ignore_index
    num_labels = logits.shape[1]
    if targets.numel():
        low, high = torch.aminmax(torch.where(valid, targets, 0))
        if int(low) < 0 or int(high) >= num_labels:
            raise ValueError(
                f"targets hold labels outside [0, {num_labels}) other than the ignore label "
                f"{ignore_index}"
            )
    return valid


def _compute_dtype(logits: Tensor) -> torch.dtype:
    return torch.float64 if logits.dtype == torch.float64 else torch.float32


def _reduce(loss: Tensor, valid: Tensor, reduction: str) -> Tensor:
    if reduction == "none":
        return loss
    total = loss.sum() if loss.dim() else loss
    if reduction == "sum":
        return total
    count = valid.sum()
    # All pixels ignored: 0 (still in the graph), not F.cross_entropy's 0/0.
    return total / count.clamp_min(1).to(total.dtype)


def _check_reduction(reduction: str) -> None:
    if reduction not in _REDUCTIONS:
        raise ValueError(f"reduction must be one of {list(_REDUCTIONS)}, got {reduction!r}")


def _label_weights(weights: Sequence[float] | Tensor, num_labels: int, like: Tensor) -> Tensor:
    w = torch.as_tensor(weights, dtype=like.dtype, device=like.device).reshape(-1)
    if w.numel() != num_labels:
        raise ValueError(f"{w.numel()} per-label weights for {num_labels} labels")
    return w


def softmax_focal_loss(
    logits: Tensor,
    targets: Tensor,
    *,
    gamma: float = 2.0,
    alpha: Sequence[float] | Tensor | None = None,
    ignore_index: int = IGNORE_INDEX,
    reduction: Reduction = "mean",
) -> Tensor:
    """Softmax focal loss ``-alpha_t (1 - p_t)^gamma log p_t``.

    Args:
        logits (Tensor): (N, C, ...) logits, any float dtype.
        targets (Tensor): (N, ...) integer labels in ``[0, C)`` or ``ignore_index``.
        gamma: focusing exponent, >= 0 (0: cross-entropy).
        alpha: None (every label weighs 1) or C per-label weights ``alpha_t``.
        ignore_index: label that takes no loss.
        reduction: "mean" (over non-ignored pixels), "sum", or "none" ((N, ...), 0 where ignored).

    Returns:
        The loss, float32 (float64 for float64 logits).
    """
    _check_reduction(reduction)
    if not gamma >= 0:
        raise ValueError(f"gamma must be >= 0, got {gamma!r}")
    dtype = _compute_dtype(logits)
    with torch.autocast(logits.device.type, enabled=False):
        logits = logits.to(dtype)
        valid = _check_labels(logits, targets, ignore_index)
        # -log p_t from torch's fused cross-entropy (0 where ignored, and no gradient there).
        loss = F.cross_entropy(logits, targets.long(), ignore_index=ignore_index,
                               reduction="none")
        if gamma:
            # 1 - p_t as -expm1(log p_t) keeps its digits where p_t is close to 1; the clamp keeps
            # the gradient of (1 - p_t)^gamma finite (0) at p_t = 1 for 0 < gamma < 1.
            one_minus = (-torch.expm1(-loss)).clamp_min(torch.finfo(dtype).tiny)
            loss = loss * one_minus.pow(gamma)
        if alpha is not None:
            labels = torch.where(valid, targets, 0).long()
            loss = loss * _label_weights(alpha, logits.shape[1], logits)[labels]
        return _reduce(loss, valid, reduction)


def class_weighted_cross_entropy(
    logits: Tensor,
    targets: Tensor,
    weights: Sequence[float] | Tensor,
    *,
    ignore_index: int = IGNORE_INDEX,
    reduction: Reduction = "mean",
) -> Tensor:
    """Cross-entropy with a weight per target label, ``-w_t log p_t``.

    Args:
        logits (Tensor): (N, C, ...) logits, any float dtype.
        targets (Tensor): (N, ...) integer labels in ``[0, C)`` or ``ignore_index``.
        weights: C per-label weights (see :func:`pos_weight_class_weights`,
            :func:`frequency_class_weights`).
        ignore_index: label that takes no loss.
        reduction: "mean" (over non-ignored pixels, not over their weights), "sum", or "none".

    Returns:
        The loss, float32 (float64 for float64 logits).
    """
    _check_reduction(reduction)
    dtype = _compute_dtype(logits)
    with torch.autocast(logits.device.type, enabled=False):
        logits = logits.to(dtype)
        valid = _check_labels(logits, targets, ignore_index)
        w = _label_weights(weights, logits.shape[1], logits)
        # torch's weighted sum is ours; only its "mean" (over the weights) is not.
        loss = F.cross_entropy(logits, targets.long(), weight=w, ignore_index=ignore_index,
                               reduction="none" if reduction == "none" else "sum")
        return _reduce(loss, valid, reduction)


def auto_pos_weight(
    targets: Tensor, max_pos_weight: float = 20.0, ignore_index: int = IGNORE_INDEX
) -> Tensor:
    """The source's ``pos_weight``: ``num_background / num_foreground`` of a batch's labels.

    Background is label 0, foreground every other label except ``ignore_index``. The ratio is
    clamped to ``[1, max_pos_weight]``: a batch without foreground has an infinite ratio and gets
    ``max_pos_weight``, one without background gets 1 (the mask heads' rule).

    Args:
        targets (Tensor): (N, ...) integer labels.
        max_pos_weight: upper clamp, >= 1.
        ignore_index: label left out of both counts.

    Returns:
        A 0-dim float32 tensor on the targets' device.
    """
    if not max_pos_weight >= 1:
        raise ValueError(f"max_pos_weight must be >= 1, got {max_pos_weight!r}")
    background = (targets == 0).sum()
    foreground = (targets != ignore_index).sum() - background
    ratio = background.float() / foreground.float()  # x/0 is inf, 0/0 is nan
    ratio = torch.where(foreground > 0, ratio, torch.full_like(ratio, math.inf))
    return ratio.clamp(1.0, float(max_pos_weight))


def pos_weight_class_weights(pos_weight: float | Tensor, num_labels: int) -> Tensor:
    """Per-label weights ``[1, w, ..., w]``: background 1, every foreground label ``w``.

    Args:
        pos_weight: a number or a 0-dim tensor (e.g. :func:`auto_pos_weight`).
        num_labels: C = K + 1.

    Returns:
        (C,) float32 weights (on the device of a tensor ``pos_weight``).
    """
    w = torch.as_tensor(pos_weight, dtype=torch.float32).reshape(())
    weights = w.expand(num_labels).clone()
    weights[0] = 1.0
    return weights


def frequency_class_weights(pixel_counts: Sequence[int] | Tensor, max_pos_weight: float = 20.0
                            ) -> Tensor:
    """Per-label weights from pixel counts: ``(total - n_c) / n_c``, clamped to ``[1, max]``.

    Each label is weighed by its one-vs-rest ratio, the source's ``num_neg / num_pos`` per label:
    with one foreground class it is ``num_background / num_foreground`` of the counted set, and a
    majority label (usually background) gets 1. A label without pixels gets ``max_pos_weight``.

    Args:
        pixel_counts: (C,) non-ignored pixels of each label (e.g. over a training set).
        max_pos_weight: upper clamp, >= 1.

    Returns:
        (C,) float32 weights.
    """
    if not max_pos_weight >= 1:
        raise ValueError(f"max_pos_weight must be >= 1, got {max_pos_weight!r}")
    counts = torch.as_tensor(pixel_counts, dtype=torch.float64).reshape(-1)
    if counts.numel() < 2 or bool((counts < 0).any()):
        raise ValueError(f"expected (C >= 2,) non-negative pixel counts, got {counts.tolist()}")
    ratio = (counts.sum() - counts) / counts
    ratio = torch.where(counts > 0, ratio, torch.full_like(ratio, math.inf))
    return ratio.clamp(1.0, float(max_pos_weight)).float()

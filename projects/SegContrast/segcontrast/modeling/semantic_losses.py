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
``F.cross_entropy``'s fused kernel) and ``1 - p_t`` is computed as ``-expm1(log p_t)`` would be,
keeping its digits when ``p_t`` is close to 1. The focal loss's gradient is computed with it, in
one pass (:class:`_SoftmaxFocal`). Both losses compute in float32 (float64 for float64 logits),
also inside ``torch.autocast`` with fp16 or bf16 logits.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.autograd.function import once_differentiable

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
        labels = torch.where(valid, targets, 0).long()
        # Per-pixel weight: alpha_t, and 0 where ignored.
        if alpha is None:
            weight = valid.to(dtype)
        else:
            weight = _label_weights(alpha, logits.shape[1], logits)[labels].masked_fill_(~valid, 0)
        loss = _SoftmaxFocal.apply(logits, labels, weight, float(gamma))
        return _reduce(loss, valid, reduction)


def _one_minus_exp(x: Tensor, exp_x: Tensor) -> Tensor:
    """``1 - exp(x)`` for ``x <= 0``, to float precision also near 0 (``-expm1(x)``).

    torch's CPU ``expm1`` is not vectorised (about 15 times the cost of ``exp``); near 0 a
    Taylor polynomial replaces it (relative error ``|x|^6 / 5040 < 5e-8`` for ``x >= -1/4``),
    farther out ``1 - exp(x) > 0.22`` loses at most two bits.

    Args:
        x (Tensor): values <= 0.
        exp_x (Tensor): ``exp(x)``, already computed.
    """
    if x.dtype == torch.float64:
        return -torch.expm1(x)  # the series is float32-exact only
    series = x * (1 + x * (1 / 2 + x * (1 / 6 + x * (1 / 24 + x * (1 / 120 + x / 720)))))
    return torch.where(x > -0.25, series.neg_(), 1 - exp_x)


class _SoftmaxFocal(torch.autograd.Function):
    """Per-pixel ``-w (1 - p_t)^gamma log p_t``, its gradient computed with the loss.

    With ``p`` the softmax over labels, the gradient with respect to the logits is
    ``k (p - onehot(t))``, ``k = w (1 - p_t)^gamma (1 - gamma p_t log(p_t) / (1 - p_t))``: one
    factor per pixel, so the backward pass is one multiply over the (N, C, ...) probabilities
    and a scatter at the targets, as for cross-entropy (autograd through the elementwise chain
    costs several passes more). ``log(p_t) / (1 - p_t)`` tends to -1 as ``p_t`` tends to 1, where
    ``k`` tends to 0 for any gamma > 0.
    """

    @staticmethod
    def forward(ctx, logits: Tensor, labels: Tensor, weight: Tensor, gamma: float) -> Tensor:
        log_p = F.log_softmax(logits, dim=1)
        log_pt = log_p.gather(1, labels.unsqueeze(1)).squeeze(1)
        if gamma == 0:
            ctx.save_for_backward(log_p, labels, weight)
            return -(log_pt * weight)
        pt = log_pt.exp()
        one_minus = _one_minus_exp(log_pt, pt)
        focus = one_minus if gamma == 1 else one_minus.pow(gamma)
        loss = -(focus * log_pt * weight)
        # Where 1 - p_t is 0 the ratio is wrong (0, not -1), but focus, and so k, is 0 there.
        ratio = log_pt / one_minus.clamp_min(torch.finfo(log_pt.dtype).tiny)
        k = focus * weight * (1 - gamma * pt * ratio)
        ctx.save_for_backward(log_p, labels, k)
        return loss

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_loss: Tensor):
        log_p, labels, k = ctx.saved_tensors
        scale = (grad_loss * k).unsqueeze(1)
        grad = log_p.exp().mul_(scale)
        grad.scatter_add_(1, labels.unsqueeze(1), -scale)
        return grad, None, None, None


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

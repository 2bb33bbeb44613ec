"""Mask losses from logits: sigmoid focal loss and positive-weighted binary cross-entropy.

Both are pure functions of ``(logits, targets)`` that accept any shape and soft targets in
``[0, 1]``. With logits ``x``, ``p = sigmoid(x)`` and targets ``y``:

* pos-weighted BCE: ``-w * y * log(p) - (1 - y) * log(1 - p)``, where ``w`` is a number, a tensor
  broadcastable to the logits (one weight per ROI, e.g. ``(R, 1, 1)``), or ``"auto"``:
  ``num_neg / num_pos`` of the targets, clamped to ``[1, max_pos_weight]``;
* focal: ``-alpha * (1 - p)^gamma * y * log(p) - (1 - alpha) * p^gamma * (1 - y) * log(1 - p)``;
  ``alpha < 0`` drops the alpha factors, and ``gamma = 0, alpha < 0`` is plain BCE. For binary
  targets this equals ``torchvision.ops.sigmoid_focal_loss``; for soft targets each term keeps its
  own modulating factor (torchvision applies ``(1 - p_t)^gamma`` to the whole cross-entropy).

Numerics: ``log(p)`` and ``log(1 - p)`` are never taken directly. With
``softplus(x) = log(1 + exp(x)) = max(x, 0) - log(sigmoid(|x|))`` they are ``-softplus(-x)``
and ``-softplus(x)``, finite for any finite logit (the textbook focal loss gives NaN from
``log(sigmoid(x))`` at ``x = -100``). ``sigmoid(|x|) >= 0.5``, so its log never sees 0. The
absolute error of that log is about one float ulp of 1 (6e-8 in float32), which is far below the
loss of any pixel that matters; ``log1p`` would be exact there but costs ~3x ``log`` on CPU.
Everything is computed in float32 (float64 for float64 logits), also under ``torch.autocast``.

Speed: ``torch.log1p``, ``F.logsigmoid`` and ``F.softplus`` are several times slower than ``log``
and ``exp`` on CPU, and ``torch.where`` is slower still; autograd through a chain of elementwise
ops also stores and revisits every intermediate. Each loss is therefore a
``torch.autograd.Function`` with an analytic backward, built only from cheap elementwise ops, and
the ``"mean"``/``"sum"`` reductions use dot products with the targets instead of materializing
the per-pixel loss. ``bench/bench_losses.py`` compares them with torch's own BCE.
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from typing import Literal

import torch
from torch import Tensor

__all__ = [
    "REDUCTIONS",
    "auto_pos_weight",
    "focal_loss_with_logits",
    "pos_weighted_bce_with_logits",
]

Reduction = Literal["none", "mean", "sum"]
REDUCTIONS = ("none", "mean", "sum")


def auto_pos_weight(
    targets: Tensor, max_pos_weight: float, dim: tuple[int, ...] | None = None
) -> Tensor:
    """Ratio of background to foreground target pixels, clamped to ``[1, max_pos_weight]``.

    Soft targets count fractionally: ``num_pos = targets.sum()``, ``num_neg = numel - num_pos``.
    Where there is no foreground the ratio is infinite, so it is ``max_pos_weight``.

    Args:
        targets: (*) targets in [0, 1] (float or bool).
        max_pos_weight: upper bound of the weight, >= 1.
        dim: dimensions to count over, kept as size 1 (e.g. ``(1, 2)`` for one weight per ROI of
            (R, M, M) targets, giving (R, 1, 1)); None counts over all elements (a 0-dim result).

    Returns:
        float64 weights: 0-dim when ``dim`` is None, else ``targets``' shape with ``dim`` set to 1.
    """
    if max_pos_weight < 1:
        raise ValueError(f"max_pos_weight must be >= 1, got {max_pos_weight!r}")
    if dim is None:
        num_pos = targets.sum(dtype=torch.float64)
        numel = targets.numel()
    else:
        num_pos = targets.sum(dim=dim, keepdim=True, dtype=torch.float64)
        numel = 1
        for d in dim:
            numel *= targets.shape[d]
    # Counts are summed in float64 so that large batches of binary masks stay exact integers.
    ratio = (numel - num_pos) / num_pos
    ratio = torch.where(num_pos > 0, ratio, torch.full_like(ratio, max_pos_weight))
    return ratio.clamp(1.0, max_pos_weight)


def pos_weighted_bce_with_logits(
    logits: Tensor,
    targets: Tensor,
    pos_weight: str | float | Tensor = "auto",
    max_pos_weight: float = 20.0,
    reduction: Reduction = "mean",
) -> Tensor:
    """Binary cross-entropy from logits with the positive term weighted by ``pos_weight``.

    Equals ``F.binary_cross_entropy_with_logits(logits, targets, pos_weight=w, reduction=...)``
    (``"mean"`` divides by the number of elements), faster on CPU.

    Args:
        logits: (*) raw scores, any float dtype.
        targets: (*) same shape as ``logits``, in [0, 1]; must not require grad.
        pos_weight: ``"auto"`` (``num_neg / num_pos`` over all of ``targets``, clamped to
            ``[1, max_pos_weight]``), a number (used as is), or a tensor broadcastable to
            ``logits`` without enlarging it, e.g. (R, 1, 1) for one weight per ROI of (R, M, M)
            logits (see :func:`auto_pos_weight` with ``dim=(1, 2)``).
        max_pos_weight: upper clamp of the ``"auto"`` weight.
        reduction: ``"none"`` (per-element loss), ``"mean"`` or ``"sum"``.

    Returns:
        Float32 loss (float64 for float64 logits): a scalar, or (*) for ``"none"``.
    """
    x, y = _prepare(logits, targets, reduction)
    if isinstance(pos_weight, str):
        if pos_weight != "auto":
            raise ValueError(f"pos_weight must be 'auto', a number or a tensor, got {pos_weight!r}")
        weight: float | Tensor = float(auto_pos_weight(y, max_pos_weight).item())
    elif isinstance(pos_weight, Tensor) and pos_weight.numel() == 1:
        weight = float(pos_weight.item())
    elif isinstance(pos_weight, Tensor):
        if torch.broadcast_shapes(pos_weight.shape, x.shape) != x.shape:
            raise ValueError(
                f"pos_weight of shape {tuple(pos_weight.shape)} does not broadcast to the logits' "
                f"shape {tuple(x.shape)}"
            )
        weight = pos_weight.detach().to(device=x.device, dtype=x.dtype)
    else:
        weight = float(pos_weight)
    with _no_autocast(x.device):
        return _PosWeightedBCE.apply(x, y, weight, reduction)


def focal_loss_with_logits(
    logits: Tensor,
    targets: Tensor,
    alpha: float = 0.25,
    gamma: float = 2.0,
    reduction: Reduction = "mean",
) -> Tensor:
    """Sigmoid focal loss (Lin et al. 2017) from logits.

    For binary targets equals ``torchvision.ops.sigmoid_focal_loss`` with the same arguments,
    faster on CPU and finite for any finite logit.

    Args:
        logits: (*) raw scores, any float dtype.
        targets: (*) same shape as ``logits``, in [0, 1]; must not require grad.
        alpha: weight of the positive term, the negative one gets ``1 - alpha``; ``alpha < 0``
            weighs both by 1.
        gamma: focusing exponent, >= 0; ``(1 - p)^gamma`` scales the positive term and
            ``p^gamma`` the negative one.
        reduction: ``"none"`` (per-element loss), ``"mean"`` or ``"sum"``.

    Returns:
        Float32 loss (float64 for float64 logits): a scalar, or (*) for ``"none"``.
    """
    if not gamma >= 0:
        raise ValueError(f"gamma must be >= 0, got {gamma!r}")
    x, y = _prepare(logits, targets, reduction)
    pos_scale, neg_scale = (float(alpha), 1.0 - float(alpha)) if alpha >= 0 else (1.0, 1.0)
    with _no_autocast(x.device):
        return _FocalLoss.apply(x, y, pos_scale, neg_scale, float(gamma), reduction)


def _prepare(logits: Tensor, targets: Tensor, reduction: str) -> tuple[Tensor, Tensor]:
    """Check the arguments; return contiguous logits and targets in the compute dtype."""
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {list(REDUCTIONS)}, got {reduction!r}")
    if logits.shape != targets.shape:
        raise ValueError(
            f"targets of shape {tuple(targets.shape)} must have the logits' shape "
            f"{tuple(logits.shape)}"
        )
    if targets.requires_grad:
        raise ValueError("targets must not require grad: these losses give no target gradient")
    dtype = torch.float64 if logits.dtype == torch.float64 else torch.float32
    x = logits.to(dtype).contiguous()
    y = targets.to(device=x.device, dtype=dtype).contiguous()
    return x, y


def _no_autocast(device: torch.device) -> AbstractContextManager:
    """Autocast off, so that the float32 inputs stay float32 (bf16/fp16 logs lose the loss)."""
    if torch.amp.is_autocast_available(device.type):
        return torch.autocast(device.type, enabled=False)
    return nullcontext()


def _softplus_pair(x: Tensor, log_sig_abs: Tensor) -> tuple[Tensor, Tensor]:
    """``softplus(x)`` and ``softplus(-x)`` (*), i.e. ``-log(1 - p)`` and ``-log(p)``.

    Each is ``max(+-x, 0) + log(1 + exp(-|x|))``, a sum of two non-negative terms, so neither
    loses precision to cancellation (``softplus(x) - x`` would, for large ``x``).

    Args:
        x: (*) logits.
        log_sig_abs: (*) ``log(sigmoid(|x|))``; consumed.
    """
    relu = x.clamp_min(0)
    sp_neg = torch.sub(relu, x).sub_(log_sig_abs)
    sp_pos = relu.sub_(log_sig_abs)
    return sp_pos, sp_neg


def _class_weights(y: Tensor, pos_scale: float | Tensor, neg_scale: float) -> tuple[Tensor, Tensor]:
    """Per-element weights of the positive and negative terms: ``pos * y``, ``neg * (1 - y)``."""
    y_pos = y if isinstance(pos_scale, float) and pos_scale == 1.0 else torch.mul(y, pos_scale)
    neg = torch.tensor(neg_scale, dtype=y.dtype, device=y.device)
    return y_pos, torch.add(neg, y, alpha=-neg_scale)


def _flat_dot(a: Tensor, b: Tensor) -> Tensor:
    return torch.dot(a.reshape(-1), b.reshape(-1))


def _reduce(
    y_pos: Tensor, loss_pos: Tensor, y_neg: Tensor, loss_neg: Tensor, reduction: str
) -> Tensor:
    """``y_pos * loss_pos + y_neg * loss_neg`` (*), reduced; consumes ``loss_pos``."""
    if reduction == "none":
        return loss_pos.mul_(y_pos).addcmul_(y_neg, loss_neg)
    total = _flat_dot(y_pos, loss_pos) + _flat_dot(y_neg, loss_neg)
    return total / loss_pos.numel() if reduction == "mean" else total


def _grad_scale(grad_output: Tensor, reduction: str, numel: int) -> Tensor:
    return grad_output / numel if reduction == "mean" else grad_output


class _PosWeightedBCE(torch.autograd.Function):
    """``w * y * softplus(-x) + (1 - y) * softplus(x)``, with an analytic backward.

    ``w`` is a float or a tensor broadcastable to ``x``. The gradient is
    ``(1 + (w - 1) * y) * p - w * y``.
    """

    @staticmethod
    def forward(ctx, x: Tensor, y: Tensor, weight: float | Tensor, reduction: str) -> Tensor:
        sp_pos, sp_neg = _softplus_pair(x, x.abs().sigmoid_().log_())
        y_pos, y_neg = _class_weights(y, weight, 1.0)
        total = _reduce(y_pos, sp_neg, y_neg, sp_pos, reduction)
        if isinstance(weight, Tensor):
            ctx.save_for_backward(x, y_pos, y_neg)
        else:
            ctx.save_for_backward(x, y)
        ctx.weight = weight if not isinstance(weight, Tensor) else None
        ctx.reduction = reduction
        return total

    @staticmethod
    def backward(ctx, grad_output: Tensor):
        x, *targets = ctx.saved_tensors
        with _no_autocast(x.device):
            grad = torch.sigmoid(x)
            if ctx.weight is None:
                y_pos, y_neg = targets
                grad.mul_(y_pos + y_neg).sub_(y_pos)
            else:
                (y,) = targets
                if ctx.weight != 1.0:
                    grad.addcmul_(grad, y, value=ctx.weight - 1.0)
                grad.sub_(y, alpha=ctx.weight)
            grad.mul_(_grad_scale(grad_output, ctx.reduction, x.numel()))
        return grad, None, None, None


class _FocalLoss(torch.autograd.Function):
    """``a_pos * y * (1 - p)^g * softplus(-x) + a_neg * (1 - y) * p^g * softplus(x)``.

    Analytic backward: the positive term's derivative is
    ``-a_pos * (1 - p)^g * (g * p * softplus(-x) + 1 - p)``, the negative term's
    ``a_neg * p^g * (g * (1 - p) * softplus(x) + p)``.
    """

    @staticmethod
    def forward(
        ctx,
        x: Tensor,
        y: Tensor,
        pos_scale: float,
        neg_scale: float,
        gamma: float,
        reduction: str,
    ) -> Tensor:
        p = torch.sigmoid(x)
        q = 1.0 - p
        # sigmoid(|x|) = max(p, 1 - p): the stable log terms from the probabilities at hand.
        sp_pos, sp_neg = _softplus_pair(x, torch.maximum(p, q).log_())
        y_pos, y_neg = _class_weights(y, pos_scale, neg_scale)
        mod_pos, mod_neg = _pow(q, gamma), _pow(p, gamma)
        loss_pos = sp_neg.clone() if mod_pos is None else torch.mul(mod_pos, sp_neg)
        loss_neg = sp_pos if mod_neg is None else torch.mul(mod_neg, sp_pos)
        total = _reduce(y_pos, loss_pos, y_neg, loss_neg, reduction)
        ctx.save_for_backward(y_pos, y_neg, p, q, sp_pos, sp_neg, mod_pos, mod_neg)
        ctx.gamma = gamma
        ctx.reduction = reduction
        return total

    @staticmethod
    def backward(ctx, grad_output: Tensor):
        y_pos, y_neg, p, q, sp_pos, sp_neg, mod_pos, mod_neg = ctx.saved_tensors
        gamma = ctx.gamma
        with _no_autocast(p.device):
            grad_neg = torch.addcmul(p, q, sp_pos, value=gamma)
            grad_pos = torch.addcmul(q, p, sp_neg, value=gamma)
            if mod_neg is not None:
                grad_neg.mul_(mod_neg)
                grad_pos.mul_(mod_pos)
            grad = grad_neg.mul_(y_neg).addcmul_(y_pos, grad_pos, value=-1.0)
            grad.mul_(_grad_scale(grad_output, ctx.reduction, p.numel()))
        return grad, None, None, None, None, None


def _pow(t: Tensor, exponent: float) -> Tensor | None:
    """``t ** exponent`` (*), None for exponent 0 (a factor of 1, ``0 ** 0`` included)."""
    if exponent == 0:
        return None
    if exponent == 1:
        return t
    if exponent == 2:
        return torch.mul(t, t)
    return torch.pow(t, exponent)

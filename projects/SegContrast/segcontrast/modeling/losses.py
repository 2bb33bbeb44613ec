"""Mask losses from logits: sigmoid focal loss and positive-weighted binary cross-entropy.

Pure functions of ``(logits, targets)`` of any shape (soft targets allowed) in plain PyTorch;
autograd does the backward pass. With ``p = sigmoid(x)``, ``log(p)`` and ``log(1 - p)`` are
``F.logsigmoid(+-x)``: finite for any finite logit and exact for confident pixels (torch's own BCE
adds ``(1 - y) * x`` to ``softplus(-x)``, which loses their digits). Both compute in float32
(float64 for float64 logits), also inside ``torch.autocast``, which casts none of their ops down.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["auto_pos_weight", "focal_loss_with_logits", "pos_weighted_bce_with_logits"]

Reduction = Literal["none", "mean", "sum"]
REDUCTIONS = ("none", "mean", "sum")


def auto_pos_weight(
    targets: Tensor, max_pos_weight: float, dim: tuple[int, ...] | None = None
) -> Tensor:
    """``num_neg / num_pos`` of the targets, clamped to ``[1, max_pos_weight]``.

    Args:
        targets: (*) targets in [0, 1], float or bool; soft ones count fractionally.
        max_pos_weight: upper bound, >= 1; also the weight where there is no foreground.
        dim: dimensions to count over, kept as size 1 (``(1, 2)`` gives one weight per ROI of
            (R, M, M) targets: (R, 1, 1)); None counts over all elements.

    Returns:
        float64 weights: 0-dim when ``dim`` is None, else ``targets``' shape with ``dim`` set to 1.
    """
    if not max_pos_weight >= 1:
        raise ValueError(f"max_pos_weight must be >= 1, got {max_pos_weight!r}")
    if dim is None:
        num_pos, numel = targets.sum().double(), targets.numel()
    else:
        num_pos = targets.sum(dim=dim, keepdim=True).double()
        numel = math.prod(targets.shape[d] for d in dim)
    # No foreground gives inf, no pixels at all nan: both get the cap.
    ratio = ((numel - num_pos) / num_pos).nan_to_num_(nan=max_pos_weight)
    return ratio.clamp_(1.0, max_pos_weight)


def pos_weighted_bce_with_logits(
    logits: Tensor,
    targets: Tensor,
    pos_weight: str | float | Tensor = "auto",
    max_pos_weight: float = 20.0,
    reduction: Reduction = "mean",
) -> Tensor:
    """``-w * y * log(p) - (1 - y) * log(1 - p)``: torch's BCE from logits with ``pos_weight=w``.

    Args:
        logits: (*) raw scores, any float dtype.
        targets: (*) same shape as ``logits``, in [0, 1]; must not require grad.
        pos_weight: ``"auto"`` (:func:`auto_pos_weight` over all of ``targets``), a positive
            number, or a tensor of positive weights (a constant: no gradient) broadcastable to
            ``logits`` without enlarging it, e.g. (R, 1, 1) for one per ROI of (R, M, M) logits.
        max_pos_weight: upper clamp of the ``"auto"`` weight.
        reduction: ``"none"`` (per-element loss), ``"mean"`` (over all elements) or ``"sum"``.

    Returns:
        float32 loss (float64 for float64 logits): a scalar, or (*) for ``"none"``.
    """
    x, y = _prepare(logits, targets, reduction)
    if isinstance(pos_weight, str):
        if pos_weight != "auto":
            raise ValueError(f"pos_weight must be 'auto', a number or a tensor, got {pos_weight!r}")
        weight: float | Tensor = auto_pos_weight(y, max_pos_weight).to(x.dtype)
    elif isinstance(pos_weight, Tensor):
        lead = x.dim() - pos_weight.dim()
        if lead < 0 or any(
            n not in (1, m) for n, m in zip(pos_weight.shape, x.shape[lead:], strict=True)
        ):
            raise ValueError(
                f"pos_weight of shape {tuple(pos_weight.shape)} does not broadcast to the logits' "
                f"shape {tuple(x.shape)}"
            )
        weight = pos_weight.detach().to(device=x.device, dtype=x.dtype)
    else:
        weight = float(pos_weight)
    # lerp returns exactly one of the terms where y is 0 or 1: each pixel keeps its precision.
    return _reduce(torch.lerp(-F.logsigmoid(-x), -F.logsigmoid(x) * weight, y), reduction)


def focal_loss_with_logits(
    logits: Tensor,
    targets: Tensor,
    alpha: float = 0.25,
    gamma: float = 2.0,
    reduction: Reduction = "mean",
) -> Tensor:
    """Sigmoid focal loss (Lin et al. 2017) from logits.

    ``-alpha * (1 - p)^gamma * y * log(p) - (1 - alpha) * p^gamma * (1 - y) * log(1 - p)``: for
    binary targets torchvision's ``sigmoid_focal_loss``; for soft targets each term keeps its own
    modulating factor (torchvision applies ``(1 - p_t)^gamma`` to the whole cross-entropy).

    Args:
        logits: (*) raw scores, any float dtype.
        targets: (*) same shape as ``logits``, in [0, 1]; must not require grad.
        alpha: weight of the positive term, ``1 - alpha`` that of the negative one; ``alpha < 0``
            weighs both by 1 (with ``gamma = 0`` that is plain BCE).
        gamma: focusing exponent, >= 0.
        reduction: ``"none"`` (per-element loss), ``"mean"`` (over all elements) or ``"sum"``.

    Returns:
        float32 loss (float64 for float64 logits): a scalar, or (*) for ``"none"``.
    """
    if not gamma >= 0:
        raise ValueError(f"gamma must be >= 0, got {gamma!r}")
    x, y = _prepare(logits, targets, reduction)
    log_p, log_q = F.logsigmoid(x), F.logsigmoid(-x)
    # p^gamma as exp(gamma * log p): 1 at gamma 0, and its gradient is finite for any gamma (that
    # of pow is infinite where p rounds to 0 and gamma < 1). It costs well-classified pixels, whose
    # loss is tiny, some relative precision: about gamma * |log p| * 6e-8 in float32.
    pos = -log_p * torch.exp(gamma * log_q)
    neg = -log_q * torch.exp(gamma * log_p)
    if alpha >= 0:
        pos, neg = alpha * pos, (1.0 - alpha) * neg
    return _reduce(torch.lerp(neg, pos, y), reduction)


def _prepare(logits: Tensor, targets: Tensor, reduction: str) -> tuple[Tensor, Tensor]:
    """Check the arguments; return logits and targets in the compute dtype (float32 or 64)."""
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
    return logits.to(dtype), targets.to(device=logits.device, dtype=dtype)


def _reduce(loss: Tensor, reduction: str) -> Tensor:
    return {"mean": Tensor.mean, "sum": Tensor.sum, "none": lambda t: t}[reduction](loss)

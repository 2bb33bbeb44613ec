"""Compiled (``torch.compile``, inductor) kernels of the mask losses: loss sum and gradient fused.

:mod:`segcontrast.losses` uses these for float32 computation with ``reduction="mean"`` or
``"sum"`` unless its backend is ``"eager"``. Each kernel is a pure tensor function that inductor
turns into one loop over the elements (a C++/OpenMP loop on CPU, a Triton kernel on GPU): it reads
the logits and targets once, writes the per-element gradient, and accumulates the loss in float64.
The eager implementation needs a dozen passes over the data for the same result.

Compilation is lazy: nothing is compiled at import, and a kernel is compiled on its first call
(see :func:`run`). To compile each kernel once per device, and not once per value of the loss
parameters, every varying scalar (alpha, gamma, the positive weight, the ``1 / N`` of "mean") is
passed as a 0-dim tensor on the logits' device (Dynamo would specialize a Python float on its value
where it feeds ``pow``, and a float64 host scalar would need a copy on GPU), and the shapes are
dynamic (``dynamic=True``). What still recompiles: a new device or autocast configuration, a change
of the torch thread count on CPU (inductor bakes it in), and, once, per-ROI weights whose first
call had as many ROIs as pixels per ROI (Dynamo gives equal sizes one symbol).

The formulas are those of :mod:`segcontrast.losses` with ``e = exp(-|x|)`` computed once:
``sigmoid(x)`` and ``sigmoid(-x)`` are ``1 / (1 + e)`` and ``e / (1 + e)`` (which is which depends
on the sign of ``x``), and ``softplus(+-x) = relu(+-x) + log1p(e)``, with ``log1p`` written with
``log`` (see :func:`_sigmoid_softplus`). For ``gamma == 2`` (the default, its own kernel) the focal
factors are ``p * p`` and ``q * q``; for any other gamma ``p^gamma = exp(-gamma * softplus(-x))``
(``pow`` is three times slower than ``exp`` in inductor's CPU code), exact at ``gamma = 0`` and
relatively accurate to about ``gamma * |x| * 6e-8`` per pixel. The pos-weighted BCE gradient is
``(1 - y) * p - w * y * q``, which, unlike the eager ``c * p - w * y``, keeps full relative
precision where ``p`` is near 1.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from math import prod

import torch
from torch import Tensor

__all__ = ["BACKEND_ENV", "focal", "pos_weighted_bce", "row_layout", "run", "unavailable"]

logger = logging.getLogger(__name__)

#: Environment variable that selects the loss backend (read by :mod:`segcontrast.losses`).
BACKEND_ENV = "SEGCONTRAST_LOSS_BACKEND"


# --- the kernels: pure functions of tensors, compiled by run() --------------------------------


def _sigmoid_softplus(x: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """``sigmoid(+-x)`` and ``softplus(+-x)`` from one ``exp``, one ``log`` and one division.

    Args:
        x: (*) logits.

    Returns:
        Four (*) tensors. Each probability is ``1 / (1 + e)`` or ``e / (1 + e)`` with
        ``e = exp(-|x|)``, never ``1 - p``, so a confident pixel keeps its small probability to
        full relative precision.
    """
    e = torch.exp(-x.abs())
    u = 1.0 + e
    r = 1.0 / u
    er = e * r
    nonneg = x >= 0
    p = torch.where(nonneg, r, er)
    q = torch.where(nonneg, er, r)
    # log1p(e) = log(u) + log1p((e - (u - 1)) / u): u - 1 is exact, so e - (u - 1) is exactly the
    # rounding error of 1 + e, and the correction, below 2^-24, is its first-order term. Within
    # 2 ulp (it is e itself where u rounds to 1), in a third of the time of inductor's log1p.
    log_term = torch.log(u) + (e - (u - 1.0)) * r
    return p, q, torch.clamp(x, min=0) + log_term, torch.clamp(-x, min=0) + log_term


def _reduce(loss: Tensor, scale: Tensor, dtype: torch.dtype) -> Tensor:
    """``loss.sum() * scale`` () in ``dtype``, the sum accumulated in float64."""
    return (loss.sum(dtype=torch.float64) * scale).to(dtype)


def focal_gamma2_kernel(
    x: Tensor, y: Tensor, pos_scale: Tensor, neg_scale: Tensor, scale: Tensor
) -> tuple[Tensor, Tensor]:
    """Focal loss with ``gamma = 2``: the loss (sum times ``scale``) and its gradient.

    Args:
        x: (N,) float32 logits.
        y: (N,) targets.
        pos_scale: () weight of the positive term (alpha).
        neg_scale: () weight of the negative term (1 - alpha).
        scale: () float64 factor of the sum: ``1 / N`` for "mean", else 1.

    Returns:
        ``(loss, grad)``: () and (N,), ``x``'s dtype.
    """
    p, q, sp_pos, sp_neg = _sigmoid_softplus(x)
    mod_neg = neg_scale * p * p
    mod_pos = pos_scale * q * q
    l_neg = mod_neg * sp_pos
    l_pos = mod_pos * sp_neg
    g_neg = 2.0 * q * l_neg + mod_neg * p
    g_pos = 2.0 * p * l_pos + mod_pos * q
    loss = _reduce(torch.lerp(l_neg, l_pos, y), scale, x.dtype)
    return loss, torch.lerp(g_neg, -g_pos, y) * scale


def focal_kernel(
    x: Tensor, y: Tensor, pos_scale: Tensor, neg_scale: Tensor, gamma: Tensor, scale: Tensor
) -> tuple[Tensor, Tensor]:
    """Focal loss with any ``gamma >= 0``; as :func:`focal_gamma2_kernel`, plus ``gamma`` ()."""
    p, q, sp_pos, sp_neg = _sigmoid_softplus(x)
    # p^gamma = exp(-gamma * softplus(-x)): 1 exactly for gamma = 0 (the loss's 0^0 = 1).
    mod_neg = neg_scale * torch.exp(-gamma * sp_neg)
    mod_pos = pos_scale * torch.exp(-gamma * sp_pos)
    l_neg = mod_neg * sp_pos
    l_pos = mod_pos * sp_neg
    g_neg = gamma * q * l_neg + mod_neg * p
    g_pos = gamma * p * l_pos + mod_pos * q
    loss = _reduce(torch.lerp(l_neg, l_pos, y), scale, x.dtype)
    return loss, torch.lerp(g_neg, -g_pos, y) * scale


def bce_kernel(x: Tensor, y: Tensor, weight: Tensor, scale: Tensor) -> tuple[Tensor, Tensor]:
    """Pos-weighted BCE: the loss (sum times ``scale``) and its gradient.

    Args:
        x: (N,) or (R, K) float32 logits.
        y: targets, ``x``'s shape.
        weight: () positive weight, or (R, 1): one per row of (R, K) logits.
        scale: () float64 factor of the sum: ``1 / N`` for "mean", else 1.

    Returns:
        ``(loss, grad)``: () and ``x``'s shape, ``x``'s dtype. The gradient is
        ``(1 - y) * p - w * y * (1 - p)``: no cancellation where ``p`` is near 1.
    """
    p, q, sp_pos, sp_neg = _sigmoid_softplus(x)
    loss = _reduce(torch.lerp(sp_pos, weight * sp_neg, y), scale, x.dtype)
    return loss, torch.lerp(p, -weight * q, y) * scale


# --- compilation and fallback -----------------------------------------------------------------


class _State:
    """Compiled kernels by name, and why compilation failed, by (device type, dtype)."""

    def __init__(self) -> None:
        self.compiled: dict[str, Callable] = {}
        self.unavailable: dict[tuple[str, torch.dtype], str] = {}


_state = _State()


def unavailable() -> dict[tuple[str, torch.dtype], str]:
    """Why the compiled kernels failed, by (device type, dtype), in this process ("auto" mode)."""
    return dict(_state.unavailable)


def _compile(kernel: Callable) -> Callable:
    """The compiled kernel (compiled on its first call): one graph, sizes symbolic."""
    return torch.compile(kernel, dynamic=True, fullgraph=True)


def run(mode: str, kernel: Callable, *args: Tensor) -> tuple[Tensor, Tensor] | None:
    """Call the compiled ``kernel``; compiles it on its first call.

    Args:
        mode: "auto": a failure to compile (no C++ compiler, an inductor error, ...) logs one
            warning per (device type, dtype) and returns None from then on for that pair;
            "compiled": the failure raises.
        kernel: one of this module's ``*_kernel`` functions.
        *args: its arguments; the first is the logits (its device and dtype select the entry).

    Returns:
        The kernel's ``(loss, grad)``, or None: use the eager implementation.

    Raises:
        RuntimeError: in "compiled" mode, when the kernel cannot be compiled or run.
    """
    key = (args[0].device.type, args[0].dtype)
    if mode == "auto" and key in _state.unavailable:
        return None
    try:
        compiled = _state.compiled.get(kernel.__name__)
        if compiled is None:
            compiled = _state.compiled[kernel.__name__] = _compile(kernel)
        return compiled(*args)
    except torch.OutOfMemoryError:
        raise
    except Exception as err:  # any failure means: no compiled kernels here
        lines = str(err).strip().splitlines()
        reason = f"{type(err).__name__}: {lines[0] if lines else ''}".strip()
        where = f"{key[0]} {str(key[1]).removeprefix('torch.')}"
        if mode != "auto":
            raise RuntimeError(
                f"{BACKEND_ENV}={mode}: the compiled (torch.compile) mask-loss kernel "
                f"{kernel.__name__} failed for {where} logits ({reason}); set {BACKEND_ENV}=auto "
                "to fall back to the eager implementation, or =eager to skip compiling"
            ) from err
        _state.unavailable[key] = reason
        logger.warning(
            "The compiled (torch.compile) mask-loss kernels are unavailable for %s logits (%s); "
            "the mask losses use their eager implementation from now on (slower, same results). "
            "Set %s=eager to skip the attempt, or =compiled to make it an error.",
            where,
            reason,
            BACKEND_ENV,
        )
        return None


def _input(t: Tensor, *shape: int) -> Tensor:
    """``t.view(*shape)`` as a kernel input that is not a view and does not require grad.

    Dynamo guards on what it sees: a view's base's sizes and ``requires_grad`` would each make the
    kernel compile again when they change (the base of the flattened logits has the logits' rank).
    A detached tensor shares the storage but is not a view.
    """
    return t.view(*shape).detach()


def _scale(x: Tensor, scale: float) -> Tensor:
    """The kernels' () float64 ``scale`` on ``x``'s device (the gradient rounds it to float32)."""
    return x.new_full((), scale, dtype=torch.float64)


def focal(
    mode: str, x: Tensor, y: Tensor, pos_scale: float, neg_scale: float, gamma: float, scale: float
) -> tuple[Tensor, Tensor] | None:
    """Compiled focal loss of contiguous float32 ``x``, ``y`` (*); None: use eager.

    Returns:
        ``(loss, grad)``: the () loss, ``scale`` times the sum of the per-element losses, and its
        (*) gradient.
    """
    a_pos, a_neg, s = x.new_full((), pos_scale), x.new_full((), neg_scale), _scale(x, scale)
    if gamma == 2:
        out = run(mode, focal_gamma2_kernel, _input(x, -1), _input(y, -1), a_pos, a_neg, s)
    else:
        g = x.new_full((), gamma)
        out = run(mode, focal_kernel, _input(x, -1), _input(y, -1), a_pos, a_neg, g, s)
    return None if out is None else (out[0], out[1].view(x.shape))


def row_layout(weight_shape: torch.Size, shape: torch.Size) -> tuple[int, int] | None:
    """``(R, K)`` if a weight of ``weight_shape`` is one value per row of ``shape`` seen as (R, K).

    That is, the weight's shape (left-padded with ones) is ``shape[:d]`` followed by ones, e.g.
    (R, 1, 1) for (R, M, M) logits. None when it is not, or when R or K would be below 2 (Dynamo
    specializes sizes 0 and 1, so those would compile again).
    """
    padded = (1,) * (len(shape) - len(weight_shape)) + tuple(weight_shape)
    d = max((i + 1 for i, n in enumerate(padded) if n != 1), default=0)
    if padded[:d] != tuple(shape[:d]):
        return None
    rows, cols = prod(shape[:d]), prod(shape[d:])
    return (rows, cols) if rows >= 2 and cols >= 2 else None


def pos_weighted_bce(
    mode: str, x: Tensor, y: Tensor, weight: float | Tensor, scale: float
) -> tuple[Tensor, Tensor] | None:
    """Compiled pos-weighted BCE of contiguous float32 ``x``, ``y`` (*); None: use eager.

    Args:
        mode: "auto" or "compiled" (see :func:`run`).
        x: (*) logits.
        y: (*) targets.
        weight: a number, or a tensor with one weight per row (see :func:`row_layout`).
        scale: factor of the sum of the per-element losses (``1 / N`` for "mean").

    Returns:
        As :func:`focal`; also None for a tensor weight that is not one per row.
    """
    if isinstance(weight, Tensor):
        layout = row_layout(weight.shape, x.shape)
        if layout is None:
            return None
        rows, cols = layout
        rows_weight = _input(weight.to(x.dtype).contiguous(), rows, 1)
        args = (_input(x, rows, cols), _input(y, rows, cols), rows_weight)
    else:
        args = (_input(x, -1), _input(y, -1), x.new_full((), weight))
    out = run(mode, bce_kernel, *args, _scale(x, scale))
    return None if out is None else (out[0], out[1].view(x.shape))

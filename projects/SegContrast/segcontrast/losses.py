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

Numerics: ``log(p)`` and ``log(1 - p)`` are never taken directly. They are
``-softplus(-x)`` and ``-softplus(x)``, computed as ``relu(+-x) + log1p(exp(-|x|))``: two
non-negative terms, finite for any finite logit (the textbook focal loss gives NaN from
``log(sigmoid(x))`` at ``x = -100``). The negative and positive terms are combined with
``torch.lerp(neg, pos, y)``, which returns exactly one of them where ``y`` is 0 or 1, so a
well-classified pixel keeps its tiny loss to float precision (torch's own BCE adds ``(1 - y) * x``
to ``softplus(-x)``, which loses most digits of a confident background pixel's loss in float32).
Everything is computed in float32 (float64 for float64 logits), also under ``torch.autocast``; the
loss is summed in float64 (eager: torch's pairwise sums per block, added in float64).

Backends: the forward pass computes the loss and its analytic gradient together, and the
backward pass only multiplies the saved gradient by the incoming one (a ``torch.autograd.Function``
per loss). The forward pass has two implementations, with the same results to float rounding:

* ``"compiled"``: a kernel built with ``torch.compile`` (inductor; :mod:`segcontrast.fused_losses`)
  that reads the logits and targets once, writes the gradient and accumulates the loss in float64,
  all in one loop (C++/OpenMP on CPU, Triton on GPU). It serves float32 computation (float32,
  bf16 and fp16 logits) with ``reduction="mean"`` or ``"sum"``.
* ``"eager"``: plain PyTorch ops, in-place and ``out=`` only, so that autograd neither stores nor
  revisits a chain of temporaries. On CPU the elements go in blocks of ``CPU_BLOCK`` elements per
  thread, so that the dozen passes over a block run in the L2 cache (on other devices the whole
  tensor is one block). ``torch.where``, ``F.logsigmoid`` and ``F.softplus`` are avoided: each is
  several times slower than ``exp`` on CPU. It is the reference, and serves everything the
  compiled kernels do not: ``reduction="none"``, float64 logits, tensors of fewer than 2 elements,
  and pos_weight tensors that vary within a row (anything but one weight per leading index, such
  as (R, 1, 1) for (R, M, M) logits).

The backend is chosen by the environment variable ``SEGCONTRAST_LOSS_BACKEND`` or, overriding it,
:func:`set_loss_backend`: ``"auto"`` (the default) compiles on the first use per device and
dtype, and if that fails for any reason (no C++ compiler, an inductor error) logs one warning with
the reason and uses the eager implementation from then on; ``"compiled"`` raises instead;
``"eager"`` never compiles. Nothing is compiled at import. The first compilation in a process costs
seconds (about 13 s on a 2-core CPU with an empty inductor cache, 2 s once inductor's on-disk FX
graph cache holds the kernel, as it does for every later process on the machine); a training run
compiles one kernel per device, whatever its shapes, alpha, gamma or weights (see
:mod:`segcontrast.fused_losses` for what recompiles). On CPU, forward + backward of the compiled
losses take 0.5-0.9x the time of torch's ``binary_cross_entropy_with_logits`` on Mask R-CNN mask
batches (512 to 2048 ROIs; up to 1.1x for a focal gamma other than 2), the eager ones 1.3-2.5x;
``bench/bench_losses.py`` measures both.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from typing import Literal

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from . import fused_losses
from .fused_losses import BACKEND_ENV

__all__ = [
    "BACKEND_ENV",
    "LOSS_BACKENDS",
    "REDUCTIONS",
    "auto_pos_weight",
    "focal_loss_with_logits",
    "loss_backend",
    "pos_weighted_bce_with_logits",
    "set_loss_backend",
]

Reduction = Literal["none", "mean", "sum"]
REDUCTIONS = ("none", "mean", "sum")
LOSS_BACKENDS = ("auto", "compiled", "eager")

_backend_override: str | None = None


def set_loss_backend(name: str | None) -> None:
    """Select the implementation of both losses' forward pass, overriding ``BACKEND_ENV``.

    Args:
        name: "auto" (the compiled kernels where they apply, falling back to eager with one
            warning if they cannot be compiled), "compiled" (the same, but a failure to compile
            raises), "eager" (never compile), or None to follow the environment variable
            ``SEGCONTRAST_LOSS_BACKEND`` again (default "auto"). With "auto" and "compiled",
            the inputs that the compiled kernels do not serve (see the module docstring: float64
            logits, ``reduction="none"``, ...) still use the eager implementation.
    """
    global _backend_override
    if name is not None:
        _check_backend(name, "set_loss_backend")
    _backend_override = name


def loss_backend() -> str:
    """The backend in use: :func:`set_loss_backend`'s choice, else ``$SEGCONTRAST_LOSS_BACKEND``.

    Raises:
        ValueError: the environment variable holds something else than "auto", "compiled",
            "eager" (or nothing).
    """
    if _backend_override is not None:
        return _backend_override
    name = os.environ.get(BACKEND_ENV, "").strip().lower() or "auto"
    return _check_backend(name, f"the environment variable {BACKEND_ENV}")


def _check_backend(name: str, source: str) -> str:
    if name not in LOSS_BACKENDS:
        raise ValueError(
            f"{source}: the loss backend must be one of {list(LOSS_BACKENDS)}, got {name!r}"
        )
    return name


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
    if not max_pos_weight >= 1:
        raise ValueError(f"max_pos_weight must be >= 1, got {max_pos_weight!r}")
    # Bool targets count in int64 (exact); float targets with torch's pairwise sum, then the ratio
    # in float64. (A float64 copy of the targets would cost more than the loss itself.)
    if dim is None:
        num_pos = targets.sum().double()
        numel = targets.numel()
    else:
        num_pos = targets.sum(dim=dim, keepdim=True).double()
        numel = 1
        for d in dim:
            numel *= targets.shape[d]
    if numel == 0:  # nothing to count: no foreground, so the cap (0 / 0 below would be nan)
        return num_pos.fill_(max_pos_weight)
    # num_pos = 0 gives inf, which the clamp caps. (Few small ops: this runs every iteration.)
    return ((numel - num_pos) / num_pos).clamp_(1.0, max_pos_weight)


def _auto_pos_weight_value(targets: Tensor, max_pos_weight: float) -> float:
    """``auto_pos_weight(targets, max_pos_weight).item()``, with one tensor op instead of five.

    The same float64 arithmetic on the same sum, so the same number (each small tensor op costs
    a few microseconds, a noticeable part of a fast loss on a few hundred ROIs).
    """
    if not max_pos_weight >= 1:
        raise ValueError(f"max_pos_weight must be >= 1, got {max_pos_weight!r}")
    num_pos = float(targets.sum())
    if not num_pos > 0:
        return float(max_pos_weight)
    return min(max((targets.numel() - num_pos) / num_pos, 1.0), float(max_pos_weight))


def pos_weighted_bce_with_logits(
    logits: Tensor,
    targets: Tensor,
    pos_weight: str | float | Tensor = "auto",
    max_pos_weight: float = 20.0,
    reduction: Reduction = "mean",
) -> Tensor:
    """Binary cross-entropy from logits with the positive term weighted by ``pos_weight``.

    Equals ``F.binary_cross_entropy_with_logits(logits, targets, pos_weight=w, reduction=...)``
    (``"mean"`` divides by the number of elements).

    Args:
        logits: (*) raw scores, any float dtype.
        targets: (*) same shape as ``logits``, in [0, 1]; must not require grad.
        pos_weight: ``"auto"`` (``num_neg / num_pos`` over all of ``targets``, clamped to
            ``[1, max_pos_weight]``), a positive number (used as is), or a tensor of positive
            weights broadcastable to ``logits`` without enlarging it, e.g. (R, 1, 1) for one weight
            per ROI of (R, M, M) logits (see :func:`auto_pos_weight` with ``dim=(1, 2)``). A tensor
            weight is treated as a constant (no gradient flows into it).
        max_pos_weight: upper clamp of the ``"auto"`` weight.
        reduction: ``"none"`` (per-element loss), ``"mean"`` or ``"sum"``.

    Returns:
        Float32 loss (float64 for float64 logits): a scalar, or (*) for ``"none"``.
    """
    x, y = _prepare(logits, targets, reduction)
    if isinstance(pos_weight, str):
        if pos_weight != "auto":
            raise ValueError(f"pos_weight must be 'auto', a number or a tensor, got {pos_weight!r}")
        weight: float | Tensor = _auto_pos_weight_value(y, max_pos_weight)
    elif isinstance(pos_weight, Tensor) and pos_weight.numel() == 1:
        weight = float(pos_weight.item())
    elif isinstance(pos_weight, Tensor):
        if not _broadcasts_to(pos_weight.shape, x.shape):
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

    For binary targets equals ``torchvision.ops.sigmoid_focal_loss`` with the same arguments, and
    is finite for any finite logit.

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


def _broadcasts_to(shape: torch.Size, target: torch.Size) -> bool:
    """Whether ``shape`` broadcasts to ``target`` without enlarging it.

    The rule of ``torch.broadcast_shapes``, in plain Python: a microsecond instead of ten.
    """
    if len(shape) > len(target):
        return False
    return all(n in (1, m) for n, m in zip(reversed(shape), reversed(target), strict=False))


def _no_autocast(device: torch.device) -> AbstractContextManager:
    """Autocast off, so that the float32 inputs stay float32 (bf16/fp16 logs lose the loss)."""
    # Checked first: entering and leaving an autocast context costs microseconds per call.
    if torch.amp.is_autocast_available(device.type) and torch.is_autocast_enabled(device.type):
        return torch.autocast(device.type, enabled=False)
    return nullcontext()


# Elements per block and per intra-op thread on CPU: each thread's share of the ~8 float32
# temporaries of a block (2 MiB) fits in a core's L2 cache. Blocks grow with the thread count so
# that each op still gives every thread that much work (fewer, larger parallel regions).
CPU_BLOCK = 1 << 16


class _Blocks:
    """Flat views of the inputs and outputs, cut into blocks, with reusable block temporaries.

    Args:
        x: (*) contiguous logits.
        y: (*) contiguous targets, ``x``'s dtype.
        reduction: "none" allocates the per-element loss output.
        with_grad: allocate the per-element gradient output.
        num_temps: number of block-sized temporaries.
    """

    def __init__(self, x: Tensor, y: Tensor, reduction: str, with_grad: bool, num_temps: int):
        self.numel = x.numel()
        if x.device.type == "cpu":
            self.block = CPU_BLOCK * torch.get_num_threads()
        else:
            self.block = max(self.numel, 1)
        self.x, self.y = x.view(-1), y.view(-1)
        self.loss = torch.empty_like(x) if reduction == "none" else None
        self.grad = torch.empty_like(x) if with_grad else None
        size = min(self.block, self.numel)
        self.temps = [x.new_empty(size) for _ in range(num_temps)]
        self.partial_sums: list[Tensor] = []

    def __iter__(self):
        """Yield ``(start, end, temps)`` per block, temps cut to the block's length."""
        for start in range(0, self.numel, self.block):
            end = min(start + self.block, self.numel)
            yield start, end, [t[: end - start] for t in self.temps]

    def loss_out(self, start: int, end: int, scratch: Tensor) -> Tensor:
        """Where a block's loss goes: the output for "none", else ``scratch``."""
        return scratch if self.loss is None else self.loss.view(-1)[start:end]

    def grad_out(self, start: int, end: int) -> Tensor:
        return self.grad.view(-1)[start:end]

    def add_block_loss(self, loss: Tensor) -> None:
        if self.loss is None:
            self.partial_sums.append(loss.sum())

    def result(self, reduction: str) -> Tensor:
        if reduction == "none":
            return self.loss
        dtype = self.x.dtype
        if not self.partial_sums:
            total = self.x.new_zeros(())
        else:
            total = torch.stack(self.partial_sums).sum(dtype=torch.float64).to(dtype)
        return total / self.numel if reduction == "mean" else total


def _softplus_parts(x: Tensor, relu: Tensor, log_term: Tensor, relu_neg: Tensor) -> None:
    """Write ``relu(x)``, ``log(1 + exp(-|x|))`` and ``relu(-x)`` (*) into the given tensors.

    ``softplus(x) = relu(x) + log_term`` and ``softplus(-x) = relu(-x) + log_term``: sums of two
    non-negative terms, so neither loses the small log term to cancellation (``softplus(x) - x``
    would, for large ``x``).
    """
    torch.clamp(x, min=0, out=relu)
    # x - 2 * relu(x) is -|x| exactly, in one pass instead of abs + neg.
    torch.add(x, relu, alpha=-2.0, out=log_term).exp_().log1p_()
    torch.sub(relu, x, out=relu_neg)  # exact: x - x = 0 or 0 - x


def _forward_keeping_gradient(
    ctx, loss_and_grad: Callable[..., tuple[Tensor, Tensor | None]], x: Tensor, y: Tensor,
    loss_args: tuple,
) -> Tensor:
    """A loss Function's forward pass: the loss, its gradient kept for the (first) backward.

    The gradient is kept on ``ctx`` rather than saved for backward so that the backward pass can
    hand it over and drop its own reference: autograd then takes it as a leaf's ``.grad`` as it
    is, where a tensor that ``ctx`` still held would be copied. ``x`` and ``y`` (references, not
    copies) and the loss's other arguments are kept so that a second backward pass through the
    same graph (``retain_graph=True``) can compute the gradient again.
    """
    with_grad = ctx.needs_input_grad[0]
    loss, grad = loss_and_grad(x, y, *loss_args, with_grad)
    if with_grad:
        ctx.gradient = grad
        ctx.loss_args = loss_args
        ctx.save_for_backward(x, y)
    return loss


def _take_gradient(ctx, loss_and_grad: Callable[..., tuple[Tensor, Tensor]]) -> Tensor:
    """The kept gradient, handed over once; computed again by ``loss_and_grad`` after that."""
    grad, ctx.gradient = ctx.gradient, None
    if grad is None:
        x, y = ctx.saved_tensors
        with torch.no_grad():
            _, grad = loss_and_grad(x, y, *ctx.loss_args, True)
    return grad


def _grad_input(grad: Tensor, grad_output: Tensor) -> Tensor:
    """Chain rule. ``grad`` already holds d(loss)/dx, including the 1 / n of "mean"."""
    # The loss is usually the end of the graph (grad_output 1): hand the saved gradient over
    # instead of copying it; autograd never writes into a gradient a node returns.
    if grad_output.device.type == "cpu" and grad_output.numel() == 1 and grad_output.item() == 1:
        return grad
    return grad * grad_output


# Both losses are (1 - y) * neg_term + y * pos_term, formed with torch.lerp(neg, pos, y): it returns
# exactly one of the terms where y is 0 or 1, so a pixel's loss keeps full relative precision.


def _fused_mode(x: Tensor, reduction: str) -> str | None:
    """The backend ("auto" or "compiled") when the compiled kernels may serve these inputs."""
    if reduction == "none" or x.dtype != torch.float32 or x.numel() < 2:
        return None
    mode = loss_backend()
    return None if mode == "eager" else mode


def _grad_scale(x: Tensor, reduction: str) -> float:
    """The factor of the summed loss and of its gradient: the 1 / n of "mean"."""
    return 1.0 / max(x.numel(), 1) if reduction == "mean" else 1.0


class _PosWeightedBCE(torch.autograd.Function):
    """``(1 - y) * softplus(x) + y * w * softplus(-x)``, with an analytic gradient.

    ``w`` is a float or a tensor that broadcasts to ``x``. The compiled kernel serves a float and
    one weight per row; the eager implementation everything.
    """

    @staticmethod
    def loss_and_grad(
        x: Tensor, y: Tensor, weight: float | Tensor, reduction: str, with_grad: bool
    ) -> tuple[Tensor, Tensor | None]:
        """The loss and, if ``with_grad`` (or for free), the gradient (*)."""
        mode = _fused_mode(x, reduction)
        scale = _grad_scale(x, reduction)
        fused = mode and fused_losses.pos_weighted_bce(mode, x, y, weight, scale)
        if fused:
            return fused
        if isinstance(weight, Tensor):
            # One weight per element: the blocks are flat (a broadcast copy, cheap next to the
            # loss).
            weight = weight.expand(x.shape).contiguous()
        return _pos_weighted_bce_eager(x, y, weight, reduction, with_grad)

    @staticmethod
    def forward(ctx, x: Tensor, y: Tensor, weight: float | Tensor, reduction: str) -> Tensor:
        args = (weight, reduction)
        return _forward_keeping_gradient(ctx, _PosWeightedBCE.loss_and_grad, x, y, args)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_output: Tensor):
        grad = _take_gradient(ctx, _PosWeightedBCE.loss_and_grad)
        return _grad_input(grad, grad_output), None, None, None


def _pos_weighted_bce_eager(
    x: Tensor, y: Tensor, weight: float | Tensor, reduction: str, with_grad: bool
) -> tuple[Tensor, Tensor | None]:
    """The eager pos-weighted BCE: the loss and, if ``with_grad``, the gradient (*).

    Computed as ``lerp(relu(x), w * relu(-x), y) + c * log_term`` with ``c = 1 + (w - 1) * y``;
    the gradient is ``c * p - w * y``. ``w`` is a float or a tensor of ``x``'s shape.
    """
    blocks = _Blocks(x, y, reduction, with_grad, num_temps=4)
    scale = _grad_scale(x, reduction)
    tensor_weight = isinstance(weight, Tensor)
    flat_weight = weight.view(-1) if tensor_weight else None
    one, scale_t = x.new_ones(()), x.new_full((), scale)
    for start, end, (margin, log_term, relu_neg, c) in blocks:
        xb, yb = blocks.x[start:end], blocks.y[start:end]
        w = flat_weight[start:end] if tensor_weight else weight
        _softplus_parts(xb, margin, log_term, relu_neg)
        loss = torch.lerp(margin, relu_neg.mul_(w), yb, out=blocks.loss_out(start, end, margin))
        if tensor_weight:
            loss.addcmul_(torch.lerp(one, w, yb, out=c), log_term)
        elif w != 1.0:
            # c * scale: the gradient's "mean" factor rides along, the loss takes it off.
            torch.add(scale_t, yb, alpha=scale * (w - 1.0), out=c)
            loss.addcmul_(c, log_term, value=1.0 / scale)
        else:
            loss.add_(log_term)
        blocks.add_block_loss(loss)
        if blocks.grad is not None:
            grad = torch.sigmoid(xb, out=blocks.grad_out(start, end))
            if not tensor_weight and w != 1.0:
                grad.mul_(c).sub_(yb, alpha=w * scale)
                continue
            if tensor_weight:
                grad.mul_(c).addcmul_(yb, w, value=-1.0)
            else:
                grad.sub_(yb)
            if scale != 1.0:
                grad.mul_(scale)
    return blocks.result(reduction), blocks.grad


class _FocalLoss(torch.autograd.Function):
    """``(1 - y) * a_neg * p^g * softplus(x) + y * a_pos * q^g * softplus(-x)``, ``q = 1 - p``.

    With ``l_neg = a_neg * p^g * softplus(x)`` and ``l_pos = a_pos * q^g * softplus(-x)``, and
    ``dp/dx = p * q``, the gradient is ``(1 - y) * (g * q * l_neg + a_neg * p^(g + 1))
    - y * (g * p * l_pos + a_pos * q^(g + 1))``.
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
        args = (pos_scale, neg_scale, gamma, reduction)
        return _forward_keeping_gradient(ctx, _FocalLoss.loss_and_grad, x, y, args)

    @staticmethod
    def loss_and_grad(
        x: Tensor,
        y: Tensor,
        pos_scale: float,
        neg_scale: float,
        gamma: float,
        reduction: str,
        with_grad: bool,
    ) -> tuple[Tensor, Tensor | None]:
        """The loss and, if ``with_grad`` (or for free), the gradient (*)."""
        mode = _fused_mode(x, reduction)
        scale = _grad_scale(x, reduction)
        fused = mode and fused_losses.focal(mode, x, y, pos_scale, neg_scale, gamma, scale)
        if fused:
            return fused
        return _focal_eager(x, y, pos_scale, neg_scale, gamma, reduction, with_grad)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_output: Tensor):
        grad = _take_gradient(ctx, _FocalLoss.loss_and_grad)
        return _grad_input(grad, grad_output), None, None, None, None, None


def _focal_eager(
    x: Tensor,
    y: Tensor,
    pos_scale: float,
    neg_scale: float,
    gamma: float,
    reduction: str,
    with_grad: bool,
) -> tuple[Tensor, Tensor | None]:
    """The eager focal loss: the loss and, if ``with_grad``, the gradient (*)."""
    blocks = _Blocks(x, y, reduction, with_grad, num_temps=7)
    scale = _grad_scale(x, reduction)
    zero = x.new_zeros(())
    for start, end, temps in blocks:
        p, q, l_neg, log_term, l_pos, mod_neg, mod_pos = temps
        xb, yb = blocks.x[start:end], blocks.y[start:end]
        torch.sigmoid(xb, out=p)
        # sigmoid(-x) rather than 1 - p: exact for confident positives, where 1 - p rounds.
        torch.neg(xb, out=q).sigmoid_()
        _softplus_parts(xb, l_neg, log_term, l_pos)
        l_neg.add_(log_term)
        l_pos.add_(log_term)
        _scaled_pow(p, gamma, neg_scale, out=mod_neg)
        _scaled_pow(q, gamma, pos_scale, out=mod_pos)
        l_neg.mul_(mod_neg)
        l_pos.mul_(mod_pos)
        loss = torch.lerp(l_neg, l_pos, yb, out=blocks.loss_out(start, end, log_term))
        blocks.add_block_loss(loss)
        if blocks.grad is not None:
            # The 1 / n of "mean" and the sign of the positive term ride on the scalars.
            torch.addcmul(zero, mod_neg, p, value=scale, out=mod_neg)
            mod_neg.addcmul_(q, l_neg, value=gamma * scale)
            torch.addcmul(zero, mod_pos, q, value=-scale, out=mod_pos)
            mod_pos.addcmul_(p, l_pos, value=-gamma * scale)
            torch.lerp(mod_neg, mod_pos, yb, out=blocks.grad_out(start, end))
    return blocks.result(reduction), blocks.grad


def _scaled_pow(t: Tensor, exponent: float, scale: float, out: Tensor) -> Tensor:
    """``scale * t ** exponent`` (*) written into ``out``; ``0 ** 0`` is 1, as in the loss."""
    if exponent == 0:
        return out.fill_(scale)
    if exponent == 2:
        return torch.addcmul(t.new_zeros(()), t, t, value=scale, out=out)
    if exponent == 1:
        return torch.mul(t, scale, out=out)
    torch.pow(t, exponent, out=out)
    return out.mul_(scale) if scale != 1.0 else out

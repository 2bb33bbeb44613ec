"""The mask losses against torchvision's focal loss and torch's pos-weighted BCE.

References are independent: ``torchvision.ops.sigmoid_focal_loss``,
``F.binary_cross_entropy_with_logits(pos_weight=...)``, the issue's formulas written with
``F.logsigmoid`` in float64, and autograd through those. The tests that take the ``backend``
fixture run with both implementations of the losses: "eager" and "compiled" (torch.compile; its
kernels are compiled once per process, on first use, and serve float32 "mean"/"sum" losses, so
float64 and ``reduction="none"`` cases are eager under both).
"""

import logging
import math
import re
import subprocess
import sys

import pytest
import segcontrast.fused_losses as fused_losses
import torch
import torch.nn.functional as F
from segcontrast.losses import (
    BACKEND_ENV,
    CPU_BLOCK,
    LOSS_BACKENDS,
    REDUCTIONS,
    auto_pos_weight,
    focal_loss_with_logits,
    loss_backend,
    pos_weighted_bce_with_logits,
    set_loss_backend,
)
from torch._dynamo.utils import counters
from torchvision.ops import sigmoid_focal_loss

# (90, 28, 28) spans two CPU blocks with a remainder; (7,) is smaller than a SIMD register.
SHAPES = [(7,), (3, 5, 4), (4, 28, 28), (90, 28, 28)]
assert 90 * 28 * 28 > CPU_BLOCK and 90 * 28 * 28 % CPU_BLOCK


def _inputs(shape, dtype=torch.float32, seed=0, soft=False):
    gen = torch.Generator().manual_seed(seed)
    # Scale 3: many confident pixels (|x| > 5), where float32 rounding differs most.
    logits = (torch.randn(shape, generator=gen, dtype=torch.float64) * 3).to(dtype)
    if soft:
        targets = torch.rand(shape, generator=gen, dtype=torch.float64).to(dtype)
    else:
        targets = (torch.rand(shape, generator=gen) > 0.7).to(dtype)
    return logits, targets


def _assert_rel(actual, expected, rtol=1e-6):
    """Equal to ``rtol`` relative to the largest magnitude (elementwise for scalars)."""
    expected = expected.to(actual.dtype)
    atol = rtol * float(expected.abs().max()) if expected.numel() else 0.0
    torch.testing.assert_close(actual, expected, rtol=rtol, atol=atol)


def _bce_ref(x, y, pos_weight, reduction):
    w = torch.as_tensor(pos_weight, dtype=x.dtype)
    return F.binary_cross_entropy_with_logits(x, y, pos_weight=w, reduction=reduction)


def _focal_formula(x, y, alpha, gamma, reduction):
    """The issue's two-term focal loss, in float64, with log(p) = logsigmoid(x)."""
    x, y = x.double(), y.double()
    p = torch.sigmoid(x)
    a_pos, a_neg = (alpha, 1 - alpha) if alpha >= 0 else (1.0, 1.0)
    loss = -a_pos * (1 - p) ** gamma * y * F.logsigmoid(x)
    loss = loss - a_neg * p**gamma * (1 - y) * F.logsigmoid(-x)
    return {"none": loss, "mean": loss.mean(), "sum": loss.sum()}[reduction]


def _bce_formula(x, y, pos_weight, reduction):
    """The issue's pos-weighted BCE, in float64, with log(p) = logsigmoid(x)."""
    x, y = x.double(), y.double()
    loss = -pos_weight * y * F.logsigmoid(x) - (1 - y) * F.logsigmoid(-x)
    return {"none": loss, "mean": loss.mean(), "sum": loss.sum()}[reduction]


def _grad(fn, x, *args, **kwargs):
    x = x.detach().clone().requires_grad_()
    fn(x, *args, **kwargs).backward()
    return x.grad


def _loss_and_grad(fn, x, *args, **kwargs):
    x = x.detach().clone().requires_grad_()
    loss = fn(x, *args, **kwargs)
    loss.backward()
    return loss.detach(), x.grad


# --- backends -----------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def _default_backend():
    """Every test starts and ends with the backend of the environment (no override)."""
    set_loss_backend(None)
    yield
    set_loss_backend(None)


@pytest.fixture(scope="module")
def compile_failure():
    """Why the compiled kernels cannot be built on this machine, or None (they can)."""
    x, y = _inputs((4, 7))
    set_loss_backend("compiled")
    try:
        focal_loss_with_logits(x, y)
    except RuntimeError as err:
        return str(err)
    finally:
        set_loss_backend(None)
    return None


@pytest.fixture
def compiled(compile_failure):
    """The "compiled" backend; skips where torch.compile cannot build the kernels."""
    if compile_failure is not None:
        pytest.skip(f"torch.compile cannot build the loss kernels here: {compile_failure}")
    set_loss_backend("compiled")
    return "compiled"


@pytest.fixture(params=["eager", "compiled"])
def backend(request):
    """Each backend in turn (the compiled one skipped where it cannot be built)."""
    if request.param == "compiled":
        return request.getfixturevalue("compiled")
    set_loss_backend("eager")
    return "eager"


def backend_cases(reductions=REDUCTIONS, dtypes=(torch.float32, torch.float64)):
    """Parametrize ("backend", "dtype", "reduction"): every case for "eager"; for "compiled" only
    those its kernels serve (float32, "mean"/"sum"): the others are the eager cases again."""
    cases = []
    for backend in ["eager", "compiled"]:
        for dtype in dtypes:
            for reduction in reductions:
                if backend == "eager" or (dtype == torch.float32 and reduction != "none"):
                    name = str(dtype).removeprefix("torch.")
                    cases.append(
                        pytest.param(backend, dtype, reduction, id=f"{backend}-{name}-{reduction}")
                    )
    return pytest.mark.parametrize(("backend", "dtype", "reduction"), cases, indirect=["backend"])


# --- equality with the references -------------------------------------------------------------


@backend_cases()
@pytest.mark.parametrize("shape", SHAPES)
def test_focal_equals_torchvision(shape, reduction, dtype, backend):
    x, y = _inputs(shape, dtype)
    for alpha, gamma in [(0.25, 2.0), (0.6, 1.5), (-1.0, 3.0), (0.25, 0.0), (0.4, 1.0)]:
        ours = focal_loss_with_logits(x, y, alpha, gamma, reduction)
        assert ours.dtype == dtype
        _assert_rel(ours, sigmoid_focal_loss(x, y, alpha, gamma, reduction))


@backend_cases()
@pytest.mark.parametrize("shape", SHAPES)
def test_pos_weighted_bce_equals_torch(shape, reduction, dtype, backend):
    x, y = _inputs(shape, dtype)
    for weight in [1.0, 2.5, 0.5]:
        ours = pos_weighted_bce_with_logits(x, y, pos_weight=weight, reduction=reduction)
        assert ours.dtype == dtype
        _assert_rel(ours, _bce_ref(x, y, weight, reduction))
    auto = auto_pos_weight(y, max_pos_weight=20.0)
    ours = pos_weighted_bce_with_logits(x, y, "auto", max_pos_weight=20.0, reduction=reduction)
    _assert_rel(ours, _bce_ref(x, y, auto, reduction))


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_pos_weighted_bce_per_roi_weight_tensor(reduction, backend):
    x, y = _inputs((6, 28, 28))
    weight = auto_pos_weight(y, max_pos_weight=20.0, dim=(1, 2))
    assert weight.shape == (6, 1, 1)
    ours = pos_weighted_bce_with_logits(x, y, pos_weight=weight, reduction=reduction)
    # torch broadcasts pos_weight the same way: one ratio per ROI.
    _assert_rel(ours, _bce_ref(x, y, weight.float(), reduction))


@backend_cases()
def test_soft_targets(reduction, dtype, backend):
    x, y = _inputs((5, 9, 9), dtype, soft=True)
    _assert_rel(
        pos_weighted_bce_with_logits(x, y, 3.0, reduction=reduction), _bce_ref(x, y, 3.0, reduction)
    )
    for alpha, gamma in [(0.25, 2.0), (-1.0, 0.5)]:
        _assert_rel(
            focal_loss_with_logits(x, y, alpha, gamma, reduction),
            _focal_formula(x, y, alpha, gamma, reduction),
        )


@pytest.mark.parametrize("shape", SHAPES)
def test_float32_losses_are_exact_to_1e6_per_element(shape):
    """Each pixel's float32 loss is within 1e-6 of the exact (float64) value, even tiny ones.

    Torch's own float32 BCE is not: it adds ``(1 - y) * x`` to ``softplus(-x)``, losing the
    digits of a confident background pixel's loss.
    """
    x, y = _inputs(shape)
    exact_bce = _bce_ref(x.double(), y.double(), 2.5, "none")
    ours = pos_weighted_bce_with_logits(x, y, 2.5, reduction="none").double()
    torch.testing.assert_close(ours, exact_bce, rtol=1e-6, atol=0)
    exact_focal = sigmoid_focal_loss(x.double(), y.double(), reduction="none")
    ours = focal_loss_with_logits(x, y, reduction="none").double()
    torch.testing.assert_close(ours, exact_focal, rtol=1e-6, atol=1e-38)
    if x.numel() > 1000:
        torch_f32 = _bce_ref(x, y, 2.5, "none").double()
        assert ((torch_f32 - exact_bce).abs() / exact_bce).max() > 1e-3


# --- gradients ----------------------------------------------------------------------------------


@backend_cases(reductions=["mean", "sum"])
@pytest.mark.parametrize("shape", SHAPES[1:])
def test_gradients_equal_reference_autograd(shape, reduction, dtype, backend):
    x, y = _inputs(shape, dtype)
    _assert_rel(
        _grad(focal_loss_with_logits, x, y, reduction=reduction),
        _grad(sigmoid_focal_loss, x, y, reduction=reduction),
    )
    weight = auto_pos_weight(y, 20.0, dim=tuple(range(1, x.dim())))
    for w in [2.5, weight]:
        _assert_rel(
            _grad(pos_weighted_bce_with_logits, x, y, pos_weight=w, reduction=reduction),
            _grad(_bce_ref, x, y, w, reduction),
        )


def test_focal_gradient_exact_to_1e6_per_element(backend):
    x, y = _inputs((90, 28, 28))
    exact = _grad(sigmoid_focal_loss, x.double(), y.double(), reduction="sum")
    ours = _grad(focal_loss_with_logits, x, y, reduction="sum").double()
    torch.testing.assert_close(ours, exact, rtol=1e-6, atol=1e-38)


def test_gradcheck_float64():
    x, y = _inputs((3, 4, 5), torch.float64)
    y[0, 0, 0], y[1, 1, 1] = 0.3, 0.8  # soft targets too
    x.requires_grad_()
    per_roi = torch.tensor([1.5, 4.0, 20.0], dtype=torch.float64).view(3, 1, 1)
    for reduction in REDUCTIONS:
        for alpha, gamma in [(0.25, 2.0), (-1.0, 0.0), (0.7, 1.3)]:
            assert torch.autograd.gradcheck(
                lambda t, a=alpha, g=gamma, r=reduction: focal_loss_with_logits(t, y, a, g, r),
                (x,),
            )
        for weight in ["auto", 3.0, per_roi]:
            assert torch.autograd.gradcheck(
                lambda t, w=weight, r=reduction: pos_weighted_bce_with_logits(t, y, w, 20.0, r),
                (x,),
            )


def test_gradient_output_chain_rule_and_retain_graph(backend):
    x, y = _inputs((4, 28, 28))
    x.requires_grad_()
    for loss_fn in [focal_loss_with_logits, pos_weighted_bce_with_logits]:
        x.grad = None
        loss = loss_fn(x, y)
        (3.0 * loss).backward(retain_graph=True)
        first = x.grad.clone()
        loss.backward()  # the saved gradient must not have been consumed by the first pass
        _assert_rel(x.grad, first * (4.0 / 3.0))
        x.grad = None
        upstream = torch.rand_like(x)
        loss_fn(x, y, reduction="none").backward(upstream)
        _assert_rel(
            x.grad, _grad(lambda t, f=loss_fn, u=upstream: (f(t, y, reduction="none") * u).sum(), x)
        )


def test_leaf_gets_the_computed_gradient_without_a_copy(backend):
    x, y = _inputs((4, 28, 28))
    x.requires_grad_()
    for loss_fn in [focal_loss_with_logits, pos_weighted_bce_with_logits]:
        x.grad = None
        loss = loss_fn(x, y)
        kept = loss.grad_fn.gradient.data_ptr()  # what the forward pass computed
        loss.backward()
        assert x.grad.data_ptr() == kept
        assert loss.grad_fn.gradient is None  # handed over, not held twice


def test_no_grad_and_non_contiguous_inputs(backend):
    x, y = _inputs((28, 4, 28))
    xt, yt = x.transpose(0, 1), y.transpose(0, 1)
    assert not xt.is_contiguous()
    with torch.no_grad():
        _assert_rel(focal_loss_with_logits(xt, yt), sigmoid_focal_loss(xt, yt, reduction="mean"))
        _assert_rel(pos_weighted_bce_with_logits(xt, yt, 2.0), _bce_ref(xt, yt, 2.0, "mean"))


# --- numerics -----------------------------------------------------------------------------------


def _textbook_focal(x, y, alpha=0.25, gamma=2.0):
    p = torch.sigmoid(x)
    return -alpha * (1 - p) ** gamma * y * torch.log(p) - (1 - alpha) * p**gamma * (
        1 - y
    ) * torch.log(1 - p)


@pytest.mark.parametrize("magnitude", [50.0, 100.0])
def test_extreme_logits_finite(magnitude, backend):
    x = torch.tensor([magnitude, -magnitude, magnitude, -magnitude, 0.0])
    y = torch.tensor([0.0, 1.0, 1.0, 0.0, 1.0])
    x64, y64 = x.double(), y.double()
    # The references are the formulas with logsigmoid: torch's float64 BCE itself gives 0 for
    # the loss of x = -50, y = 0 (it adds -50 to softplus(50)), instead of 1.9e-22.
    # "none" is the eager implementation; "sum" the compiled one under the compiled backend.
    for reduction in ["none", "sum"]:
        for fn, ref in [
            (
                lambda a, b, r=reduction: focal_loss_with_logits(a, b, reduction=r),
                lambda a, b, r=reduction: _focal_formula(a, b, 0.25, 2.0, r),
            ),
            (
                lambda a, b, r=reduction: pos_weighted_bce_with_logits(a, b, 20.0, reduction=r),
                lambda a, b, r=reduction: _bce_formula(a, b, 20.0, r),
            ),
        ]:
            xg = x.clone().requires_grad_()
            loss = fn(xg, y)
            loss.sum().backward()
            assert torch.isfinite(loss).all() and torch.isfinite(xg.grad).all()
            # Wrong and confident: the loss is ~|x| (times the class weight); right: ~0.
            torch.testing.assert_close(loss.double(), ref(x64, y64), rtol=1e-6, atol=1e-30)
            _assert_rel(xg.grad.double(), _grad(lambda t, r=ref: r(t, y64).sum(), x64))
    # The textbook focal loss, log(sigmoid(x)), breaks down at these logits.
    xg = x.clone().requires_grad_()
    textbook = _textbook_focal(xg, y)
    textbook.sum().backward()
    assert not torch.isfinite(textbook).all()
    assert not torch.isfinite(xg.grad).all()


def test_bf16_autocast_computes_in_float32(backend):
    x, y = _inputs((6, 28, 28))
    x_bf16 = x.bfloat16()
    as_float = x_bf16.float()  # the values the loss sees
    for fn, ref in [
        (focal_loss_with_logits, lambda t: sigmoid_focal_loss(t, y, reduction="mean")),
        (pos_weighted_bce_with_logits, lambda t: _bce_ref(t, y, auto_pos_weight(y, 20.0), "mean")),
    ]:
        leaf = x_bf16.clone().requires_grad_()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss = fn(leaf, y)
            loss_f32_in = fn(as_float, y)
        loss.backward()
        assert loss.dtype == torch.float32 and loss_f32_in.dtype == torch.float32
        _assert_rel(loss, ref(as_float))
        _assert_rel(loss_f32_in, ref(as_float))
        assert leaf.grad.dtype == torch.bfloat16
        expected_grad = _grad(ref, as_float).bfloat16().float()
        torch.testing.assert_close(leaf.grad.float(), expected_grad, rtol=1e-2, atol=1e-8)


def test_no_foreground_weight_is_capped_and_loss_finite(backend):
    x, _ = _inputs((3, 28, 28))
    empty = torch.zeros_like(x)
    assert auto_pos_weight(empty, 20.0).item() == 20.0
    per_roi = auto_pos_weight(empty, 7.0, dim=(1, 2))
    assert per_roi.shape == (3, 1, 1) and (per_roi == 7.0).all()
    for reduction in REDUCTIONS:
        loss = pos_weighted_bce_with_logits(x, empty, "auto", 20.0, reduction)
        assert torch.isfinite(loss).all()
        _assert_rel(loss, _bce_ref(x, empty, 1.0, reduction))  # no positive term to weigh
    full = torch.ones_like(x)
    assert auto_pos_weight(full, 20.0).item() == 1.0  # no background: ratio 0, clamped to 1
    assert torch.isfinite(pos_weighted_bce_with_logits(x, full)).all()
    assert torch.isfinite(auto_pos_weight(torch.zeros(0), 5.0)).all()


def test_auto_pos_weight_values():
    y = torch.zeros(2, 10, 10)
    y[0, :1] = 1  # 10 positive of 100: ratio 9
    y[1, :5] = 1  # 50 of 100: ratio 1
    torch.testing.assert_close(auto_pos_weight(y, 20.0).item(), 140 / 60)
    per_roi = auto_pos_weight(y.bool(), 20.0, dim=(1, 2))
    assert per_roi.dtype == torch.float64
    torch.testing.assert_close(per_roi.flatten(), torch.tensor([9.0, 1.0], dtype=torch.float64))
    assert auto_pos_weight(y, 4.0, dim=(1, 2)).flatten().tolist() == [4.0, 1.0]
    with pytest.raises(ValueError, match="max_pos_weight must be >= 1"):
        auto_pos_weight(y, 0.5)


# --- definitions --------------------------------------------------------------------------------


def test_worked_examples_focal_weights():
    """A well-classified pixel (p = 0.95) is weighted 0.0025, a hard one (p = 0.5) 0.25."""
    for p, weight in [(0.95, 0.0025), (0.5, 0.25)]:
        x = torch.tensor([math.log(p / (1 - p))], dtype=torch.float64)
        y = torch.ones_like(x)
        focal = focal_loss_with_logits(x, y, alpha=-1.0, gamma=2.0)
        bce = -math.log(p)
        assert focal.item() == pytest.approx(weight * bce, rel=1e-9)
        # alpha weighs positives: 0.25 of that.
        assert focal_loss_with_logits(x, y).item() == pytest.approx(0.25 * weight * bce, rel=1e-9)


@backend_cases()
def test_gamma0_alpha_negative_is_bce(reduction, dtype, backend):
    for soft in [False, True]:
        x, y = _inputs((4, 28, 28), dtype, soft=soft)
        ours = focal_loss_with_logits(x, y, alpha=-1.0, gamma=0.0, reduction=reduction)
        bce = F.binary_cross_entropy_with_logits(x.double(), y.double(), reduction=reduction)
        _assert_rel(ours, bce, rtol=1e-12 if dtype == torch.float64 else 1e-6)


def test_bad_arguments_raise():
    x, y = _inputs((2, 3, 3))
    for fn in [focal_loss_with_logits, pos_weighted_bce_with_logits]:
        with pytest.raises(ValueError, match=r"reduction must be one of \['none', 'mean', 'sum'\]"):
            fn(x, y, reduction="avg")
        with pytest.raises(
            ValueError, match=r"targets of shape \(3, 3\) must have the logits' shape \(2, 3, 3\)"
        ):
            fn(x, y[0])
        with pytest.raises(ValueError, match="targets must not require grad"):
            fn(x, y.clone().requires_grad_())
    with pytest.raises(ValueError, match="gamma must be >= 0"):
        focal_loss_with_logits(x, y, gamma=-1.0)
    with pytest.raises(ValueError, match="pos_weight must be 'auto'"):
        pos_weighted_bce_with_logits(x, y, pos_weight="autoo")
    with pytest.raises(ValueError, match=r"pos_weight of shape \(3, 1, 1\) does not broadcast"):
        pos_weighted_bce_with_logits(x, y, pos_weight=torch.ones(3, 1, 1))


def test_block_size_does_not_change_results(monkeypatch):
    """Small blocks, the CPU's, and one block for the whole tensor (as on a GPU) agree."""
    import segcontrast.losses as losses

    set_loss_backend("eager")  # the blocks are the eager implementation's
    x, y = _inputs((90, 28, 28))

    def run(block):
        monkeypatch.setattr(losses, "CPU_BLOCK", block)
        out = []
        for fn in (focal_loss_with_logits, pos_weighted_bce_with_logits):
            for reduction in REDUCTIONS:
                xg = x.clone().requires_grad_()
                loss = fn(xg, y, reduction=reduction)
                loss.sum().backward()
                out += [loss.detach(), xg.grad]
        return out

    reference = run(CPU_BLOCK)
    for block in (1000, 10**9):
        for ours, expected in zip(run(block), reference, strict=True):
            _assert_rel(ours, expected)


# --- the compiled backend -----------------------------------------------------------------------


def _focal_and_bce_cases(y):
    """(name, loss function of x) for every kernel: focal gamma 2, any gamma, BCE w, per-ROI w."""
    per_roi = auto_pos_weight(y, 20.0, dim=tuple(range(1, y.dim())))
    cases = [
        (f"focal a={a} g={g}", lambda x, r, a=a, g=g: focal_loss_with_logits(x, y, a, g, r))
        for a, g in [(0.25, 2.0), (0.25, 0.0), (0.25, 1.0), (0.6, 1.5), (-1.0, 3.0)]
    ]
    cases += [
        (f"bce w={w}", lambda x, r, w=w: pos_weighted_bce_with_logits(x, y, w, 20.0, r))
        for w in [1.0, 2.5, "auto", per_roi]
    ]
    return cases


@pytest.mark.parametrize("soft", [False, True])
@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_compiled_equals_eager(reduction, soft, compiled):
    x, y = _inputs((90, 28, 28), soft=soft)
    for name, fn in _focal_and_bce_cases(y):
        set_loss_backend("compiled")
        loss, grad = _loss_and_grad(fn, x, reduction)
        set_loss_backend("eager")
        eager_loss, eager_grad = _loss_and_grad(fn, x, reduction)
        assert loss.dtype == torch.float32 and grad.dtype == torch.float32, name
        _assert_rel(loss, eager_loss)
        _assert_rel(grad, eager_grad)


def test_compiled_bce_gradient_exact_to_1e6_per_element(compiled):
    """The compiled BCE gradient is ``(1 - y) * p - w * y * (1 - p)`` with ``1 - p`` computed as
    ``sigmoid(-x)``: exact for confident pixels (the eager one, ``c * p - w * y``, cancels)."""
    x, y = _inputs((90, 28, 28))
    per_roi = auto_pos_weight(y, 20.0, dim=(1, 2))
    for weight in [2.5, per_roi]:
        exact = _grad(_bce_ref, x.double(), y.double(), weight, "sum")
        ours = _grad(pos_weighted_bce_with_logits, x, y, weight, reduction="sum").double()
        torch.testing.assert_close(ours, exact, rtol=1e-6, atol=1e-38)


def test_which_inputs_the_compiled_kernels_serve(monkeypatch, compiled):
    served = []
    run = fused_losses.run

    def spy(mode, kernel, *args):
        out = run(mode, kernel, *args)
        served.append(kernel.__name__ if out is not None else None)
        return out

    monkeypatch.setattr(fused_losses, "run", spy)
    x, y = _inputs((6, 28, 28))
    per_roi = auto_pos_weight(y, 20.0, dim=(1, 2))
    per_pixel = torch.rand(28, generator=torch.Generator().manual_seed(1)) + 1
    cases = [
        (lambda: focal_loss_with_logits(x, y), ["focal_gamma2_kernel"]),
        (lambda: focal_loss_with_logits(x, y, 0.5, 1.5, "sum"), ["focal_kernel"]),
        (lambda: focal_loss_with_logits(x.bfloat16(), y), ["focal_gamma2_kernel"]),
        (lambda: pos_weighted_bce_with_logits(x, y), ["bce_kernel"]),
        (lambda: pos_weighted_bce_with_logits(x, y, per_roi), ["bce_kernel"]),
        (lambda: pos_weighted_bce_with_logits(x, y, per_roi[:1]), ["bce_kernel"]),  # one number
        # The eager implementation's cases: no compiled kernel is even tried.
        (lambda: focal_loss_with_logits(x, y, reduction="none"), []),
        (lambda: pos_weighted_bce_with_logits(x, y, reduction="none"), []),
        (lambda: focal_loss_with_logits(x.double(), y), []),
        (lambda: pos_weighted_bce_with_logits(x, y, per_pixel), []),  # varies within a row
        (lambda: focal_loss_with_logits(x[:1, :1, :1], y[:1, :1, :1]), []),
    ]
    for i, (call, expected) in enumerate(cases):
        served.clear()
        call()
        assert served == expected, f"case {i}"


def test_row_layout():
    assert fused_losses.row_layout((6, 1, 1), (6, 28, 28)) == (6, 784)
    assert fused_losses.row_layout((2, 3, 1, 1), (2, 3, 28, 28)) == (6, 784)
    assert fused_losses.row_layout((6, 1, 1), (6, 1, 28)) == (6, 28)
    assert fused_losses.row_layout((1, 1, 1), (6, 28, 28)) is None  # a single number: R = 1
    assert fused_losses.row_layout((28,), (6, 28)) is None  # per element: K = 1
    assert fused_losses.row_layout((1, 28, 1), (6, 28, 28)) is None  # broadcast over rows


def test_compiled_kernels_compile_once_for_all_values_and_shapes(compiled):
    """New alpha, gamma, weights, 1/N, shapes, grad modes and autocast reuse the kernels."""

    def calls(seed, shape, alpha, gamma, weight):
        x, y = _inputs(shape, seed=seed)
        per_roi = auto_pos_weight(y, 20.0, dim=tuple(range(1, len(shape))))
        for reduction in ["mean", "sum"]:
            xg = x.clone().requires_grad_()
            total = focal_loss_with_logits(xg, y, alpha, 2.0, reduction)
            total = total + focal_loss_with_logits(xg, y, alpha, gamma, reduction)
            total = total + pos_weighted_bce_with_logits(xg, y, weight, reduction=reduction)
            total = total + pos_weighted_bce_with_logits(xg, y, per_roi, reduction=reduction)
            total.backward()
        with torch.no_grad():
            focal_loss_with_logits(x, y, alpha, gamma)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            pos_weighted_bce_with_logits(x.bfloat16().requires_grad_(), y).backward()

    calls(0, (5, 28, 28), 0.25, 1.5, 3.0)  # compiles what earlier tests have not
    graphs = counters["stats"]["unique_graphs"]
    for seed, shape, alpha, gamma, weight in [
        (1, (17, 28, 28), 0.6, 0.0, 1.0),
        (2, (3, 14, 14), -1.0, 1.0, 20.0),
        (3, (40, 7), 0.1, 3.3, 0.5),
        (4, (2, 2), 0.9, 0.5, 1e-3),
    ]:
        calls(seed, shape, alpha, gamma, weight)
    assert counters["stats"]["unique_graphs"] == graphs


def _broken_compile(fails_at):
    message = "simulated: no working C++ compiler"

    def compile_(kernel):
        if fails_at == "build":
            raise RuntimeError(message)

        def call(*args):  # torch.compile fails on the first call, not when wrapping
            raise RuntimeError(message)

        return call

    return compile_, message


@pytest.mark.parametrize("fails_at", ["build", "call"])
def test_auto_falls_back_to_eager_with_one_warning(monkeypatch, caplog, fails_at):
    compile_, message = _broken_compile(fails_at)
    monkeypatch.setattr(fused_losses, "_state", fused_losses._State())
    monkeypatch.setattr(fused_losses, "_compile", compile_)
    x, y = _inputs((6, 28, 28))
    set_loss_backend("eager")
    expected = [_loss_and_grad(fn, x, "mean") for _, fn in _focal_and_bce_cases(y)]
    set_loss_backend("auto")
    with caplog.at_level(logging.WARNING):
        for _ in range(2):
            for (name, fn), (loss, grad) in zip(_focal_and_bce_cases(y), expected, strict=True):
                ours = _loss_and_grad(fn, x, "mean")
                assert torch.equal(ours[0], loss) and torch.equal(ours[1], grad), name
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1
    text = warnings[0].getMessage()
    assert message in text and "cpu float32" in text and BACKEND_ENV in text
    assert list(fused_losses._state.unavailable) == [("cpu", torch.float32)]


def test_compiled_backend_raises_when_compilation_fails(monkeypatch):
    compile_, message = _broken_compile("call")
    monkeypatch.setattr(fused_losses, "_state", fused_losses._State())
    monkeypatch.setattr(fused_losses, "_compile", compile_)
    set_loss_backend("compiled")
    x, y = _inputs((6, 28, 28))
    for fn in [focal_loss_with_logits, pos_weighted_bce_with_logits]:
        with pytest.raises(RuntimeError, match=f"{BACKEND_ENV}=compiled.*{re.escape(message)}"):
            fn(x, y)


def test_eager_backend_never_compiles(monkeypatch):
    monkeypatch.setattr(fused_losses, "_state", fused_losses._State())
    monkeypatch.setattr(fused_losses, "_compile", lambda kernel: pytest.fail("compiled"))
    set_loss_backend("eager")
    x, y = _inputs((6, 28, 28))
    for _, fn in _focal_and_bce_cases(y):
        _loss_and_grad(fn, x, "mean")
    assert not fused_losses._state.compiled


def test_backend_from_environment_and_override(monkeypatch):
    monkeypatch.delenv(BACKEND_ENV, raising=False)
    assert loss_backend() == "auto"
    for name in LOSS_BACKENDS:
        monkeypatch.setenv(BACKEND_ENV, f" {name.upper()} ")
        assert loss_backend() == name
    monkeypatch.setenv(BACKEND_ENV, "jit")
    x, y = _inputs((6, 28, 28))
    expected = rf"{BACKEND_ENV}: the loss backend must be one of \['auto', 'compiled', 'eager'\]"
    with pytest.raises(ValueError, match=expected + ", got 'jit'"):
        focal_loss_with_logits(x, y)
    set_loss_backend("eager")  # the override wins
    assert loss_backend() == "eager"
    focal_loss_with_logits(x, y)
    set_loss_backend(None)
    with pytest.raises(ValueError, match="environment variable"):
        loss_backend()
    with pytest.raises(ValueError, match=r"set_loss_backend: .*got 'fast'"):
        set_loss_backend("fast")


def test_importing_compiles_nothing():
    code = (
        "import segcontrast, segcontrast.losses\n"
        "from segcontrast import fused_losses\n"
        "from torch._dynamo.utils import counters\n"
        "assert not fused_losses._state.compiled and not counters['stats'], counters\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)

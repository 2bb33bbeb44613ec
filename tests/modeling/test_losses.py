"""The mask losses against torchvision's focal loss and torch's pos-weighted BCE.

References are independent of the implementation: ``torchvision.ops.sigmoid_focal_loss``,
``F.binary_cross_entropy_with_logits(pos_weight=...)``, the formulas written with ``F.logsigmoid``
in float64, autograd through those, and ``gradcheck``.
"""

import math

import pytest
import torch
import torch.nn.functional as F
from segcontrast.modeling.losses import (
    REDUCTIONS,
    auto_pos_weight,
    focal_loss_with_logits,
    pos_weighted_bce_with_logits,
)
from torchvision.ops import sigmoid_focal_loss

SHAPES = [(7,), (3, 5, 4), (90, 28, 28)]
DTYPES = [torch.float32, torch.float64]
HALF = [torch.float16, torch.bfloat16]


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


def _rtol(dtype):
    return 1e-12 if dtype == torch.float64 else 1e-6


def _bce_ref(x, y, pos_weight, reduction):
    w = torch.as_tensor(pos_weight, dtype=x.dtype)
    return F.binary_cross_entropy_with_logits(x, y, pos_weight=w, reduction=reduction)


def _reduce(loss, reduction):
    return {"none": loss, "mean": loss.mean(), "sum": loss.sum()}[reduction]


def _focal_formula(x, y, alpha, gamma, reduction):
    """The two-term focal loss, in float64, with log(p) = logsigmoid(x), 1 - p = sigmoid(-x)."""
    x, y = x.double(), y.double()
    p = torch.sigmoid(x)
    a_pos, a_neg = (alpha, 1 - alpha) if alpha >= 0 else (1.0, 1.0)
    loss = -a_pos * torch.sigmoid(-x) ** gamma * y * F.logsigmoid(x)
    loss = loss - a_neg * p**gamma * (1 - y) * F.logsigmoid(-x)
    return _reduce(loss, reduction)


def _bce_formula(x, y, pos_weight, reduction):
    """The pos-weighted BCE, in float64, with log(p) = logsigmoid(x)."""
    x, y = x.double(), y.double()
    return _reduce(-pos_weight * y * F.logsigmoid(x) - (1 - y) * F.logsigmoid(-x), reduction)


def _grad(fn, x, *args, **kwargs):
    x = x.detach().clone().requires_grad_()
    fn(x, *args, **kwargs).sum().backward()
    return x.grad


# --- equality with the references -------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("shape", SHAPES)
def test_focal_equals_torchvision(shape, reduction, dtype):
    x, y = _inputs(shape, dtype)
    for alpha, gamma in [(0.25, 2.0), (0.6, 1.5), (-1.0, 3.0), (0.25, 0.0), (0.4, 1.0)]:
        ours = focal_loss_with_logits(x, y, alpha, gamma, reduction)
        assert ours.dtype == dtype
        expected = sigmoid_focal_loss(x.double(), y.double(), alpha, gamma, reduction)
        _assert_rel(ours, expected, _rtol(dtype))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("shape", SHAPES)
def test_pos_weighted_bce_equals_torch(shape, reduction, dtype):
    x, y = _inputs(shape, dtype)
    for weight in [1.0, 2.5, 0.5]:
        ours = pos_weighted_bce_with_logits(x, y, pos_weight=weight, reduction=reduction)
        assert ours.dtype == dtype
        _assert_rel(ours, _bce_ref(x.double(), y.double(), weight, reduction), _rtol(dtype))
    auto = auto_pos_weight(y, max_pos_weight=20.0)
    ours = pos_weighted_bce_with_logits(x, y, "auto", max_pos_weight=20.0, reduction=reduction)
    _assert_rel(ours, _bce_ref(x.double(), y.double(), auto, reduction), _rtol(dtype))


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_pos_weighted_bce_per_roi_weight_tensor(reduction):
    x, y = _inputs((6, 28, 28))
    weight = auto_pos_weight(y, max_pos_weight=20.0, dim=(1, 2))
    assert weight.shape == (6, 1, 1) and len(set(weight.flatten().tolist())) > 1
    ours = pos_weighted_bce_with_logits(x, y, pos_weight=weight, reduction=reduction)
    # torch broadcasts pos_weight the same way: one ratio per ROI.
    _assert_rel(ours, _bce_ref(x, y, weight.float(), reduction))
    _assert_rel(_grad(pos_weighted_bce_with_logits, x, y, weight, reduction=reduction),
                _grad(_bce_ref, x, y, weight.float(), reduction))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_soft_targets(reduction, dtype):
    x, y = _inputs((5, 9, 9), dtype, soft=True)
    _assert_rel(
        pos_weighted_bce_with_logits(x, y, 3.0, reduction=reduction),
        _bce_formula(x, y, 3.0, reduction),
        _rtol(dtype),
    )
    for alpha, gamma in [(0.25, 2.0), (-1.0, 0.5)]:
        _assert_rel(
            focal_loss_with_logits(x, y, alpha, gamma, reduction),
            _focal_formula(x, y, alpha, gamma, reduction),
            _rtol(dtype),
        )


def test_float32_pixels_keep_their_precision():
    """Each pixel's float32 loss and gradient is close to the exact (float64) value, even tiny
    ones: to 1e-6 for the BCE, to ~gamma * |log p| * 6e-8 (below 2e-6 here) for the focal loss.

    Torch's own float32 BCE is not: it adds ``(1 - y) * x`` to ``softplus(-x)``, losing the
    digits of a confident background pixel's loss.
    """
    x, y = _inputs((90, 28, 28))
    x64, y64 = x.double(), y.double()
    for ours, exact, rtol in [
        (lambda t: pos_weighted_bce_with_logits(t, y, 2.5, reduction="none"),
         lambda t: _bce_ref(t, y64, 2.5, "none"), 1e-6),
        (lambda t: focal_loss_with_logits(t, y, reduction="none"),
         lambda t: sigmoid_focal_loss(t, y64, reduction="none"), 2e-6),
    ]:
        torch.testing.assert_close(ours(x).double(), exact(x64), rtol=rtol, atol=1e-38)
        torch.testing.assert_close(_grad(ours, x).double(), _grad(exact, x64), rtol=rtol,
                                   atol=1e-38)
    torch_f32 = _bce_ref(x, y, 2.5, "none").double()
    exact_bce = _bce_ref(x64, y64, 2.5, "none")
    assert ((torch_f32 - exact_bce).abs() / exact_bce).max() > 1e-3


# --- gradients ----------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize("shape", SHAPES[1:])
def test_gradients_equal_reference_autograd(shape, reduction, dtype):
    x, y = _inputs(shape, dtype)
    x64, y64 = x.double(), y.double()
    for alpha, gamma in [(0.25, 2.0), (0.6, 1.5), (0.4, 0.5)]:
        _assert_rel(
            _grad(focal_loss_with_logits, x, y, alpha, gamma, reduction),
            _grad(sigmoid_focal_loss, x64, y64, alpha, gamma, reduction),
            _rtol(dtype),
        )
    weight = auto_pos_weight(y, 20.0, dim=tuple(range(1, x.dim())))
    for w in [2.5, weight]:
        _assert_rel(
            _grad(pos_weighted_bce_with_logits, x, y, pos_weight=w, reduction=reduction),
            _grad(_bce_ref, x64, y64, w, reduction),
            _rtol(dtype),
        )


def test_gradcheck_float64():
    x, y = _inputs((3, 4, 5), torch.float64)
    y[0, 0, 0], y[1, 1, 1] = 0.3, 0.8  # soft targets too
    x.requires_grad_()
    per_roi = torch.tensor([1.5, 4.0, 20.0], dtype=torch.float64).view(3, 1, 1)
    for reduction in REDUCTIONS:
        for alpha, gamma in [(0.25, 2.0), (-1.0, 0.0), (0.7, 1.3), (0.25, 0.5)]:
            assert torch.autograd.gradcheck(
                lambda t, a=alpha, g=gamma, r=reduction: focal_loss_with_logits(t, y, a, g, r),
                (x,),
            )
        for weight in ["auto", 3.0, per_roi]:
            assert torch.autograd.gradcheck(
                lambda t, w=weight, r=reduction: pos_weighted_bce_with_logits(t, y, w, 20.0, r),
                (x,),
            )


# --- numerics -----------------------------------------------------------------------------------


def _textbook_focal(x, y, alpha=0.25, gamma=2.0):
    p = torch.sigmoid(x)
    return -alpha * (1 - p) ** gamma * y * torch.log(p) - (1 - alpha) * p**gamma * (
        1 - y
    ) * torch.log(1 - p)


def _extreme_cases():
    """(loss of x, reference of float64 x) for both losses, incl. gamma < 1 and gamma 0."""
    y = torch.tensor([0.0, 1.0, 1.0, 0.0, 1.0, 0.5])
    y64 = y.double()
    cases = [
        (lambda t, a=a, g=g: focal_loss_with_logits(t, y, a, g, reduction="none"),
         lambda t, a=a, g=g: _focal_formula(t, y64, a, g, "none"))
        for a, g in [(0.25, 2.0), (0.25, 0.5), (-1.0, 0.0)]
    ]
    cases.append((lambda t: pos_weighted_bce_with_logits(t, y, 20.0, reduction="none"),
                  lambda t: _bce_formula(t, y64, 20.0, "none")))
    return cases


@pytest.mark.parametrize("autocast", [False, True])
@pytest.mark.parametrize("dtype", [torch.float32, *HALF])
@pytest.mark.parametrize("magnitude", [50.0, 100.0])
def test_extreme_logits_finite(magnitude, dtype, autocast):
    x = torch.tensor([magnitude, -magnitude, magnitude, -magnitude, 0.0, -magnitude], dtype=dtype)
    x64 = x.double()
    # The references are the formulas with logsigmoid: torch's float64 BCE itself gives 0 for
    # the loss of x = -50, y = 0 (it adds -50 to softplus(50)), instead of 1.9e-22.
    context = torch.autocast("cpu", dtype=torch.bfloat16 if autocast else dtype, enabled=autocast)
    for fn, ref in _extreme_cases():
        xg = x.clone().requires_grad_()
        with context:
            loss = fn(xg)
        loss.sum().backward()
        assert loss.dtype == torch.float32
        assert torch.isfinite(loss).all() and torch.isfinite(xg.grad).all()
        # Wrong and confident: the loss is ~|x| (times the class weight); right: ~0.
        torch.testing.assert_close(loss.double(), ref(x64), rtol=1e-6, atol=1e-30)
        expected = _grad(ref, x64).to(dtype).double()  # the gradient rounds to the logits' dtype
        torch.testing.assert_close(xg.grad.double(), expected, rtol=1e-2, atol=1e-30)
    # The textbook focal loss, log(sigmoid(x)), breaks down at these logits.
    xg = x.float().requires_grad_()
    textbook = _textbook_focal(xg, torch.tensor([0.0, 1.0, 1.0, 0.0, 1.0, 0.5]))
    textbook.sum().backward()
    assert not torch.isfinite(textbook).all()
    assert not torch.isfinite(xg.grad).all()


@pytest.mark.parametrize("dtype", HALF)
def test_half_logits_under_autocast_compute_in_float32(dtype):
    x, y = _inputs((6, 28, 28))
    x_half = x.to(dtype)
    as_float = x_half.float()  # the values the loss sees
    for fn, ref in [
        (focal_loss_with_logits, lambda t: sigmoid_focal_loss(t, y, reduction="mean")),
        (pos_weighted_bce_with_logits, lambda t: _bce_ref(t, y, auto_pos_weight(y, 20.0), "mean")),
    ]:
        leaf = x_half.clone().requires_grad_()
        with torch.autocast("cpu", dtype=dtype):
            loss = fn(leaf, y)
            loss_f32_in = fn(as_float, y)
        loss.backward()
        assert loss.dtype == torch.float32 and loss_f32_in.dtype == torch.float32
        _assert_rel(loss, ref(as_float))
        _assert_rel(loss_f32_in, ref(as_float))
        assert leaf.grad.dtype == dtype
        expected_grad = _grad(ref, as_float).to(dtype).float()
        torch.testing.assert_close(leaf.grad.float(), expected_grad, rtol=1e-2, atol=1e-8)


def test_no_foreground_weight_is_capped_and_loss_finite():
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
    assert auto_pos_weight(torch.zeros(0), 5.0).item() == 5.0  # no pixels: no foreground


def test_auto_pos_weight_values():
    y = torch.zeros(2, 10, 10)
    y[0, :1] = 1  # 10 positive of 100: ratio 9
    y[1, :5] = 1  # 50 of 100: ratio 1
    torch.testing.assert_close(auto_pos_weight(y, 20.0).item(), 140 / 60)
    per_roi = auto_pos_weight(y.bool(), 20.0, dim=(1, 2))
    assert per_roi.dtype == torch.float64
    torch.testing.assert_close(per_roi.flatten(), torch.tensor([9.0, 1.0], dtype=torch.float64))
    assert auto_pos_weight(y, 4.0, dim=(1, 2)).flatten().tolist() == [4.0, 1.0]
    soft = torch.full((4,), 0.25)  # one pixel's worth of foreground in four: ratio 3
    assert auto_pos_weight(soft, 20.0).item() == pytest.approx(3.0)
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


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_gamma0_alpha_negative_is_bce(reduction, dtype):
    for soft in [False, True]:
        x, y = _inputs((4, 28, 28), dtype, soft=soft)
        ours = focal_loss_with_logits(x, y, alpha=-1.0, gamma=0.0, reduction=reduction)
        bce = F.binary_cross_entropy_with_logits(x.double(), y.double(), reduction=reduction)
        _assert_rel(ours, bce, _rtol(dtype))


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
    for shape in [(3, 1, 1), (1, 2, 1, 1)]:  # the wrong size; enlarging the logits
        with pytest.raises(ValueError, match=r"pos_weight of shape \(.*\) does not broadcast"):
            pos_weighted_bce_with_logits(x, y, pos_weight=torch.ones(shape))
    with pytest.raises(ValueError, match="max_pos_weight must be >= 1"):
        pos_weighted_bce_with_logits(x, y, max_pos_weight=0.5)

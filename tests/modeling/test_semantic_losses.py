"""The semantic heads' pixel losses against torch's cross-entropy and BCE, a float64 formula,
gradcheck, extreme logits, autocast, and batches without foreground or without any label."""

import math

import pytest
import torch
import torch.nn.functional as F
from segcontrast.modeling.semantic_losses import (
    auto_pos_weight,
    class_weighted_cross_entropy,
    frequency_class_weights,
    pos_weight_class_weights,
    softmax_focal_loss,
)

IGNORE = 255


def _batch(seed=0, n=2, c=4, h=9, w=11, scale=3.0, ignore_fraction=0.15, dtype=torch.float32):
    gen = torch.Generator().manual_seed(seed)
    logits = (torch.randn(n, c, h, w, generator=gen) * scale).to(dtype)
    targets = torch.randint(0, c, (n, h, w), generator=gen)
    targets[torch.rand(n, h, w, generator=gen) < ignore_fraction] = IGNORE
    return logits, targets


def _focal_reference(logits, targets, gamma, alpha=None):
    """The formula in float64, softmax written out: -alpha_t (1 - p_t)^gamma log p_t."""
    x = logits.double()
    p = x.exp() / x.exp().sum(dim=1, keepdim=True)
    valid = targets != IGNORE
    t = torch.where(valid, targets, 0)
    pt = p.gather(1, t.unsqueeze(1)).squeeze(1)
    a = torch.ones_like(pt) if alpha is None else torch.tensor(alpha, dtype=torch.float64)[t]
    loss = -a * (1 - pt) ** gamma * pt.log()
    return loss[valid].sum() / valid.sum()


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_weighted_ce_equals_torch_cross_entropy_with_weights(dtype):
    logits, targets = _batch(dtype=dtype)
    weights = torch.tensor([1.0, 4.0, 2.5, 7.0], dtype=dtype)
    ours_x = logits.clone().requires_grad_()
    ref_x = logits.clone().requires_grad_()
    ours = class_weighted_cross_entropy(ours_x, targets, weights)
    # Our mean is over the non-ignored pixels, not over their weights.
    num_valid = (targets != IGNORE).sum()
    ref = F.cross_entropy(ref_x, targets, weight=weights, ignore_index=IGNORE,
                          reduction="sum") / num_valid
    tol = 1e-6 if dtype == torch.float32 else 1e-12
    assert ours.dtype == dtype
    torch.testing.assert_close(ours, ref, rtol=tol, atol=tol)
    ours.backward()
    ref.backward()
    torch.testing.assert_close(ours_x.grad, ref_x.grad, rtol=tol, atol=tol)
    per_pixel = class_weighted_cross_entropy(logits, targets, weights, reduction="none")
    torch.testing.assert_close(
        per_pixel, F.cross_entropy(logits, targets, weight=weights, ignore_index=IGNORE,
                                   reduction="none"), rtol=tol, atol=tol)
    torch.testing.assert_close(
        class_weighted_cross_entropy(logits, targets, weights, reduction="sum"),
        F.cross_entropy(logits, targets, weight=weights, ignore_index=IGNORE, reduction="sum"),
        rtol=tol, atol=tol)


def test_weighted_ce_equals_the_float64_formula():
    logits, targets = _batch(seed=8, scale=6.0)
    weights = [1.0, 4.0, 2.5, 7.0]
    x = logits.double()
    p = x.exp() / x.exp().sum(dim=1, keepdim=True)
    valid = targets != IGNORE
    t = torch.where(valid, targets, 0)
    per_pixel = -torch.tensor(weights, dtype=torch.float64)[t] * p.gather(1, t[:, None])[:, 0].log()
    ref = per_pixel[valid].sum() / valid.sum()
    torch.testing.assert_close(class_weighted_cross_entropy(logits.double(), targets, weights),
                               ref, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(class_weighted_cross_entropy(logits, targets, weights).double(),
                               ref, rtol=1e-5, atol=1e-6)


def test_two_label_weighted_ce_is_the_sources_pos_weighted_bce():
    logits, targets = _batch(seed=1, c=2, ignore_fraction=0.0)
    w = 6.5
    ours = class_weighted_cross_entropy(logits, targets, pos_weight_class_weights(w, 2))
    diff = logits[:, 1] - logits[:, 0]
    ref = F.binary_cross_entropy_with_logits(diff, targets.float(), pos_weight=torch.tensor(w))
    torch.testing.assert_close(ours, ref, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("gamma", [0.0, 0.5, 1.0, 2.0, 3.0])
@pytest.mark.parametrize("alpha", [None, [0.25, 1.0, 0.5, 2.0]])
def test_focal_equals_the_float64_formula(gamma, alpha):
    logits, targets = _batch(seed=2)
    ref = _focal_reference(logits, targets, gamma, alpha)
    ours32 = softmax_focal_loss(logits, targets, gamma=gamma, alpha=alpha)
    ours64 = softmax_focal_loss(logits.double(), targets, gamma=gamma, alpha=alpha)
    assert ours32.dtype == torch.float32 and ours64.dtype == torch.float64
    torch.testing.assert_close(ours64, ref, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(ours32.double(), ref, rtol=1e-5, atol=1e-6)


def test_focal_without_focusing_is_cross_entropy():
    logits, targets = _batch(seed=3)
    torch.testing.assert_close(
        softmax_focal_loss(logits, targets, gamma=0.0),
        F.cross_entropy(logits, targets, ignore_index=IGNORE), rtol=1e-6, atol=1e-6)
    weights = [0.5, 1.0, 3.0, 2.0]
    torch.testing.assert_close(
        softmax_focal_loss(logits, targets, gamma=0.0, alpha=weights),
        class_weighted_cross_entropy(logits, targets, weights), rtol=1e-6, atol=1e-6)


def test_focal_down_weights_easy_pixels():
    # One pixel, true label 0: confident (p_t ~ 0.95) vs hard (p_t = 0.5).
    targets = torch.zeros(1, 1, 1, dtype=torch.long)
    easy = torch.tensor([math.log(0.95), math.log(0.05)]).view(1, 2, 1, 1)
    hard = torch.zeros(1, 2, 1, 1)
    for logits, pt in ((easy, 0.95), (hard, 0.5)):
        loss = softmax_focal_loss(logits, targets, gamma=2.0)
        assert loss.item() == pytest.approx(-((1 - pt) ** 2) * math.log(pt), rel=1e-5)


@pytest.mark.parametrize("gamma", [0.5, 2.0])
def test_gradcheck(gamma):
    logits, targets = _batch(seed=4, n=1, c=3, h=3, w=4, scale=1.0, dtype=torch.float64)
    x = logits.requires_grad_()
    assert torch.autograd.gradcheck(
        lambda t: softmax_focal_loss(t, targets, gamma=gamma, alpha=[0.3, 1.0, 2.0]), (x,))
    weights = torch.tensor([1.0, 3.0, 5.0], dtype=torch.float64)
    assert torch.autograd.gradcheck(
        lambda t: class_weighted_cross_entropy(t, targets, weights), (x,))


@pytest.mark.parametrize("gamma", [0.5, 2.0])
def test_extreme_logits_stay_finite(gamma):
    logits, targets = _batch(seed=5, scale=1.0)
    logits = torch.where(logits > 0, 100.0, -100.0)  # every pixel certain, right or wrong
    for loss_fn in (lambda x: softmax_focal_loss(x, targets, gamma=gamma),
                    lambda x: class_weighted_cross_entropy(x, targets, [1.0, 20.0, 20.0, 20.0])):
        x = logits.clone().requires_grad_()
        loss = loss_fn(x)
        loss.backward()
        assert torch.isfinite(loss) and torch.isfinite(x.grad).all()
        x64 = logits.double().requires_grad_()
        loss64 = loss_fn(x64)
        loss64.backward()
        torch.testing.assert_close(loss.double(), loss64, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(x.grad.double(), x64.grad, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_logits_under_autocast_compute_in_float32(dtype):
    logits, targets = _batch(seed=6, scale=30.0)
    half = logits.to(dtype)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        focal = softmax_focal_loss(half, targets, gamma=2.0)
        weighted = class_weighted_cross_entropy(half, targets, [1.0, 4.0, 4.0, 4.0])
    assert focal.dtype == torch.float32 and weighted.dtype == torch.float32
    # Exactly the float32 loss of the same (rounded) logits.
    torch.testing.assert_close(focal, softmax_focal_loss(half.float(), targets, gamma=2.0))
    torch.testing.assert_close(
        weighted, class_weighted_cross_entropy(half.float(), targets, [1.0, 4.0, 4.0, 4.0]))
    x = half.clone().requires_grad_()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        softmax_focal_loss(x, targets, gamma=2.0).backward()
    assert x.grad.dtype == dtype and torch.isfinite(x.grad.float()).all()


def test_batch_without_foreground():
    logits, _ = _batch(seed=7)
    targets = torch.zeros(2, 9, 11, dtype=torch.long)
    targets[0, :2] = IGNORE
    weight = auto_pos_weight(targets, max_pos_weight=20.0)
    assert weight.item() == 20.0  # infinite ratio, clamped (the mask heads' rule)
    weighted = class_weighted_cross_entropy(logits, targets, pos_weight_class_weights(weight, 4))
    # The foreground weight touches no pixel: plain cross-entropy.
    torch.testing.assert_close(weighted, F.cross_entropy(logits, targets, ignore_index=IGNORE))
    assert torch.isfinite(softmax_focal_loss(logits, targets))


def test_all_ignored_gives_a_zero_still_in_the_graph():
    logits = torch.randn(1, 3, 4, 4, requires_grad=True)
    targets = torch.full((1, 4, 4), IGNORE)
    for loss in (softmax_focal_loss(logits, targets),
                 class_weighted_cross_entropy(logits, targets, [1.0, 2.0, 2.0])):
        assert loss.item() == 0.0 and loss.requires_grad
        (grad,) = torch.autograd.grad(loss, logits)
        assert torch.count_nonzero(grad) == 0


def test_auto_pos_weight_is_background_over_foreground_clamped():
    targets = torch.zeros(2, 10, 10, dtype=torch.long)
    targets[0, :2] = 1          # 20 foreground pixels
    targets[1, 0, :5] = 3       # 5 more
    targets[1, 9] = IGNORE      # 10 ignored pixels count for neither side
    background = 200 - 25 - 10
    assert auto_pos_weight(targets, 20.0).item() == pytest.approx(background / 25)
    assert auto_pos_weight(targets, 4.0).item() == 4.0
    assert auto_pos_weight(torch.ones(1, 3, 3, dtype=torch.long), 20.0).item() == 1.0
    with pytest.raises(ValueError, match="max_pos_weight"):
        auto_pos_weight(targets, 0.5)


def test_frequency_weights_are_one_vs_rest_ratios():
    weights = frequency_class_weights([900, 100, 0, 40], max_pos_weight=20.0)
    total = 1040
    expected = [1.0, (total - 100) / 100, 20.0, 20.0]  # 1000/40 = 25 clamps to 20
    torch.testing.assert_close(weights, torch.tensor(expected))
    # One foreground class: the source's num_background / num_foreground of the counted set.
    assert frequency_class_weights([800, 100]).tolist() == [1.0, 8.0]
    torch.testing.assert_close(pos_weight_class_weights(3.0, 3), torch.tensor([1.0, 3.0, 3.0]))


def test_bad_inputs_are_refused():
    logits, targets = _batch()
    with pytest.raises(ValueError, match="outside"):
        softmax_focal_loss(logits, torch.full_like(targets, 7))
    with pytest.raises(ValueError, match="do not fit"):
        class_weighted_cross_entropy(logits, targets[:, :3], [1.0] * 4)
    with pytest.raises(ValueError, match="per-label weights"):
        class_weighted_cross_entropy(logits, targets, [1.0, 2.0])
    with pytest.raises(ValueError, match="reduction"):
        softmax_focal_loss(logits, targets, reduction="avg")
    with pytest.raises(ValueError, match="gamma"):
        softmax_focal_loss(logits, targets, gamma=-1.0)

"""Loss-normalisation convention and gradient clipping."""

import pytest
import torch
from torch import nn

from rlkit.grads import batch_mean, clip_grad_norm_, clip_grad_value_, global_grad_norm


def _grads_for(x: torch.Tensor, y: torch.Tensor) -> list[torch.Tensor]:
    torch.manual_seed(0)
    model = nn.Linear(3, 1)
    loss = batch_mean((model(x).squeeze(1) - y) ** 2)
    loss.backward()
    return [p.grad.clone() for p in model.parameters()]


def test_batch_mean_makes_gradient_independent_of_batch_size():
    """The convention: losses are batch means, so duplicating a batch leaves the gradient (and
    therefore the right learning rate) unchanged."""
    torch.manual_seed(1)
    x, y = torch.randn(8, 3), torch.randn(8)
    small = _grads_for(x, y)
    big = _grads_for(x.repeat(4, 1), y.repeat(4))
    for a, b in zip(small, big, strict=True):
        torch.testing.assert_close(a, b)


def test_batch_mean_weights_divide_by_batch_size():
    losses = torch.tensor([[1.0, 3.0], [2.0, 2.0]])
    w = torch.tensor([0.5, 1.0])
    assert batch_mean(losses, w).item() == pytest.approx((0.5 + 1.5 + 2 + 2) / 4)
    with pytest.raises(ValueError, match="one weight per example"):
        batch_mean(losses, torch.ones(3))


def _params_with_grads(*grads):
    ps = []
    for g in grads:
        p = torch.zeros(len(g), requires_grad=True)
        p.grad = torch.tensor(g)
        ps.append(p)
    return ps


def test_clip_grad_norm_preserves_direction_and_returns_true_norm():
    ps = _params_with_grads([3.0, 0.0], [0.0, 4.0, 0.0])
    before = torch.cat([p.grad for p in ps])
    norm = clip_grad_norm_(ps, 1.0)
    assert isinstance(norm, torch.Tensor) and norm.ndim == 0
    assert norm.item() == pytest.approx(5.0)
    after = torch.cat([p.grad for p in ps])
    assert after.norm().item() == pytest.approx(1.0, rel=1e-5)
    torch.testing.assert_close(after, before / 5.0, rtol=1e-5, atol=0)
    assert global_grad_norm(ps).item() == pytest.approx(1.0, rel=1e-5)


def test_clip_grad_norm_leaves_small_gradients_alone():
    ps = _params_with_grads([0.3, -0.4])
    assert clip_grad_norm_(ps, 1.0).item() == pytest.approx(0.5)
    assert ps[0].grad.tolist() == pytest.approx([0.3, -0.4])


def test_global_norm_matches_obvious_version():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 7), nn.Tanh(), nn.Linear(7, 2))
    model(torch.randn(4, 5)).pow(2).sum().backward()
    slow = sum(float((p.grad**2).sum()) for p in model.parameters()) ** 0.5
    assert global_grad_norm(model.parameters()).item() == pytest.approx(slow, rel=1e-6)


def test_clip_grad_value():
    ps = _params_with_grads([-3.0, 0.5, 2.0])
    clip_grad_value_(ps, 1.0)
    assert ps[0].grad.tolist() == [-1.0, 0.5, 1.0]
    with pytest.raises(ValueError, match="must be > 0"):
        clip_grad_value_(ps, 0.0)

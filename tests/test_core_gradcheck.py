"""gradcheck catches a wrong backward, passes correct layers, and handles ReLU kinks."""

import pytest
import torch
from torch import nn

from rlkit.gradcheck import gradcheck, grade, relative_error


class WrongSquare(torch.autograd.Function):
    """x**2 with a deliberately wrong backward (gradient x instead of 2x)."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x * x

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return grad * x


class RightSquare(WrongSquare):
    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return 2 * grad * x


def _linear_model(square):
    torch.manual_seed(0)
    lin = nn.Linear(5, 3).double()
    x = torch.randn(4, 5, dtype=torch.float64)
    return lin, lambda: square.apply(lin(x)).sum()


def test_wrong_backward_fails_and_right_one_passes():
    lin, fn = _linear_model(WrongSquare)
    report = gradcheck(fn, lin)
    assert not report.passed
    assert all(w > 0.1 for w in report.worst.values())  # off by a factor of 2 everywhere
    assert all(t.grade == "wrong" for t in report.tensors.values())
    assert "FAILED" in report.summary()
    lin, fn = _linear_model(RightSquare)
    report = gradcheck(fn, lin)
    assert report.passed and max(report.worst.values()) < 1e-7


def test_conv_with_biases_every_tensor_sampled():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(2, 3, 3), nn.Tanh(), nn.Flatten(), nn.Linear(3 * 4 * 4, 4))
    net = net.double()
    x = torch.randn(2, 2, 6, 6, dtype=torch.float64)
    y = torch.tensor([1, 3])
    report = gradcheck(lambda: nn.functional.cross_entropy(net(x), y), net, coords_per_tensor=5)
    assert set(report.worst) == {"0.weight", "0.bias", "3.weight", "3.bias"}
    assert [t.checked for t in report.tensors.values()] == [5, 3, 5, 4]  # min(5, numel)
    assert report.passed and max(report.worst.values()) < 1e-6  # smooth: expect "great"


def test_relu_kinks_are_detected_and_skipped():
    # Pre-activations sit within h of the kink so that perturbing a weight crosses it.
    w = torch.tensor([[1.0, -1.0]], dtype=torch.float64, requires_grad=True)
    b = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    x = torch.tensor([[0.5, 0.5], [1.0, 2.0]], dtype=torch.float64)
    fn = lambda: torch.relu(x @ w.t() + b).sum()  # noqa: E731
    report = gradcheck(fn, {"w": w, "b": b}, h=1e-3)
    assert report.kinks_skipped > 0 and report.tensors["b"].kinks_skipped == 1
    assert report.unchecked == ["w", "b"]  # the first example sits exactly on the kink
    assert "not checked" in report.summary()
    naive = gradcheck(fn, {"w": w, "b": b}, h=1e-3, detect_kinks=False)
    assert naive.tensors["b"].worst > 1e-2  # what the kink does without detection


def test_relu_net_passes_with_kinks_handled():
    torch.manual_seed(3)
    net = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 16), nn.ReLU(),
                        nn.Linear(16, 3)).double()
    x = torch.randn(8, 6, dtype=torch.float64)
    y = torch.randint(0, 3, (8,))
    report = gradcheck(lambda: nn.functional.cross_entropy(net(x), y), net, h=1e-4)
    assert report.passed, report.summary()


def test_dropout_is_reseeded_and_global_rng_restored():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(4, 8), nn.Dropout(0.5), nn.Linear(8, 1)).double()
    x = torch.randn(5, 4, dtype=torch.float64)
    state = torch.get_rng_state()
    report = gradcheck(lambda: net(x).pow(2).mean(), net)
    assert report.passed
    assert torch.equal(torch.get_rng_state(), state)


def test_float32_rejected_with_fix():
    with pytest.raises(ValueError, match=r"needs float64 parameters .* call model.double\(\)"):
        gradcheck(lambda: torch.zeros(()), nn.Linear(2, 2))


def test_relative_error_and_grades():
    assert relative_error(0.0, 0.0) == 0.0
    assert relative_error(1.0, 0.5) == 0.5
    assert relative_error(1e-12, 0.0, abs_floor=1e-8) == pytest.approx(1e-4)
    assert relative_error(3e-8, 3.0005e-8, noise=1e-10) == 0.0  # within rounding noise
    assert relative_error(3e-8, 6e-8, noise=1e-10) == pytest.approx(0.5, rel=1e-2)


def test_tiny_gradients_are_not_failed_by_rounding_noise():
    """CS231n: a loss with very small gradients gives large relative errors from float noise."""
    torch.manual_seed(0)
    w = (torch.randn(50, dtype=torch.float64) * 1e-9).requires_grad_()
    x = torch.randn(50, dtype=torch.float64)
    fn = lambda: 1.0 + (w * x).sum() ** 2  # noqa: E731  gradients ~1e-8 on a loss of ~1
    assert gradcheck(fn, {"w": w}, h=1e-5).passed
    wrong = lambda: 1.0 + WrongSquare.apply((w * x).sum())  # noqa: E731
    assert not gradcheck(wrong, {"w": w}, h=1e-5).passed
    assert [grade(e) for e in (0.5, 1e-3, 1e-5, 1e-9)] == ["wrong", "uncomfortable", "ok", "great"]

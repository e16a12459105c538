"""Initialisation statistics match their formulas within sampling error."""

import math

import pytest
import torch
from torch import nn

from rlkit.init import apply_init, fans, lstm_forget_bias_, orthogonal_

# 256 x 512 weights: the relative standard error of a std estimate is 1/sqrt(2N) ~ 0.2%, so 2%
# is ~10 standard errors (no flakes) yet far tighter than any formula mix-up (>= 20%).
OUT, IN = 256, 512


def _linear(policy, **kw):
    torch.manual_seed(0)
    return apply_init(nn.Linear(IN, OUT), policy, **kw)


@pytest.mark.parametrize(
    "policy,kw,std",
    [
        ("lazy", {}, 0.02),
        ("lazy", {"std": 0.1}, 0.1),
        ("scaled_normal", {"init_scale": 2.0}, 2.0 / math.sqrt(IN)),
        ("xavier_normal", {}, math.sqrt(2.0 / (IN + OUT))),
        ("xavier_uniform", {"gain": 2.0}, 2.0 * math.sqrt(2.0 / (IN + OUT))),
        ("kaiming_normal", {}, math.sqrt(2.0 / IN)),
        ("kaiming_uniform", {"nonlinearity": "tanh"}, 5 / 3 / math.sqrt(IN)),
        ("torch_uniform", {}, 1 / math.sqrt(IN) / math.sqrt(3)),
    ],
)
def test_weight_std_matches_formula(policy, kw, std):
    w = _linear(policy, **kw).weight
    assert w.std().item() == pytest.approx(std, rel=0.02)
    assert abs(w.mean().item()) < 5 * std / math.sqrt(w.numel())


def test_uniform_bounds_and_torch_style_bias():
    lin = _linear("torch_uniform")
    bound = 1 / math.sqrt(IN)
    assert lin.weight.abs().max().item() <= bound
    assert lin.weight.abs().max().item() > 0.99 * bound
    assert lin.bias.abs().max().item() <= bound and lin.bias.std().item() > 0.4 * bound
    conv = apply_init(nn.Conv2d(4, 32, 8, 4), "torch_uniform")
    cbound = 1 / math.sqrt(4 * 8 * 8)  # fan_in of a conv: in_channels * kh * kw
    assert conv.weight.abs().max().item() <= cbound and conv.bias.abs().max().item() <= cbound
    assert conv.weight.abs().max().item() > 0.99 * cbound


def test_biases_zeroed_by_other_policies_and_conv_fan_in():
    torch.manual_seed(0)
    net = apply_init(nn.Sequential(nn.Conv2d(8, 64, 3), nn.Linear(4, 4)), "kaiming_normal")
    assert torch.count_nonzero(net[0].bias) == 0 and torch.count_nonzero(net[1].bias) == 0
    assert fans(net[0].weight) == (8 * 9, 64 * 9)
    assert net[0].weight.std().item() == pytest.approx(math.sqrt(2 / 72), rel=0.03)


def test_orthogonal_with_gain():
    w = torch.empty(64, 128)
    orthogonal_(w, gain=math.sqrt(2))
    torch.testing.assert_close(w @ w.t(), 2 * torch.eye(64), atol=1e-5, rtol=0)
    tall = torch.empty(128, 64)
    orthogonal_(tall)
    torch.testing.assert_close(tall.t() @ tall, torch.eye(64), atol=1e-5, rtol=0)


def test_lstm_forget_bias_and_recurrent_policy():
    torch.manual_seed(0)
    lstm = apply_init(nn.LSTM(6, 5, num_layers=2), "orthogonal", forget_bias=1.0)
    for layer in range(2):
        b = getattr(lstm, f"bias_ih_l{layer}") + getattr(lstm, f"bias_hh_l{layer}")
        assert b[5:10].tolist() == [1.0] * 5
        assert torch.count_nonzero(b[:5]) == 0 and torch.count_nonzero(b[10:]) == 0
        w_hh = getattr(lstm, f"weight_hh_l{layer}")
        for g in range(4):  # each gate's recurrent block is orthogonal on its own
            block = w_hh[5 * g : 5 * (g + 1)]
            torch.testing.assert_close(block @ block.t(), torch.eye(5), atol=1e-5, rtol=0)
    cell = nn.LSTMCell(3, 4)
    lstm_forget_bias_(cell, 2.0)
    assert (cell.bias_ih + cell.bias_hh)[4:8].tolist() == [2.0] * 4


def test_bad_policy_and_option_messages():
    with pytest.raises(ValueError, match="unknown init policy 'he'; use one of lazy"):
        apply_init(nn.Linear(2, 2), "he")
    with pytest.raises(ValueError, match="'lazy' has no option.* gain; allowed: std"):
        apply_init(nn.Linear(2, 2), "lazy", gain=2.0)

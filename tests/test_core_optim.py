"""RMSpropTF against hand-computed updates; optimizer construction from config."""

import math

import pytest
import torch
from torch import nn

from rlkit.optim import OptimizerConfig, RMSpropTF, build_optimizer, param_groups


def test_rmsprop_tf_two_steps_by_hand():
    p = nn.Parameter(torch.tensor([1.0, -2.0], dtype=torch.float64))
    opt = RMSpropTF([p], lr=0.1, alpha=0.9, eps=0.1)
    g1, g2 = [0.5, -1.0], [2.0, 0.25]
    ms, x = [1.0, 1.0], [1.0, -2.0]  # TF1 starts the accumulator at 1
    for g in (g1, g2):
        p.grad = torch.tensor(g, dtype=torch.float64)
        opt.step()
        for i in range(2):
            ms[i] = 0.9 * ms[i] + 0.1 * g[i] ** 2
            x[i] -= 0.1 * g[i] / math.sqrt(ms[i] + 0.1)  # epsilon inside the root
    assert p.tolist() == pytest.approx(x, rel=1e-12)
    # First step numbers written out: ms = 0.9 + 0.025 = 0.925, step = 0.05 / sqrt(1.025).
    assert opt.state[p]["square_avg"].tolist() == pytest.approx(ms, rel=1e-12)


def test_rmsprop_tf_momentum_and_centered_by_hand():
    p = nn.Parameter(torch.tensor([0.3], dtype=torch.float64))
    opt = RMSpropTF([p], lr=0.01, alpha=0.95, eps=0.01, momentum=0.9, centered=True)
    ms, mg, mom, x = 1.0, 0.0, 0.0, 0.3
    for g in (1.0, -3.0, 0.5):
        p.grad = torch.tensor([g], dtype=torch.float64)
        opt.step()
        ms = 0.95 * ms + 0.05 * g * g
        mg = 0.95 * mg + 0.05 * g
        mom = 0.9 * mom + 0.01 * g / math.sqrt(ms - mg * mg + 0.01)
        x -= mom
    assert p.item() == pytest.approx(x, rel=1e-12)


def test_rmsprop_tf_differs_from_torch_form_and_state_round_trips():
    torch.manual_seed(0)
    a = nn.Linear(3, 2)
    b = nn.Linear(3, 2)
    b.load_state_dict(a.state_dict())
    opt_a = RMSpropTF(a.parameters(), lr=0.01, eps=0.1, initial_accumulator=0.0)
    opt_t = torch.optim.RMSprop(b.parameters(), lr=0.01, eps=0.1)
    x = torch.randn(4, 3)
    for m, o in ((a, opt_a), (b, opt_t)):
        m(x).sum().backward()
        o.step()
    assert not torch.allclose(a.weight, b.weight)  # eps inside vs outside the root

    opt_c = RMSpropTF(b.parameters(), lr=0.5)
    opt_c.load_state_dict(opt_a.state_dict())
    pairs = zip(opt_a.param_groups[0]["params"], opt_c.param_groups[0]["params"], strict=True)
    for pa, pc in pairs:
        assert torch.equal(opt_a.state[pa]["square_avg"], opt_c.state[pc]["square_avg"])
    assert opt_c.param_groups[0]["lr"] == 0.01


def test_param_groups_exclude_biases_and_norms_from_decay():
    model = nn.Sequential(nn.Linear(4, 8), nn.LayerNorm(8), nn.Conv1d(1, 2, 3))
    groups = param_groups(model, weight_decay=0.1)
    decayed = {id(p) for p in groups[0]["params"]}
    assert groups[0]["weight_decay"] == 0.1 and groups[1]["weight_decay"] == 0.0
    assert decayed == {id(model[0].weight), id(model[2].weight)}
    assert len(groups[1]["params"]) == 4  # two biases + LayerNorm weight and bias


@pytest.mark.parametrize(
    "name,cls",
    [("sgd", torch.optim.SGD), ("rmsprop", torch.optim.RMSprop), ("rmsprop_tf", RMSpropTF),
     ("adam", torch.optim.Adam), ("adamw", torch.optim.AdamW)],
)
def test_build_optimizer_from_config(name, cls):
    opt = build_optimizer(nn.Linear(2, 2), OptimizerConfig(name=name, lr=0.05, weight_decay=0.01))
    assert isinstance(opt, cls)
    assert all(g["lr"] == 0.05 for g in opt.param_groups)


def test_nesterov_sgd_and_bad_config_messages():
    opt = build_optimizer(nn.Linear(2, 2), OptimizerConfig("sgd", 0.1, momentum=0.9, nesterov=True))
    assert opt.param_groups[0]["nesterov"] is True
    with pytest.raises(ValueError, match="unknown optimizer 'rmsprob'; use one of sgd"):
        OptimizerConfig(name="rmsprob")
    with pytest.raises(ValueError, match="nesterov needs"):
        OptimizerConfig(name="sgd", nesterov=True)
    with pytest.raises(ValueError, match="lr must be > 0"):
        OptimizerConfig(lr=0.0)

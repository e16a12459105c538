"""Dormant units and ReDo recycling (Sokar et al. 2023): which units are dormant, what a reset
changes (incoming weights redrawn, outgoing weights and optimizer state zeroed) and what it
leaves alone (every other weight, and the network's output on the batch that scored it)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from agents.dqn import QNetwork
from agents.networks import ActorCritic
from rlkit.dormant import (
    dormant_scores,
    recyclable_layers,
    recycle_dormant_units,
    unit_activity,
    unit_scores,
)


def _mlp() -> nn.Sequential:
    """3 -> 4 -> 5 -> 2 with positive biases, so that no unit is silent unless a test makes it."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 5), nn.ReLU(), nn.Linear(5, 2))
    with torch.no_grad():
        model[0].bias.fill_(2.0)
        model[2].bias.fill_(2.0)
    return model


def test_scores_are_mean_absolute_activation_over_the_layer_average() -> None:
    # units' mean |h|: 1, 3, 0 over the batch; the layer's average is 4/3
    h = torch.tensor([[1.0, -2.0, 0.0], [1.0, 4.0, 0.0]])
    assert torch.allclose(unit_scores(h), torch.tensor([1.0, 3.0, 0.0]))
    assert torch.allclose(dormant_scores(unit_scores(h)), torch.tensor([0.75, 2.25, 0.0]))
    # a feature map's unit is a channel: averaged over the batch and the positions
    maps = torch.zeros(2, 3, 4, 4)
    maps[:, 1] = -2.0
    assert torch.allclose(unit_scores(maps), torch.tensor([0.0, 2.0, 0.0]))


def test_layers_of_a_q_network_and_an_actor_critic_chain_to_their_heads() -> None:
    q = QNetwork((4, 84, 84), 6, dueling=True)
    layers = recyclable_layers(q)
    assert [layer.name for layer in layers] == ["encoder.convs.1", "encoder.convs.3",
                                                "encoder.convs.5", "encoder.fc.1"]
    assert [layer.units for layer in layers] == [32, 64, 64, 512]
    assert layers[2].consumers == (q.encoder.fc[0],)        # 64 channels x 7x7 flattened
    assert layers[3].consumers == (q.head, q.value)         # both dueling heads read the fc
    ac = ActorCritic((4,), 2)
    assert recyclable_layers(ac)[-1].consumers == (ac.policy, ac.value)


def test_a_model_that_is_not_a_chain_is_rejected_with_one_line() -> None:
    with pytest.raises(ValueError, match="chain"):
        recyclable_layers(nn.Sequential(nn.ReLU(), nn.Linear(3, 2)))
    with pytest.raises(ValueError, match="no hidden layer"):
        recyclable_layers(nn.Sequential(nn.Linear(3, 2)))
    with pytest.raises(ValueError, match="reads 7 inputs"):
        recyclable_layers(nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(7, 2)))


def test_recycling_redraws_incoming_zeroes_outgoing_and_keeps_the_rest() -> None:
    model = _mlp()
    layers = recyclable_layers(model)
    with torch.no_grad():
        model[0].weight[1] = 0.0
        model[0].bias[1] = -1.0           # unit 1 of the first layer: silent for every input
    x = torch.randn(64, 3)
    activity = unit_activity(model, layers, x)
    assert activity[0][1] == 0 and (activity[0][[0, 2, 3]] > 0).all()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    out_before = model(x).detach()

    assert recycle_dormant_units(layers, activity, 0.0, seed=7) == {"1": 1, "3": 0}
    after = model.state_dict()
    assert not torch.equal(after["0.weight"][1], before["0.weight"][1])   # redrawn ...
    bound = 1 / 3 ** 0.5                  # ... from nn.Linear's own initialiser, U(+-1/sqrt(3))
    assert after["0.weight"][1].abs().max() <= bound and after["0.bias"][1].abs() <= bound
    assert (after["2.weight"][:, 1] == 0).all()                             # outgoing zeroed
    keep = [0, 2, 3]
    assert torch.equal(after["0.weight"][keep], before["0.weight"][keep])
    assert torch.equal(after["2.weight"][:, keep], before["2.weight"][:, keep])
    assert torch.equal(after["4.weight"], before["4.weight"])
    # the unit was silent and now has no outgoing weight: the output is unchanged
    assert torch.allclose(model(x), out_before)
    # the same seed draws the same weights, so data-parallel ranks stay identical
    twin = _mlp()
    twin.load_state_dict(before)
    recycle_dormant_units(recyclable_layers(twin), activity, 0.0, seed=7)
    assert all(torch.equal(a, b) for a, b in zip(twin.state_dict().values(),
                                                 model.state_dict().values(), strict=True))


def test_recycling_zeroes_the_optimizer_state_of_the_touched_weights_only() -> None:
    model = _mlp()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    model(torch.randn(8, 3)).pow(2).sum().backward()
    opt.step()
    state_before = {p: {k: v.clone() for k, v in opt.state[p].items()} for p in model.parameters()}
    layers = recyclable_layers(model)
    activity = [torch.tensor([1.0, 1.0, 0.0, 1.0]), torch.ones(5)]   # unit 2 dormant
    recycle_dormant_units(layers, activity, 0.1, opt)
    w0, w2 = opt.state[model[0].weight], opt.state[model[2].weight]
    keep = [0, 1, 3]
    for moment in ("exp_avg", "exp_avg_sq"):
        assert (w0[moment][2] == 0).all() and (w2[moment][:, 2] == 0).all()
        assert opt.state[model[0].bias][moment][2] == 0
        assert (state_before[model[0].weight][moment][2] != 0).any()
        assert torch.equal(w0[moment][keep], state_before[model[0].weight][moment][keep])
        assert torch.equal(w2[moment][:, keep], state_before[model[2].weight][moment][:, keep])
        head = model[4].weight
        assert torch.equal(opt.state[head][moment], state_before[head][moment])
    assert w0["step"] == 1                # the step count is shared by the whole tensor


def test_a_conv_channel_owns_its_flattened_columns_in_the_next_linear() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 3, 3), nn.ReLU(), nn.Flatten(), nn.Linear(3 * 2 * 2, 4),
                          nn.ReLU(), nn.Linear(4, 2))
    layers = recyclable_layers(model)
    recycle_dormant_units(layers, [torch.tensor([1.0, 0.0, 1.0]), torch.ones(4)], 0.0)
    w = model[3].weight
    assert (w[:, 4:8] == 0).all() and (w[:, :4] != 0).all() and (w[:, 8:] != 0).all()


def test_reduce_makes_every_rank_decide_on_the_averaged_scores() -> None:
    model = _mlp()
    layers = recyclable_layers(model)
    mine = [torch.tensor([1.0, 1.0, 0.0, 1.0]), torch.ones(5)]       # unit 2 silent here ...
    averaged = [torch.ones(4), torch.ones(5)]                        # ... but not over ranks
    assert recycle_dormant_units(layers, mine, 0.0, reduce=lambda _: averaged) == \
        {"1": 0, "3": 0}

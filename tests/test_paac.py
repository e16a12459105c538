"""PAAC's pure pieces: n-step returns over rollouts with episode ends, and the loss."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from agents.paac import ActorCritic, nstep_returns, paac_loss
from rlkit.gradcheck import gradcheck


def _t(rows: list[list[float]], dtype: torch.dtype = torch.float64) -> torch.Tensor:
    return torch.tensor(rows, dtype=dtype)


def _returns_oracle(rewards, terminated, truncated, next_values, gamma):
    """Slow, obvious version: for every (t, env) walk forward until the episode or rollout ends."""
    t_max, n_envs = rewards.shape
    out = np.zeros((t_max, n_envs))
    for env in range(n_envs):
        for t in range(t_max):
            total, discount = 0.0, 1.0
            for k in range(t, t_max):
                total += discount * rewards[k, env]
                if terminated[k, env]:
                    break
                if truncated[k, env] or k == t_max - 1:
                    total += discount * gamma * next_values[k, env]
                    break
                discount *= gamma
            out[t, env] = total
    return out


def test_nstep_returns_hand_computed_with_termination_truncation_and_autoreset() -> None:
    # Columns are envs. gamma = 0.5 keeps the arithmetic exact.
    # env 0: no episode end; bootstraps from V(s_4) = 8.
    # env 1: terminates at t=1 (no bootstrap; next_values[1]=99 is the final obs and must be
    #        ignored), t=2 is the autoreset step (reward 0, masked later), t=3 a real step.
    # env 2: truncated at t=0: bootstraps from V(real final obs) = 4; t=1 is the autoreset step.
    rewards = _t([[1, 1, 1], [2, 1, 0], [3, 0, 2], [4, 1, -1]])
    terminated = _t([[0, 0, 0], [0, 1, 0], [0, 0, 0], [0, 0, 0]]).bool()
    truncated = _t([[0, 0, 1], [0, 0, 0], [0, 0, 0], [0, 0, 0]]).bool()
    next_values = _t([[0, 10, 4], [0, 99, 50], [0, 20, 60], [8, 6, 10]])
    got = nstep_returns(rewards, terminated, truncated, next_values, gamma=0.5)
    expected = _t([
        [3.75, 1.5, 1 + 0.5 * 4],        # env 2: truncation bootstraps from 4, not from R_1
        [5.5, 1.0, 2.0],                 # env 1: terminal step's return is its reward
        [7.0, 2.0, 4.0],                 # env 1: autoreset step (masked in the loss)
        [8.0, 4.0, 4.0],                 # last step: r + gamma * bootstrap
    ])
    torch.testing.assert_close(got, expected, rtol=0, atol=0)


def test_terminated_wins_over_truncated_on_the_same_step() -> None:
    ones = torch.ones(1, 1, dtype=torch.float64)
    got = nstep_returns(ones, ones.bool(), ones.bool(), 100 * ones, gamma=0.9)
    assert got.item() == 1.0


@pytest.mark.parametrize("seed", range(5))
def test_nstep_returns_match_slow_oracle(seed: int) -> None:
    rng = np.random.default_rng(seed)
    shape = (7, 6)
    rewards = rng.normal(size=shape)
    terminated = rng.random(shape) < 0.15
    truncated = rng.random(shape) < 0.15
    next_values = rng.normal(size=shape)
    got = nstep_returns(torch.from_numpy(rewards), torch.from_numpy(terminated),
                        torch.from_numpy(truncated), torch.from_numpy(next_values), gamma=0.97)
    expected = _returns_oracle(rewards, terminated, truncated, next_values, 0.97)
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-12, atol=1e-12)


def test_nstep_returns_rejects_mismatched_shapes() -> None:
    a = torch.zeros(5, 4)
    with pytest.raises(ValueError, match=r"one shape \(t_max, n_e\)"):
        nstep_returns(a, a.bool(), a.bool(), torch.zeros(4), gamma=0.99)


def test_paac_loss_hand_computed() -> None:
    # One step, two envs, two actions, uniform policy: log pi = -ln 2, H = ln 2.
    logits = torch.zeros(1, 2, 2, dtype=torch.float64)
    values = _t([[0.5, 1.0]])
    returns = _t([[1.5, 0.0]])            # advantages +1 and -1
    actions = torch.tensor([[0, 1]])
    out = paac_loss(logits, values, actions, returns, entropy_coef=0.02, value_coef=0.25)
    ln2 = math.log(2)
    policy = ((ln2 * 1 - 0.02 * ln2) + (ln2 * -1 - 0.02 * ln2)) / 2
    value = (1.0**2 + 1.0**2) / 2
    assert out.policy.item() == pytest.approx(policy, abs=1e-15)
    assert out.value.item() == pytest.approx(value, abs=1e-15)
    assert out.entropy.item() == pytest.approx(ln2, abs=1e-15)
    assert out.total.item() == pytest.approx(policy + 0.25 * value, abs=1e-15)


def _loss_oracle(logits, values, actions, returns, mask, entropy_coef, value_coef):
    """The original's formula, t_max * (mean(-log pi * A - beta * H) + c * mean((R - V)^2)),
    computed sample by sample and restricted to unmasked samples (each weighted 1 / n_e)."""
    t_max, n_envs, _ = logits.shape
    total = 0.0
    for t in range(t_max):
        for e in range(n_envs):
            if not mask[t, e]:
                continue
            z = logits[t, e] - logits[t, e].max()
            log_p = z - np.log(np.exp(z).sum())
            entropy = -(np.exp(log_p) * log_p).sum()
            adv = returns[t, e] - values[t, e]
            sample = -log_p[actions[t, e]] * adv - entropy_coef * entropy
            sample += value_coef * (returns[t, e] - values[t, e]) ** 2
            total += t_max * sample / (t_max * n_envs)
    return total


def _random_rollout(seed: int, t_max: int = 5, n_envs: int = 4, n_actions: int = 3):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(t_max, n_envs, n_actions, generator=g, dtype=torch.float64)
    values = torch.randn(t_max, n_envs, generator=g, dtype=torch.float64)
    returns = torch.randn(t_max, n_envs, generator=g, dtype=torch.float64)
    actions = torch.randint(n_actions, (t_max, n_envs), generator=g)
    mask = torch.rand(t_max, n_envs, generator=g) > 0.2
    return logits, values, actions, returns, mask


@pytest.mark.parametrize("seed", range(3))
def test_paac_loss_matches_the_original_formula(seed: int) -> None:
    logits, values, actions, returns, mask = _random_rollout(seed)
    got = paac_loss(logits, values, actions, returns, entropy_coef=0.02, value_coef=0.25,
                    mask=mask)
    expected = _loss_oracle(logits.numpy(), values.numpy(), actions.numpy(), returns.numpy(),
                            mask.numpy(), 0.02, 0.25)
    assert got.total.item() == pytest.approx(expected, rel=1e-12)
    unmasked = paac_loss(logits, values, actions, returns, entropy_coef=0.02, value_coef=0.25)
    full = torch.ones_like(mask)
    assert unmasked.total.item() == pytest.approx(
        _loss_oracle(logits.numpy(), values.numpy(), actions.numpy(), returns.numpy(),
                     full.numpy(), 0.02, 0.25), rel=1e-12)


def test_masked_samples_contribute_nothing() -> None:
    logits, values, actions, returns, mask = _random_rollout(7)
    mask[1, 2] = False
    changed_logits, changed_returns = logits.clone(), returns.clone()
    changed_logits[1, 2] += 100.0
    changed_returns[1, 2] -= 50.0
    a = paac_loss(logits, values, actions, returns, entropy_coef=0.01, value_coef=0.5, mask=mask)
    b = paac_loss(changed_logits, values, actions, changed_returns, entropy_coef=0.01,
                  value_coef=0.5, mask=mask)
    assert a.total.item() == pytest.approx(b.total.item(), rel=1e-12)


def test_advantage_is_detached_value_gradient_comes_from_the_critic_term_only() -> None:
    logits, values, actions, returns, _ = _random_rollout(3)
    values.requires_grad_(True)
    logits.requires_grad_(True)
    paac_loss(logits, values, actions, returns, entropy_coef=0.0, value_coef=0.25).total.backward()
    n_envs = values.shape[1]
    # d/dV of 0.25 * (R - V)^2 / n_e; the policy term would add -(-log pi) / n_e if A were live.
    torch.testing.assert_close(values.grad, -2 * 0.25 * (returns - values.detach()) / n_envs)
    # d/dlogits of -log pi(a) * A / n_e is (pi - onehot(a)) * A / n_e.
    probs = torch.softmax(logits.detach(), -1)
    onehot = torch.nn.functional.one_hot(actions, logits.shape[-1]).double()
    advantage = (returns - values.detach()).unsqueeze(-1)
    torch.testing.assert_close(logits.grad, (probs - onehot) * advantage / n_envs)


def test_paac_loss_rejects_flat_inputs() -> None:
    with pytest.raises(ValueError, match=r"logits \(t_max, n_e, A\)"):
        paac_loss(torch.zeros(10, 3), torch.zeros(10), torch.zeros(10), torch.zeros(10),
                  entropy_coef=0.01, value_coef=0.5)


def test_gradcheck_actor_critic_through_paac_loss() -> None:
    """Autograd through the shared-encoder network and the loss matches centred differences.

    The advantage is passed in as a constant (its value at the current parameters), which is
    what detaching it means: the objective whose gradient the update follows.
    """
    torch.manual_seed(0)
    net = ActorCritic((4,), num_actions=3, encoder="mlp", mlp_hidden=(8, 8)).double()
    obs = torch.randn(3, 4, 4, dtype=torch.float64)          # (t_max, n_e, obs_dim)
    actions = torch.randint(3, (3, 4))
    returns = torch.randn(3, 4, dtype=torch.float64)
    mask = torch.tensor([[1, 1, 0, 1], [1, 0, 1, 1], [1, 1, 1, 1]], dtype=torch.bool)

    def forward() -> tuple[torch.Tensor, torch.Tensor]:
        logits, values = net(obs.reshape(12, 4))
        return logits.reshape(3, 4, 3), values.reshape(3, 4)

    with torch.no_grad():
        advantages = returns - forward()[1]

    def loss() -> torch.Tensor:
        logits, values = forward()
        return paac_loss(logits, values, actions, returns, entropy_coef=0.02, value_coef=0.25,
                         mask=mask, advantages=advantages).total

    report = gradcheck(loss, net, coords_per_tensor=20)
    assert report.passed, report.summary()
    # With the default (internally detached) advantage the gradient is the same.
    net.zero_grad()
    loss().backward()
    frozen = [p.grad.clone() for p in net.parameters()]
    net.zero_grad()
    logits, values = forward()
    paac_loss(logits, values, actions, returns, entropy_coef=0.02, value_coef=0.25,
              mask=mask).total.backward()
    for a, b in zip(frozen, (p.grad for p in net.parameters()), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_actor_critic_shapes_and_torch_style_init() -> None:
    net = ActorCritic((4, 84, 84), num_actions=6)   # NIPS encoder by default
    convs = [m for m in net.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [c.out_channels for c in convs] == [16, 32]
    for layer in [*convs, *(m for m in net.modules() if isinstance(m, torch.nn.Linear))]:
        bound = 1 / math.sqrt(layer.weight[0].numel())       # fan_in
        for p in (layer.weight, layer.bias):
            assert p.abs().max().item() <= bound
            if p.numel() >= 100:                                 # uniform fills the range
                assert p.abs().max().item() > 0.9 * bound
    logits, values = net(torch.zeros(2, 4, 84, 84, dtype=torch.uint8))
    assert logits.shape == (2, 6) and values.shape == (2,)

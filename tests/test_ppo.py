"""PPO: the pure pieces (GAE with episode ends, the clipped loss) against hand-computed values,
slow reference loops and the gradient checker; config validation; the learner end to end
(minibatches, exact resume, export and evaluation, ``rlkit check``). Solving CartPole:
tests/test_cartpole_learning.py."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from agents.check import run_checks
from agents.cli import main
from agents.config import ConfigError, change_budget, load_config
from agents.networks import ActorCritic
from agents.paac import nstep_returns
from agents.ppo import PPOLearner, build_policy, gae, ppo_loss
from rlkit.checkpoint import load_checkpoint
from rlkit.gradcheck import gradcheck
from rlkit.logger import Logger

ROOT = Path(__file__).resolve().parents[1]
CARTPOLE = str(ROOT / "configs" / "cartpole_ppo.yaml")
QUIET = ["--set", "train.progress=false"]


def _t(rows: list, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    return torch.tensor(rows, dtype=dtype)


# ---------------------------------------------------------------------------------- GAE


def _gae_reference(rewards, values, next_values, terminated, truncated, gamma, lam):
    """Slow, obvious version: for every (t, env) sum the discounted TD errors forward until the
    episode or the rollout ends (Schulman et al. 2016, eq. 16)."""
    steps, n_envs = rewards.shape
    out = np.zeros((steps, n_envs))
    for env in range(n_envs):
        for t in range(steps):
            total, weight = 0.0, 1.0
            for k in range(t, steps):
                bootstrap = 0.0 if terminated[k, env] else next_values[k, env]
                delta = rewards[k, env] + gamma * bootstrap - values[k, env]
                total += weight * delta
                if terminated[k, env] or truncated[k, env]:
                    break
                weight *= gamma * lam
            out[t, env] = total
    return out


def test_gae_hand_computed_with_termination_and_truncation() -> None:
    # gamma = lam = 0.5 keeps the arithmetic exact. Columns are envs.
    # env 0: no episode end; bootstraps from next_values[-1] = 8.
    # env 1: terminates at t=0 (next_values[0] = 99, the final obs, is ignored); t=1 is the
    #        autoreset step (its estimate is meaningless; the learner drops it).
    # env 2: truncated at t=0: bootstraps from V(real final obs) = 4, no chaining into t=1.
    rewards = _t([[1, 1, 1], [2, 0, 0]])
    values = _t([[0, 2, 1], [4, 3, 5]])
    next_values = _t([[4, 99, 4], [8, 6, 2]])
    terminated = _t([[0, 1, 0], [0, 0, 0]]).bool()
    truncated = _t([[0, 0, 1], [0, 0, 0]]).bool()
    got = gae(rewards, values, next_values, terminated, truncated, gamma=0.5, lam=0.5)
    # Last row: delta = r + 0.5 * next - V.  env 0: 2 + 4 - 4 = 2; env 1: 0 + 3 - 3 = 0;
    # env 2: 0 + 1 - 5 = -4.  First row: env 0: delta 1 + 2 - 0 = 3, A = 3 + 0.25 * 2 = 3.5;
    # env 1: 1 - 2 = -1 (terminal); env 2: 1 + 2 - 1 = 2 (truncated: no A_{t+1}).
    expected = _t([[3.5, -1.0, 2.0], [2.0, 0.0, -4.0]])
    torch.testing.assert_close(got, expected, rtol=0, atol=0)


@pytest.mark.parametrize("seed", range(5))
def test_gae_matches_the_reference_loop(seed: int) -> None:
    rng = np.random.default_rng(seed)
    shape = (9, 5)
    rewards, values, next_values = (rng.normal(size=shape) for _ in range(3))
    terminated = rng.random(shape) < 0.15
    truncated = rng.random(shape) < 0.15
    got = gae(
        *(torch.from_numpy(a) for a in (rewards, values, next_values, terminated, truncated)),
        gamma=0.97,
        lam=0.9,
    )
    expected = _gae_reference(rewards, values, next_values, terminated, truncated, 0.97, 0.9)
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-12, atol=1e-12)


def test_gae_lambda_1_is_the_nstep_return_and_lambda_0_the_td_error() -> None:
    # As in a rollout, next_values[t] is values[t + 1] (the last row: the bootstrap value), so
    # the TD errors telescope.
    rng = np.random.default_rng(7)
    shape = (6, 4)
    rewards, values = (torch.from_numpy(rng.normal(size=shape)) for _ in range(2))
    next_values = torch.cat([values[1:], torch.from_numpy(rng.normal(size=(1, 4)))])
    terminated = torch.from_numpy(rng.random(shape) < 0.2)
    truncated = torch.from_numpy(rng.random(shape) < 0.2)
    ones = gae(rewards, values, next_values, terminated, truncated, gamma=0.9, lam=1.0)
    returns = nstep_returns(rewards, terminated, truncated, next_values, gamma=0.9)
    torch.testing.assert_close(ones + values, returns, rtol=1e-12, atol=1e-12)
    zeros = gae(rewards, values, next_values, terminated, truncated, gamma=0.9, lam=0.0)
    td = rewards + 0.9 * torch.where(terminated, 0.0, next_values) - values
    torch.testing.assert_close(zeros, td, rtol=0, atol=0)


def test_gae_rejects_mismatched_shapes() -> None:
    a = torch.zeros(5, 4)
    with pytest.raises(ValueError, match=r"one shape \(T, n_e\)"):
        gae(a, a, torch.zeros(5), a.bool(), a.bool(), gamma=0.99, lam=0.95)


# ---------------------------------------------------------------------------------- the loss


def test_ppo_loss_hand_computed() -> None:
    # Two samples, two actions, uniform policy now (pi = 0.5, H = ln 2). Sample 0 had
    # pi_old = 0.25, so its ratio is 2, past 1 + 0.2: with A = +1 the surrogate is clipped to
    # 1.2. Sample 1: ratio 1, A = -1. Values 0.5 and 1 against returns 1.5 and 0; with value
    # clipping 0.2 around the old values 0 and 1, sample 0's V may only reach 0.2, whose error
    # (1.3^2 = 1.69) is larger than the unclipped one (1) and counts.
    logits = torch.zeros(2, 2, dtype=torch.float64)
    actions = torch.tensor([0, 1])
    old_log_probs = _t([math.log(0.25), math.log(0.5)])
    values, old_values, returns = _t([0.5, 1.0]), _t([0.0, 1.0]), _t([1.5, 0.0])
    advantages = _t([1.0, -1.0])
    kw = dict(clip_range=0.2, entropy_coef=0.01, value_coef=0.5, normalize_advantages=False)
    out = ppo_loss(
        logits,
        values,
        actions,
        old_log_probs,
        old_values,
        advantages,
        returns,
        value_clip_range=0.2,
        **kw,
    )
    ln2 = math.log(2)
    policy = -(min(2 * 1.0, 1.2 * 1.0) + min(1 * -1.0, 1 * -1.0)) / 2  # -0.1
    value = 0.5 * (max(1.0, 1.69) + max(1.0, 1.0)) / 2  # 0.6725
    assert out.policy.item() == pytest.approx(policy, abs=1e-15)
    assert out.value.item() == pytest.approx(value, abs=1e-15)
    assert out.entropy.item() == pytest.approx(ln2, abs=1e-15)
    assert out.total.item() == pytest.approx(policy + 0.5 * value - 0.01 * ln2, abs=1e-15)
    assert out.approx_kl.item() == pytest.approx(((2 - 1) - ln2 + 0.0) / 2, abs=1e-15)
    assert out.clip_fraction.item() == 0.5
    # Without value clipping: 0.5 * mean of the plain squared errors (1 and 1).
    plain = ppo_loss(logits, values, actions, old_log_probs, old_values, advantages, returns, **kw)
    assert plain.value.item() == pytest.approx(0.5, abs=1e-15)
    # Normalised advantages: [1, -1] already has mean 0 and population std 1.
    normed = ppo_loss(
        logits,
        values,
        actions,
        old_log_probs,
        old_values,
        _t([3.0, -1.0]),
        returns,
        **{**kw, "normalize_advantages": True},
    )
    assert normed.policy.item() == pytest.approx(policy, abs=1e-7)


@pytest.mark.parametrize(
    ("advantage", "ratio", "live"),
    [
        (1.0, 1.5, False),
        (1.0, 0.5, True),
        (-1.0, 0.5, False),
        (-1.0, 1.5, True),
        (1.0, 1.1, True),
        (-1.0, 0.9, True),
    ],
)
def test_clipped_side_gets_no_gradient(advantage: float, ratio: float, live: bool) -> None:
    """The pessimistic bound: a ratio past 1 + eps with A > 0 (or below 1 - eps with A < 0) has
    already gained what the clip allows, so the surrogate no longer pulls it; on the other side
    the unclipped term is the minimum and the gradient is the plain policy gradient."""
    logits = torch.zeros(1, 2, dtype=torch.float64, requires_grad=True)
    old_log_probs = _t([math.log(0.5 / ratio)])  # pi(a) = 0.5 now, so the ratio is `ratio`
    zeros = torch.zeros(1, dtype=torch.float64)
    out = ppo_loss(
        logits,
        zeros,
        torch.tensor([0]),
        old_log_probs,
        zeros,
        _t([advantage]),
        zeros,
        clip_range=0.2,
        entropy_coef=0.0,
        value_coef=0.5,
        normalize_advantages=False,
    )
    (grad,) = torch.autograd.grad(out.total, logits)
    # d(-ratio * A)/dlogits = -A * ratio * (onehot(a) - pi)
    expected = -advantage * ratio * (_t([[1.0, 0.0]]) - 0.5) if live else torch.zeros(1, 2)
    torch.testing.assert_close(grad, expected.to(grad.dtype), rtol=1e-12, atol=1e-15)


def test_value_gradient_comes_from_the_value_term_only() -> None:
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(6, 3, generator=g, dtype=torch.float64)
    values = torch.randn(6, generator=g, dtype=torch.float64, requires_grad=True)
    returns, advantages = torch.randn(6, 2, generator=g, dtype=torch.float64).unbind(-1)
    out = ppo_loss(
        logits,
        values,
        torch.randint(3, (6,), generator=g),
        torch.full((6,), -1.0, dtype=torch.float64),
        values.detach(),
        advantages,
        returns,
        clip_range=0.1,
        entropy_coef=0.01,
        value_coef=0.5,
    )
    (grad,) = torch.autograd.grad(out.total, values)
    torch.testing.assert_close(grad, 0.5 * (values.detach() - returns) / 6)


def test_ppo_loss_rejects_rollout_shaped_inputs() -> None:
    with pytest.raises(ValueError, match=r"logits \(B, A\) and values \(B,\)"):
        z = torch.zeros(5, 4)
        ppo_loss(
            torch.zeros(5, 4, 2), z, z, z, z, z, z, clip_range=0.1, entropy_coef=0.0, value_coef=0.5
        )


@pytest.mark.parametrize("value_clip", [None, 0.05])
def test_gradcheck_actor_critic_through_ppo_loss(value_clip: float | None) -> None:
    """Autograd through the shared network and the loss matches float64 centred differences, with
    ratios away from 1 (old log-probabilities shifted) and V moved from its old value."""
    torch.manual_seed(0)
    net = ActorCritic(
        (4,),
        num_actions=3,
        encoder="mlp",
        mlp_hidden=(8, 8),
        image_default="nature",
        init="orthogonal",
    ).double()
    g = torch.Generator().manual_seed(3)
    obs = torch.randn(12, 4, generator=g, dtype=torch.float64)
    actions = torch.randint(3, (12,), generator=g)
    advantages = torch.randn(12, generator=g, dtype=torch.float64)
    returns = torch.randn(12, generator=g, dtype=torch.float64)
    with torch.no_grad():
        logits, values = net(obs)
        chosen = torch.log_softmax(logits, -1).gather(-1, actions[:, None])[:, 0]
        shift = torch.tensor([0.5, -0.5, 0.02, -0.02] * 3, dtype=torch.float64)
        old_log_probs = chosen + shift  # ratios e^-0.5, e^0.5 (clipped or not), ~1
        old_values = values + torch.tensor([0.2, -0.2, 0.01, 0.0] * 3, dtype=torch.float64)

    def loss() -> torch.Tensor:
        logits, values = net(obs)
        return ppo_loss(
            logits,
            values,
            actions,
            old_log_probs,
            old_values,
            advantages,
            returns,
            clip_range=0.1,
            entropy_coef=0.01,
            value_coef=0.5,
            value_clip_range=value_clip,
        ).total

    report = gradcheck(loss, net, coords_per_tensor=20)
    assert report.passed and not report.unchecked, report.summary()


def test_orthogonal_actor_critic_init() -> None:
    net = ActorCritic((4, 84, 84), num_actions=6, image_default="nature", init="orthogonal")
    convs = [m for m in net.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [c.out_channels for c in convs] == [32, 64, 64]  # the Nature CNN
    w = net.policy.weight.detach().double()  # (6, 512): orthogonal rows
    torch.testing.assert_close(w @ w.T, 0.01**2 * torch.eye(6, dtype=torch.float64))
    v = net.value.weight.detach().double()
    assert v.norm().item() == pytest.approx(1.0, rel=1e-6)
    hidden = net.encoder.fc[0].weight.detach().double()  # (512, 3136): gain sqrt(2)
    torch.testing.assert_close(hidden @ hidden.T, 2 * torch.eye(512, dtype=torch.float64))
    for layer in [*convs, net.policy, net.value]:
        assert layer.bias.abs().max().item() == 0.0


# ---------------------------------------------------------------------------------- config


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("agent.n_epochs=0", "agent.n_epochs must be >= 1, got 0"),
        ("agent.num_minibatches=0", "agent.num_minibatches must be >= 1, got 0"),
        ("agent.gae_lambda=1.5", r"agent.gae_lambda must be in \[0, 1\], got 1.5"),
        ("agent.clip_range=0", "agent.clip_range must be > 0"),
        (
            "agent.clip_range_final=0.5",
            r"agent.clip_range_final must be in \[0, agent.clip_range\]",
        ),
        ("agent.value_clip_range=-1", "agent.value_clip_range must be > 0 or null, got -1"),
        ("agent.entropy_coef=-0.1", "agent.entropy_coef must be >= 0"),
        ("agent.n_step=5", "unknown config key 'agent.n_step'; did you mean agent.n_steps"),
    ],
)
def test_config_errors_are_one_line(override: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as info:
        load_config(CARTPOLE, [override])
    assert "\n" not in str(info.value)


def test_clip_annealing_follows_the_lr_horizon_and_a_new_budget_pins_it() -> None:
    cfg = load_config(
        CARTPOLE,
        [
            "agent.clip_range_final=0.0",
            "optim.lr_schedule=constant",
            "optim.lr_decay_steps=null",
            "train.steps=1000",
        ],
    )
    assert change_budget(cfg, 5000) == ["optim.lr_decay_steps"]
    assert cfg.optim.lr_decay_steps == 1000
    learner = PPOLearner(cfg, torch.device("cpu"), Logger(None))
    assert learner.clip_range == pytest.approx(0.2)
    learner.env_steps = 250
    assert learner.clip_range == pytest.approx(0.15)
    learner.env_steps = 4000
    assert learner.clip_range == 0.0
    learner.close()


# ---------------------------------------------------------------------------------- learner


def _learner(**overrides: object) -> PPOLearner:
    sets = {
        "env.num_envs": 4,
        "agent.n_steps": 16,
        "agent.n_epochs": 3,
        "agent.num_minibatches": 2,
        **overrides,
    }
    cfg = load_config(CARTPOLE, [f"{k}={v}" for k, v in sets.items()])
    return PPOLearner(cfg, torch.device("cpu"), Logger(None))


def test_minibatches_cover_the_real_transitions_once_per_epoch() -> None:
    """Each epoch is a permutation of the rollout's real transitions (autoreset steps left out),
    in num_minibatches near-equal parts; the old log-probabilities are the acting policy's."""
    learner = _learner()
    for _ in range(6):  # a random policy ends CartPole episodes every ~20 steps
        rollout = learner.collect()
        batches = list(learner.minibatches(rollout))
        assert len(batches) == 3 * 2
        real = int(rollout.mask.sum())
        assert real < rollout.mask.numel() or _ == 0
        for epoch in range(3):
            part = batches[2 * epoch : 2 * epoch + 2]
            assert abs(len(part[0].actions) - len(part[1].actions)) <= 1
            returns = torch.cat([b.returns for b in part]).sort().values
            want = rollout.batch.returns[rollout.mask].sort().values
            torch.testing.assert_close(returns, want, rtol=0, atol=0)
        with torch.no_grad():
            logits, values = learner.net(batches[0].obs)
        chosen = torch.log_softmax(logits, -1).gather(-1, batches[0].actions[:, None])[:, 0]
        torch.testing.assert_close(chosen, batches[0].log_probs)
        torch.testing.assert_close(values, batches[0].values)
        for batch in batches:
            learner.learn_minibatch(batch)
    assert learner.env_steps == 6 * 16 * 4
    assert learner.update.updates == 6 * 3 * 2
    learner.close()


def test_scalars_only_at_log_boundaries() -> None:
    learner = _learner(**{"train.log_every": 128})  # 2 iterations of 64 steps
    first, second = learner.train_iteration(), learner.train_iteration()
    assert first == {}
    assert {
        "train/loss",
        "train/policy_loss",
        "train/value_loss",
        "train/entropy",
        "train/approx_kl",
        "train/clip_fraction",
        "train/clip_range",
        "train/grad_norm",
        "train/lr",
        "train/updates",
    } <= set(second)
    assert second["train/updates"] == 12.0
    learner.close()


def test_policy_from_checkpoint_state_takes_the_argmax_when_greedy() -> None:
    learner = _learner()
    learner.train_iteration()
    state = learner.state_dict()
    policy = build_policy(
        learner.cfg,
        state,
        learner.envs.single_observation_space,
        learner.envs.single_action_space,
        torch.device("cpu"),
        seed=3,
    )
    obs = np.random.default_rng(0).normal(size=(64, 4)).astype(np.float32)
    with torch.no_grad():
        logits, _ = learner.net(torch.from_numpy(obs))
    np.testing.assert_array_equal(policy.act(obs, greedy=True), logits.argmax(-1).numpy())
    assert policy.explores_with_epsilon is False
    learner.close()


def test_resume_is_exact(tmp_path: Path) -> None:
    """N steps straight == N/2, then ``--resume`` to N: identical parameters, optimizer state,
    counters, generator (the minibatch shuffles) and LR."""
    small = [
        *QUIET,
        "--set",
        "env.num_envs=4",
        "--set",
        "optim.lr_decay_steps=4000",
        "--set",
        "train.log_every=256",
        "--set",
        "train.eval_every=0",
        "--set",
        "agent.clip_range_final=0.05",
        "--set",
        "checkpoint.every=0",
    ]
    straight, split = tmp_path / "straight", tmp_path / "split"
    assert main(["train", CARTPOLE, "--run-dir", str(straight), "--steps", "1024", *small]) == 0
    assert main(["train", CARTPOLE, "--run-dir", str(split), "--steps", "512", *small]) == 0
    assert load_checkpoint(split / "checkpoints" / "last.pt")["learner"]["env_steps"] == 512
    assert main(["train", "--resume", str(split), "--steps", "1024"]) == 0
    a, b = (load_checkpoint(d / "checkpoints" / "last.pt")["learner"] for d in (straight, split))
    assert a["env_steps"] == b["env_steps"] == 1024
    assert a["update"]["updates"] == b["update"]["updates"] == 8 * 20
    for name, tensor in a["net"].items():
        assert torch.equal(tensor, b["net"][name]), name
    opt_a, opt_b = a["update"]["optimizer"]["state"], b["update"]["optimizer"]["state"]
    for key in opt_a:
        for field, value in opt_a[key].items():
            assert torch.equal(torch.as_tensor(value), torch.as_tensor(opt_b[key][field]))
    assert torch.equal(a["generator"], b["generator"])


def test_export_and_evaluate(tmp_path: Path) -> None:
    run, out = tmp_path / "run", tmp_path / "policy.pt"
    assert (
        main(
            [
                "train",
                CARTPOLE,
                "--run-dir",
                str(run),
                "--steps",
                "512",
                *QUIET,
                "--set",
                "train.eval_every=0",
            ]
        )
        == 0
    )
    last = run / "checkpoints" / "last.pt"
    assert main(["export", str(last), str(out)]) == 0
    assert set(torch.load(out, weights_only=False)["learner"]) == {"net", "env_steps"}
    scores = []
    for path in (last, out):
        result = tmp_path / f"{path.stem}.json"
        assert (
            main(["evaluate", str(path), "--episodes", "3", "--greedy", "--json", str(result)]) == 0
        )
        summary = json.loads(result.read_text())
        assert summary["episodes"] == 3 and summary["protocol"]["policy"] == "greedy"
        scores.append(summary["returns"])
    assert scores[0] == scores[1]


@pytest.mark.parametrize("config", ["cartpole_ppo.yaml", "minatar_ppo.yaml"])
def test_rlkit_check_has_no_fail_on_the_published_configs(config: str) -> None:
    """MinAtar's frames are sparse 0/1 channels and PPO's biases start at 0, so units sit exactly
    on their ReLU kink at initialisation: the gradient check rechecks such tensors a small step
    away and must pass there."""
    if config.startswith("minatar"):
        pytest.importorskip("minatar")
    report = run_checks(load_config(ROOT / "configs" / config, ["train.threads=1"]), config)
    assert not report.failed, report.table()
    assert next(r for r in report.results if r.name == "gradient check").status == "PASS"

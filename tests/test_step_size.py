"""Every published Atari config takes the step its named reference takes.

Each config says in its comments which implementation it follows. Here, on one fixed batch of
real Pong observations, the learner built from the config makes K updates through its own code
path (loss, clipping, optimizer), and an independent plain-torch version of the reference's update
rule makes K updates from the same initial weights. Per parameter tensor, the relative movement
``||w_K - w_0|| / ||w_0||`` must agree within a factor of 1.5.

This is the check that would have caught the DQN step-size bug: RMSProp with 0.01 inside the
square root and a batch-*mean* loss takes steps ~25x smaller than DeepMind's code, which *sums*
the gradient over the 32 samples (``test_mean_loss_with_deepmind_epsilon_is_caught``).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import envs
from agents.config import load_config
from agents.dqn import DQNLearner
from agents.paac import PAACLearner, Rollout
from agents.ppo import Batch as PPOBatch
from agents.ppo import PPOLearner, gae
from rlkit.logger import Logger
from rlkit.replay.buffer import Batch

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
UPDATES = 8
TOLERANCE = 1.5

# ---------------------------------------------------------------------- reference update rules
# Each takes (params, grads, state) and changes params in place, as the named code does.

Rule = Callable[[list[torch.Tensor], list[torch.Tensor], dict], None]


def deepmind_lua_rmsprop(lr: float, batch: int) -> Rule:
    """DeepMind's Lua DQN (NeuralQLearner): dw is the gradient *summed* over the batch;
    g = .95 g + .05 dw, g2 = .95 g2 + .05 dw^2, w -= lr dw / sqrt(g2 - g^2 + 0.01); g, g2 from 0."""
    def step(params, grads, state):
        for i, (p, mean_grad) in enumerate(zip(params, grads, strict=True)):
            dw = mean_grad * batch
            g, g2 = state.setdefault(i, (torch.zeros_like(p), torch.zeros_like(p)))
            g.mul_(0.95).add_(0.05 * dw)
            g2.mul_(0.95).add_(0.05 * dw * dw)
            p.sub_(lr * dw / torch.sqrt(g2 - g * g + 0.01))
    return step


def tf1_rmsprop(lr: float, decay: float, eps: float, centered: bool) -> Rule:
    """TensorFlow 1 ``RMSPropOptimizer`` (Dopamine's Nature DQN, the original PAAC): mean-square
    slot starts at 1, epsilon inside the root, on the batch-mean loss's gradient."""
    def step(params, grads, state):
        for i, (p, grad) in enumerate(zip(params, grads, strict=True)):
            ms, mg = state.setdefault(i, (torch.ones_like(p), torch.zeros_like(p)))
            ms.mul_(decay).add_((1 - decay) * grad * grad)
            mg.mul_(decay).add_((1 - decay) * grad)
            denom = ms - mg * mg if centered else ms
            p.sub_(lr * grad / torch.sqrt(denom + eps))
    return step


def torch_adam(lr: float, eps: float = 1e-8) -> Rule:
    """CleanRL's and Tianshou's Atari DQN: ``torch.optim.Adam(lr=1e-4)`` with default betas
    and epsilon on the batch-mean loss (written out: m, v bias-corrected, eps 1e-8); CleanRL's
    PPO: ``Adam(lr=2.5e-4, eps=1e-5)``."""
    def step(params, grads, state):
        t = state["t"] = state.get("t", 0) + 1
        for i, (p, grad) in enumerate(zip(params, grads, strict=True)):
            m, v = state.setdefault(i, (torch.zeros_like(p), torch.zeros_like(p)))
            m.mul_(0.9).add_(0.1 * grad)
            v.mul_(0.999).add_(0.001 * grad * grad)
            m_hat, v_hat = m / (1 - 0.9**t), v / (1 - 0.999**t)
            p.sub_(lr * m_hat / (v_hat.sqrt() + eps))
    return step


def clip_global_norm(grads: list[torch.Tensor], max_norm: float) -> list[torch.Tensor]:
    norm = torch.sqrt(sum((g * g).sum() for g in grads))
    scale = min(1.0, max_norm / (float(norm) + 1e-6))
    return [g * scale for g in grads]


@dataclass
class Reference:
    name: str
    rule: Callable[[], Rule]
    max_grad_norm: float | None = None


REFERENCES: dict[str, Reference] = {
    "pong_dqn.yaml": Reference("Dopamine dqn_nature.gin",
                               lambda: tf1_rmsprop(2.5e-4, 0.95, 1e-5, centered=True)),
    "breakout_double_dqn.yaml": Reference("DeepMind's Lua DQN",
                                          lambda: deepmind_lua_rmsprop(2.5e-4, 32)),
    "breakout_double_dqn_per.yaml": Reference("DeepMind's Lua DQN, lr / 4 (Schaul et al.)",
                                              lambda: deepmind_lua_rmsprop(6.25e-5, 32)),
    "pong_dqn_fast.yaml": Reference("CleanRL dqn_atari.py (Adam 1e-4)",
                                    lambda: torch_adam(1e-4), max_grad_norm=10.0),
    "pong_paac.yaml": Reference("the original PAAC code", lambda: tf1_rmsprop(
        0.0224, 0.99, 0.1, centered=False), max_grad_norm=3.0),
    "breakout_paac.yaml": Reference("the original PAAC code", lambda: tf1_rmsprop(
        0.0224, 0.99, 0.1, centered=False), max_grad_norm=3.0),
    # Baselines' A2C clips a batch-mean loss at 0.5; on the t_max-summed loss that is 2.5.
    "pong_paac_fast.yaml": Reference("OpenAI Baselines A2C (TF1 RMSProp 7e-4, eps 1e-5)",
                                     lambda: tf1_rmsprop(7e-4, 0.99, 1e-5, centered=False),
                                     max_grad_norm=2.5),
    "pong_ppo.yaml": Reference("CleanRL ppo_atari.py (Adam 2.5e-4, eps 1e-5)",
                               lambda: torch_adam(2.5e-4, eps=1e-5), max_grad_norm=0.5),
}


def atari_configs() -> list[str]:
    return sorted(p.name for p in CONFIGS.glob("*.yaml")
                  if envs.is_atari(load_config(p).env.id))


def test_every_atari_config_names_a_reference():
    assert set(atari_configs()) == set(REFERENCES)


# ---------------------------------------------------------------------- fixed real batches


@pytest.fixture(scope="module")
def pong_frames() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """201 consecutive Pong observations under random play, their actions and clipped rewards
    (enough for DQN batches of 32 and a PAAC rollout of 5 x 8 plus bootstrap)."""
    env = envs.make_atari("Pong", seed=3)
    rng = np.random.default_rng(3)
    obs, _ = env.reset(seed=3)
    frames, actions, rewards = [obs], [], []
    for _ in range(200):
        action = int(rng.integers(env.action_space.n))
        obs, reward, terminated, truncated, _ = env.step(action)
        assert not (terminated or truncated)
        frames.append(obs)
        actions.append(action)
        rewards.append(reward)
    env.close()
    return np.stack(frames), np.array(actions), np.array(rewards, dtype=np.float32)


def relative_moves(before: list[torch.Tensor], after: list[torch.Tensor]) -> np.ndarray:
    """``||w_K - w_0|| / ||w_0||`` per tensor; the plain ``||w_K||`` for a tensor that starts
    at 0 (PPO's biases)."""
    return np.array([float((a - b).norm() / (b.norm() if b.any() else 1.0))
                     for b, a in zip(before, after, strict=True)])


def assert_same_moves(ours: np.ndarray, reference: np.ndarray, name: str) -> None:
    ratio = ours / reference
    assert np.all((ratio > 1 / TOLERANCE) & (ratio < TOLERANCE)), (
        f"relative weight movement per tensor / {name}'s: {np.round(ratio, 3).tolist()}")


# ---------------------------------------------------------------------- DQN family


def dqn_moves(config: str, frames, overrides: tuple[str, ...] = ()) -> tuple[np.ndarray, ...]:
    """(our relative moves, the reference's) after UPDATES updates on one fixed batch."""
    cfg = load_config(CONFIGS / config, ["agent.buffer_size=1000", "env.num_envs=1", "env.id=Pong",
                                         "env.backend=sync", *overrides])
    learner = DQNLearner(cfg, torch.device("cpu"), Logger(None))
    try:
        obs, actions, rewards = frames
        idx = np.arange(0, 128, 4)  # 32 transitions
        gamma = cfg.agent.gamma ** cfg.agent.n_step
        batch = Batch(obs=obs[idx], actions=actions[idx], rewards=rewards[idx],
                      next_obs=obs[idx + 1], discounts=np.full(32, gamma, np.float32),
                      weights=np.ones(32, np.float32), indices=idx.astype(np.int64))
        learner.replay.sample = lambda *a, **k: batch
        learner.replay.update_priorities = lambda *a, **k: None
        reference_net = copy.deepcopy(learner.q)
        target = copy.deepcopy(learner.target)
        initial = [p.detach().clone() for p in learner.q.parameters()]
        for _ in range(UPDATES):
            learner._learn()
        ours = relative_moves(initial, [p.detach() for p in learner.q.parameters()])

        ref = REFERENCES[config]
        rule, state = ref.rule(), {}
        params = list(reference_net.parameters())
        o, no = torch.as_tensor(batch.obs), torch.as_tensor(batch.next_obs)
        a, r = torch.as_tensor(batch.actions), torch.as_tensor(batch.rewards)
        for _ in range(UPDATES):
            with torch.no_grad():
                if cfg.agent.double:
                    best = reference_net(no).argmax(1, keepdim=True)
                    next_value = target(no).gather(1, best).squeeze(1)
                else:
                    next_value = target(no).max(1).values
                y = r + gamma * next_value
            q = reference_net(o).gather(1, a.unsqueeze(1)).squeeze(1)
            loss = F.huber_loss(q, y)  # mean over the batch
            grads = torch.autograd.grad(loss, params)
            if ref.max_grad_norm is not None:
                grads = clip_global_norm(list(grads), ref.max_grad_norm)
            with torch.no_grad():
                rule(params, list(grads), state)
        return ours, relative_moves(initial, [p.detach() for p in params])
    finally:
        learner.close()


@pytest.mark.parametrize("config", [c for c in REFERENCES if "dqn" in c])
def test_dqn_config_steps_like_its_reference(config, pong_frames):
    ours, reference = dqn_moves(config, pong_frames)
    assert_same_moves(ours, reference, REFERENCES[config].name)


def test_mean_loss_with_deepmind_epsilon_is_caught(pong_frames):
    """The old Pong config (eps 0.01 inside the root, mean loss, accumulator 1) moves the
    weights far less than DeepMind's code: the test above fails on it."""
    ours, reference = dqn_moves("breakout_double_dqn.yaml", pong_frames,
                                ("optim.eps=0.01", "optim.initial_accumulator=1.0"))
    assert np.all(ours / reference < 1 / 10)


# ---------------------------------------------------------------------- PAAC


@pytest.mark.parametrize("config", [c for c in REFERENCES if "paac" in c])
def test_paac_config_steps_like_its_reference(config, pong_frames):
    """The original PAAC: loss = t_max * (mean(-log pi(a|s) A - beta H) + 0.25 mean((R-V)^2)),
    global-norm clip 3, TF1 RMSProp; here a fixed t_max x n_e rollout of real frames."""
    cfg = load_config(CONFIGS / config, ["env.num_envs=8", "env.backend=sync", "env.id=Pong"])
    learner = PAACLearner(cfg, torch.device("cpu"), Logger(None))
    try:
        t_max, n_e = cfg.agent.t_max, 8
        obs, actions, rewards = pong_frames
        rollout_obs = torch.as_tensor(obs[: t_max * n_e].reshape(t_max, n_e, *obs.shape[1:]))
        acts = torch.as_tensor(actions[: t_max * n_e].reshape(t_max, n_e))
        rews = torch.as_tensor(rewards[: t_max * n_e].reshape(t_max, n_e))
        no_end = torch.zeros(t_max, n_e, dtype=torch.bool)
        reference_net = copy.deepcopy(learner.net)
        initial = [p.detach().clone() for p in learner.net.parameters()]
        for _ in range(UPDATES):
            logits, values = learner.net(rollout_obs.flatten(0, 1))
            with torch.no_grad():
                bootstrap = learner.net(torch.as_tensor(obs[t_max * n_e: t_max * n_e + n_e]))[1]
            learner.learn(Rollout(logits.view(t_max, n_e, -1), values.view(t_max, n_e), acts,
                                  rews, no_end, no_end, ~no_end, bootstrap))
        ours = relative_moves(initial, [p.detach() for p in learner.net.parameters()])

        ref = REFERENCES[config]
        rule, state = ref.rule(), {}
        params = list(reference_net.parameters())
        for _ in range(UPDATES):
            logits, values = reference_net(rollout_obs.flatten(0, 1))
            logits, values = logits.view(t_max, n_e, -1), values.view(t_max, n_e)
            with torch.no_grad():
                following = reference_net(torch.as_tensor(obs[t_max * n_e:
                                                               t_max * n_e + n_e]))[1]
                returns = torch.empty(t_max, n_e)
                for t in reversed(range(t_max)):
                    following = rews[t] + cfg.agent.gamma * following
                    returns[t] = following
            log_pi = F.log_softmax(logits, -1)
            chosen = log_pi.gather(-1, acts.unsqueeze(-1)).squeeze(-1)
            entropy = -(log_pi.exp() * log_pi).sum(-1)
            advantage = (returns - values).detach()
            loss = t_max * ((-chosen * advantage - cfg.agent.entropy_coef * entropy).mean()
                            + cfg.agent.value_coef * ((returns - values) ** 2).mean())
            grads = clip_global_norm(list(torch.autograd.grad(loss, params)),
                                     ref.max_grad_norm)
            with torch.no_grad():
                rule(params, grads, state)
        assert_same_moves(ours, relative_moves(initial, [p.detach() for p in params]), ref.name)
    finally:
        learner.close()


# ---------------------------------------------------------------------- PPO


def test_ppo_config_steps_like_its_reference(pong_frames):
    """CleanRL's ppo_atari.py update on one fixed minibatch of 128 real frames, written out: the
    clipped surrogate on advantages normalised with torch's (unbiased) std, value loss
    0.5 * mean(max((V - R)^2, (V_clipped - R)^2)), loss = pg - ent_coef * H + vf_coef * v,
    global-norm clip 0.5, Adam 2.5e-4 with eps 1e-5."""
    config = "pong_ppo.yaml"
    cfg = load_config(CONFIGS / config, ["env.num_envs=1", "env.backend=sync", "env.id=Pong"])
    learner = PPOLearner(cfg, torch.device("cpu"), Logger(None))
    try:
        agent, n = cfg.agent, 128
        obs, actions, rewards = pong_frames
        o, a = torch.as_tensor(obs[:n]), torch.as_tensor(actions[:n])
        with torch.no_grad():  # the rollout's constants, from the initial network
            logits, values = learner.net(torch.as_tensor(obs[: n + 1]))
            old_log_probs = F.log_softmax(logits[:n], -1).gather(-1, a[:, None])[:, 0]
            no_end = torch.zeros(n, 1, dtype=torch.bool)
            advantages = gae(torch.as_tensor(rewards[:n, None]), values[:n, None],
                             values[1:, None], no_end, no_end, agent.gamma, agent.gae_lambda)[:, 0]
            old_values, returns = values[:n], advantages + values[:n]
        reference_net = copy.deepcopy(learner.net)
        initial = [p.detach().clone() for p in learner.net.parameters()]
        batch = PPOBatch(o, a, old_log_probs, old_values, advantages, returns)
        for _ in range(UPDATES):
            learner.learn_minibatch(batch)
        ours = relative_moves(initial, [p.detach() for p in learner.net.parameters()])

        ref = REFERENCES[config]
        rule, state = ref.rule(), {}
        params = list(reference_net.parameters())
        eps = agent.clip_range
        for _ in range(UPDATES):
            logits, new_values = reference_net(o)
            log_pi = F.log_softmax(logits, -1)
            ratio = (log_pi.gather(-1, a[:, None])[:, 0] - old_log_probs).exp()
            adv = (advantages - advantages.mean()) / (advantages.std() + 1e-8)
            pg_loss = torch.max(-adv * ratio, -adv * torch.clamp(ratio, 1 - eps, 1 + eps)).mean()
            clipped = old_values + torch.clamp(new_values - old_values, -eps, eps)
            v_loss = 0.5 * torch.max((new_values - returns) ** 2, (clipped - returns) ** 2).mean()
            entropy = -(log_pi.exp() * log_pi).sum(-1).mean()
            loss = pg_loss - agent.entropy_coef * entropy + agent.value_coef * v_loss
            grads = clip_global_norm(list(torch.autograd.grad(loss, params)), ref.max_grad_norm)
            with torch.no_grad():
                rule(params, grads, state)
        assert_same_moves(ours, relative_moves(initial, [p.detach() for p in params]), ref.name)
    finally:
        learner.close()

"""PAAC: synchronous parallel advantage actor-critic (Clemente, Castejon and Chandra 2017).

"Efficient Parallel Methods for Deep Reinforcement Learning" (arXiv:1705.04862): ``n_e``
environments are stepped together, one network does a single batched forward pass for all of
them, and after ``t_max`` steps the ``t_max x n_e`` rollout gives one synchronous update (no
stale gradients, unlike A3C). This module holds the two pure functions (:func:`nstep_returns`,
:func:`paac_loss`), the actor-critic network and the learner the runner drives.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

import gymnasium as gym
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from agents.algo_configs import PAACConfig
from agents.environments import capture_env_stream, make_train_envs, resume_env_stream
from agents.episodes import Episode, EpisodeTracker
from agents.learner import acting_weights
from agents.networks import build_encoder
from envs import array_shape
from rlkit.distributed import DistributedContext
from rlkit.init import apply_init
from rlkit.logger import Logger
from rlkit.optim import build_optimizer
from rlkit.update import UpdateStep

if TYPE_CHECKING:
    from agents.config import Config

__all__ = ["ActorCritic", "PAACConfig", "PAACLearner", "PAACLoss", "PAACPolicy", "Rollout",
           "build_policy", "nstep_returns", "paac_loss", "sample_actions"]


def nstep_returns(
    rewards: Tensor,
    terminated: Tensor,
    truncated: Tensor,
    next_values: Tensor,
    gamma: float,
) -> Tensor:
    """n-step returns over a ``(t_max, n_e)`` rollout (PAAC paper, Algorithm 1).

    ``next_values[t]`` is ``V(s_{t+1})``, the value of the observation that step ``t`` returned;
    its last row is the bootstrap value of the state after the rollout. Per env, walking back in
    time, ``R_t = r_t + gamma * X`` with ``X = 0`` if the episode *terminated* at ``t``;
    ``X = V(s_{t+1})`` if it was *truncated* at ``t`` (with gymnasium's NEXT_STEP autoreset the
    step's observation is the real final one, so this bootstraps from the right state) or if ``t``
    is the last step of the rollout; ``X = R_{t+1}`` otherwise. So no return ever crosses an
    episode end. The step after an episode end is an autoreset step (reward 0, action ignored):
    its return is meaningless and the caller masks it out of the loss (see :func:`paac_loss`).
    """
    if not (rewards.shape == terminated.shape == truncated.shape == next_values.shape):
        raise ValueError(
            "nstep_returns needs rewards, terminated, truncated and next_values of one shape "
            f"(t_max, n_e); got {tuple(rewards.shape)}, {tuple(terminated.shape)}, "
            f"{tuple(truncated.shape)}, {tuple(next_values.shape)}"
        )
    returns = torch.empty_like(rewards)
    following = next_values[-1]  # R_{t+1} as seen from the last step: the bootstrap value
    for t in reversed(range(rewards.shape[0])):
        ahead = torch.where(truncated[t], next_values[t], following)
        following = rewards[t] + gamma * torch.where(terminated[t], 0.0, ahead)
        returns[t] = following
    return returns


class PAACLoss(NamedTuple):
    """The loss to minimise and its parts (detached), each a sum over time, mean over envs."""

    total: Tensor
    policy: Tensor
    value: Tensor
    entropy: Tensor


def paac_loss(
    logits: Tensor,
    values: Tensor,
    actions: Tensor,
    returns: Tensor,
    *,
    entropy_coef: float,
    value_coef: float,
    mask: Tensor | None = None,
    advantages: Tensor | None = None,
) -> PAACLoss:
    """Policy gradient with advantage + value regression - entropy bonus, over one rollout.

    Shapes: ``logits (t_max, n_e, A)``, ``values``, ``actions``, ``returns`` and ``mask``
    ``(t_max, n_e)``; ``mask`` is 1 for real transitions and 0 for autoreset steps.
    Per sample (PAAC paper, eqs. 2-3; the original code's coefficients):
    ``-log pi(a|s) * A - entropy_coef * H(pi(.|s)) + value_coef * (R - V(s))^2`` with the
    advantage ``A = R - V(s)`` detached (the critic learns only from its own term).

    The per-sample losses are *summed over time and averaged over envs*: the original computes
    ``t_max * mean`` over the full batch, which is the same number. That keeps each env's
    contribution equal to an A3C actor's summed ``t_max``-step loss, the scale the original
    learning rate (0.0007 per actor, x n_e), RMSProp epsilon 0.1 and clip norm 3.0 were tuned
    for: with epsilon inside the square root, a plain mean would shrink early steps by ``t_max``.
    Dividing by ``n_e`` (not by the number of unmasked samples) keeps every real transition's
    weight fixed however many autoreset steps the rollout holds.
    """
    if logits.dim() != 3 or values.shape != logits.shape[:2]:
        raise ValueError(
            "paac_loss needs logits (t_max, n_e, A) and values (t_max, n_e); got "
            f"{tuple(logits.shape)} and {tuple(values.shape)}"
        )
    weight = torch.ones_like(values) if mask is None else mask.to(values.dtype)
    n_envs = values.shape[1]
    log_probs = F.log_softmax(logits, dim=-1)
    chosen = log_probs.gather(-1, actions.long().unsqueeze(-1)).squeeze(-1)
    entropy = -(log_probs.exp() * log_probs).sum(-1)
    advantage = (returns - values).detach() if advantages is None else advantages.detach()
    policy_term = (weight * (-chosen * advantage - entropy_coef * entropy)).sum() / n_envs
    value_term = (weight * (returns - values).pow(2)).sum() / n_envs
    total = policy_term + value_coef * value_term
    mean_entropy = (weight * entropy).sum() / weight.sum().clamp(min=1.0)
    return PAACLoss(total, policy_term.detach(), value_term.detach(), mean_entropy.detach())


class ActorCritic(nn.Module):
    """Shared encoder, softmax policy head and scalar value head (PAAC paper, Section 4).

    ``encoder="auto"`` picks the original's default for Atari images, ``"nips"`` (conv 16 8x8/4,
    conv 32 4x4/2, fc 256), MinAtar's net for 10x10 images and ``"mlp"`` for vectors;
    ``"nature"`` (32-64-64, fc 512) was the original's option. Every layer
    gets the Torch-style uniform init the original used: weights and biases ~ U(+-1/sqrt(fan_in)).
    """

    def __init__(
        self,
        obs_shape: Sequence[int],
        num_actions: int,
        encoder: str = "auto",
        mlp_hidden: Sequence[int] = (64, 64),
    ) -> None:
        super().__init__()
        self.encoder = build_encoder(obs_shape, encoder, mlp_hidden, image_default="nips")
        self.policy = nn.Linear(self.encoder.out_features, num_actions)
        self.value = nn.Linear(self.encoder.out_features, 1)
        apply_init(self, "torch_uniform")
        # Channels-last convolutions: 1.3-1.8x more PAAC updates/s on one CPU thread (NIPS net,
        # 32 envs, measured with the retained-graph update below on a shared 2-core machine).
        self.channels_last = len(obs_shape) == 3
        if self.channels_last:
            # Module.to(memory_format=...) is documented, but torch's overloads omit it.
            self.to(memory_format=torch.channels_last)  # type: ignore[call-overload]

    def forward(self, obs: Tensor) -> tuple[Tensor, Tensor]:
        """``(logits (B, A), values (B,))`` for a batch of observations (uint8 pixels or floats)."""
        if self.channels_last:
            obs = obs.contiguous(memory_format=torch.channels_last)
        features = self.encoder(obs)
        return self.policy(features), self.value(features).squeeze(-1)


class Rollout(NamedTuple):
    """``t_max`` steps of ``n_e`` envs, on the learner's device.

    ``logits`` and ``values`` still carry the autograd graph of the acting forward passes: the
    weights do not change during a synchronous rollout, so that graph is exactly the one a second
    forward pass over the stored observations would rebuild, and keeping it saves that pass
    (measured ~1.45x more updates/s than re-forwarding the rollout, NIPS net, 32 envs, 1 CPU
    thread) and the storage of the observations.
    """

    logits: Tensor
    """(t_max, n_e, A) policy logits, with graph."""
    values: Tensor
    """(t_max, n_e) V(s_t), with graph."""
    actions: Tensor
    """(t_max, n_e) int64 actions taken."""
    rewards: Tensor
    """(t_max, n_e) float32 rewards (clipped to [-1, 1] when ``agent.clip_rewards``)."""
    terminated: Tensor
    """(t_max, n_e) bool: the episode ended in a terminal state (no bootstrap)."""
    truncated: Tensor
    """(t_max, n_e) bool: the episode was cut by a time limit (bootstrap from V(final obs))."""
    mask: Tensor
    """(t_max, n_e) bool: False for NEXT_STEP autoreset steps, which are not transitions."""
    bootstrap: Tensor
    """(n_e,) V(s_{t_max}), detached: the value the last returns bootstrap from."""


class PAACPolicy:
    """Acting from a trained actor-critic (evaluation; no envs, no optimizer).

    PAAC's evaluation samples from the policy (the stochastic policy is what was trained);
    ``greedy=True`` takes its argmax instead. ``epsilon`` is accepted for the shared evaluation
    protocol and ignored: a stochastic policy explores by itself.
    """

    explores_with_epsilon = False  # named in rlkit evaluate's protocol

    def __init__(self, net: ActorCritic, device: torch.device, seed: int | None = None) -> None:
        self.net = net.eval()
        self.device = device
        self.generator = torch.Generator(device=device)
        if seed is None:
            self.generator.seed()
        else:
            self.generator.manual_seed(seed)

    @torch.no_grad()
    def act(self, obs: np.ndarray, *, greedy: bool = False, epsilon: float = 0.0) -> np.ndarray:
        del epsilon
        logits, _ = self.net(torch.as_tensor(np.asarray(obs)).to(self.device))
        actions = logits.argmax(-1) if greedy else sample_actions(logits, self.generator)
        return actions.cpu().numpy()


def sample_actions(logits: Tensor, generator: torch.Generator | None, *,
                   total_rows: int | None = None, first_row: int = 0) -> Tensor:
    """One action per row, drawn from ``softmax(logits)`` by inverse CDF, one uniform per row.

    Data-parallel ranks pass the global batch size ``total_rows`` and their first row: every rank
    draws the uniforms of the whole batch from an identically seeded generator and keeps its
    slice, so N ranks sample exactly the actions one process with all the envs would.
    """
    rows = logits.shape[0]
    probs = F.softmax(logits, dim=-1)
    uniforms = torch.rand(rows if total_rows is None else total_rows, generator=generator,
                          device=logits.device, dtype=probs.dtype)[first_row:first_row + rows]
    cdf = probs.cumsum(-1)
    actions = torch.searchsorted(cdf, (uniforms * cdf[:, -1]).unsqueeze(-1), right=True)
    return actions.squeeze(-1).clamp_(max=probs.shape[-1] - 1)


def _discrete_actions(space: gym.Space) -> int:
    if not isinstance(space, gym.spaces.Discrete):
        raise ValueError(f"PAAC needs a discrete action space, got {space}; pick another env")
    return int(space.n)


def _network(agent: PAACConfig, obs_space: gym.Space, action_space: gym.Space) -> ActorCritic:
    return ActorCritic(array_shape(obs_space, "observation"), _discrete_actions(action_space),
                       encoder=agent.encoder, mlp_hidden=agent.mlp_hidden)


def build_policy(cfg: Config, learner_state: dict[str, Any], observation_space: gym.Space,
                 action_space: gym.Space, device: torch.device, *, seed: int | None = None
                 ) -> PAACPolicy:
    """The evaluation policy of a checkpoint: only the actor-critic network is built and loaded
    (with the EMA of its weights when the run kept one, ``train.eval_ema``)."""
    net = _network(cfg.agent, observation_space, action_space).to(device)
    net.load_state_dict(acting_weights(learner_state, "net"))
    return PAACPolicy(net, device, seed)


class PAACLearner:
    """PAAC on one vector env: ``n_e`` envs, one batched forward pass per step, one synchronous
    update per ``t_max`` steps (the ``agents.learner.Learner`` protocol the runner drives).

    Autoreset: gymnasium's NEXT_STEP autoreset makes the step after an episode end a reset step
    (reward 0, action ignored). ``autoreset`` remembers which envs ended on the previous step,
    across rollouts too; those steps are masked out of the loss and of the episode tracker.

    Host syncs: reading the sampled actions once per step; scalars are accumulated on the
    device and read back once every ``train.log_every`` agent steps.

    Resume: ``state_dict`` holds the network, the update step (counter, optimizer, LR schedule),
    counters, both sampling generators and, for in-process picklable envs (CartPole), the envs
    themselves, so that a resumed run continues exactly; emulators cannot be pickled and start
    new games seeded by the step count instead.

    Data-parallel (``dist`` with N ranks, docs/distributed.md): each rank owns envs
    ``r*n_e .. (r+1)*n_e - 1`` of an ``N*n_e``-env run and samples their actions from the same
    stream that run would, and gradients are averaged, so N ranks are the same algorithm as one
    learner with ``N*n_e`` envs; ``env_steps`` counts all ranks' steps.
    """

    def __init__(self, cfg: Config, device: torch.device, logger: Logger,
                 dist: DistributedContext | None = None) -> None:
        agent: PAACConfig = cfg.agent
        self.cfg = cfg
        self.agent = agent
        self.device = device
        self.num_envs = cfg.env.num_envs
        seed = cfg.train.seed
        self.dist = dist or DistributedContext(device=device)
        self.total_envs = self.num_envs * self.dist.world_size
        self.envs = make_train_envs(cfg.env, self.dist.env_seed(seed, self.num_envs))
        with torch.random.fork_rng(devices=[]):  # seeded init without touching global RNG
            torch.manual_seed(seed)
            self.net = _network(agent, self.envs.single_observation_space,
                                self.envs.single_action_space).to(device)
        self.dist.broadcast_module(self.net)

        steps_per_update = agent.t_max * self.total_envs
        decay_updates = math.ceil((cfg.optim.lr_decay_steps or cfg.train.steps) / steps_per_update)
        self.update = UpdateStep(
            self.net, build_optimizer(self.net, cfg.optim),
            max_grad_norm=cfg.optim.max_grad_norm,
            lr_schedule=cfg.optim.lr_schedule_over(decay_updates),
            monitor_every=max(1, cfg.train.log_every // steps_per_update),
            logger=logger.with_x_axis(lambda: self.env_steps),  # one x-axis: agent steps
            grad_sync=self.dist.average_gradients if self.dist.is_distributed else None,
            max_nan_skips=cfg.optim.nan_skips, ema_decay=cfg.train.eval_ema,
        )
        # Evaluation plays the EMA of the weights when train.eval_ema is set (never training).
        self.acting_net = self.net if self.update.ema is None else self.update.ema.module
        # Own generators: resume restores them exactly, and evaluation never shifts training.
        self.generator = torch.Generator(device=device)
        self.generator.manual_seed(seed)
        self.eval_generator = torch.Generator(device=device)
        self.eval_generator.manual_seed(seed + 1)
        self.tracker = EpisodeTracker(self.num_envs)
        obs, _ = self.envs.reset(seed=self.dist.env_seed(seed, self.num_envs))
        self.obs = self._to_device(obs)
        self.autoreset = np.zeros(self.num_envs, dtype=bool)
        self.env_steps = 0
        self.next_log = cfg.train.log_every
        self._reset_accumulators()

    def _to_device(self, obs: np.ndarray) -> Tensor:
        # uint8 pixels travel as bytes (4x less than float32); the encoder scales them on device.
        return torch.as_tensor(np.asarray(obs)).to(self.device, non_blocking=True)

    # ------------------------------------------------------------------ rollouts + updates

    def collect(self) -> Rollout:
        """Play ``t_max`` steps in all envs with the current policy (one forward pass per step)."""
        t_max, n_envs = self.agent.t_max, self.num_envs
        rewards = np.zeros((t_max, n_envs), dtype=np.float32)
        terminated = np.zeros((t_max, n_envs), dtype=bool)
        truncated = np.zeros((t_max, n_envs), dtype=bool)
        mask = np.zeros((t_max, n_envs), dtype=bool)
        logits, values, actions = [], [], []
        for t in range(t_max):
            # Activation statistics are hooked into the first forward of a monitor update only.
            capture = self.update.capture_activations() if t == 0 else contextlib.nullcontext()
            with capture:
                step_logits, step_values = self.net(self.obs)
            step_actions = sample_actions(step_logits.detach(), self.generator,
                                          total_rows=self.total_envs,
                                          first_row=self.dist.rank * n_envs)
            # Reading the actions back is the one host sync per step.
            obs, reward, term, trunc, infos = self.envs.step(step_actions.cpu().numpy())
            self.tracker.update(reward, term, trunc, infos, autoreset=self.autoreset)
            rewards[t], terminated[t], truncated[t] = reward, term, trunc
            mask[t] = ~self.autoreset
            self.autoreset = np.logical_or(term, trunc)
            self.obs = self._to_device(obs)
            logits.append(step_logits)
            values.append(step_values)
            actions.append(step_actions)
        self.env_steps += t_max * self.total_envs
        with torch.no_grad():
            bootstrap = self.net(self.obs)[1]
        if self.agent.clip_rewards:
            # The Atari wrapper already clips to the sign; for integer game rewards clipping
            # again is the identity, and other envs get the original's [-1, 1] clip here.
            np.clip(rewards, -1.0, 1.0, out=rewards)
        rewards_d, terminated_d, truncated_d, mask_d = (
            torch.from_numpy(a).to(self.device, non_blocking=True)
            for a in (rewards, terminated, truncated, mask))
        return Rollout(torch.stack(logits), torch.stack(values), torch.stack(actions), rewards_d,
                       terminated_d, truncated_d, mask_d, bootstrap)

    def learn(self, rollout: Rollout) -> PAACLoss:
        """One synchronous update from a rollout (PAAC paper, Algorithm 1)."""
        next_values = torch.cat([rollout.values[1:].detach(), rollout.bootstrap.unsqueeze(0)])
        returns = nstep_returns(rollout.rewards, rollout.terminated, rollout.truncated,
                                next_values, self.agent.gamma)
        loss = paac_loss(rollout.logits, rollout.values, rollout.actions, returns,
                         entropy_coef=self.agent.entropy_coef, value_coef=self.agent.value_coef,
                         mask=rollout.mask)
        stats = self.update.update(loss.total)
        for key, value in (("loss", loss.total.detach()), ("policy_loss", loss.policy),
                           ("value_loss", loss.value), ("entropy", loss.entropy),
                           ("grad_norm", stats.grad_norm)):
            self._acc[key] += value
        self._acc_updates += 1
        return loss

    def train_iteration(self) -> dict[str, float]:
        """One rollout and its update; mean scalars once every ``train.log_every`` agent steps."""
        self.learn(self.collect())
        if self.env_steps < self.next_log:
            return {}
        self.next_log += self.cfg.train.log_every
        return self._scalars()

    def _reset_accumulators(self) -> None:
        zero = torch.zeros((), device=self.device)
        self._acc = {key: zero.clone() for key in
                     ("loss", "policy_loss", "value_loss", "entropy", "grad_norm")}
        self._acc_updates = 0

    def _scalars(self) -> dict[str, float]:
        scalars = {"train/lr": self.update.lr, "train/updates": float(self.update.updates)}
        if self._acc_updates:
            means = torch.stack(list(self._acc.values())).float() / self._acc_updates
            for key, value in zip(self._acc, means.tolist(), strict=True):  # one host sync
                scalars[f"train/{key}"] = value
        self._reset_accumulators()
        return scalars

    # ------------------------------------------------------------------ runner protocol

    def pop_episodes(self) -> list[Episode]:
        return self.tracker.pop()

    @torch.no_grad()
    def act(self, obs: np.ndarray, *, greedy: bool = False, epsilon: float = 0.0) -> np.ndarray:
        """Evaluation actions: sampled from the policy, or its argmax if ``greedy``.

        ``epsilon`` is ignored (see :class:`PAACPolicy`); sampling uses the learner's evaluation
        generator, so periodic evaluation does not change the training run. With
        ``train.eval_ema`` the EMA of the weights plays.
        """
        del epsilon
        logits, _ = self.acting_net(self._to_device(obs))
        actions = logits.argmax(-1) if greedy else sample_actions(logits, self.eval_generator)
        return actions.cpu().numpy()

    def state_dict(self, *, include_replay: bool = True) -> dict[str, Any]:
        """Everything needed to continue (PAAC has no replay: ``include_replay`` is moot)."""
        del include_replay
        return {
            "net": self.net.state_dict(),
            "update": self.update.state_dict(),  # update counter, optimizer, LR schedule
            "env_steps": self.env_steps,
            "next_log": self.next_log,
            "generator": self.generator.get_state(),
            "eval_generator": self.eval_generator.get_state(),
            **capture_env_stream(self.envs, self.obs.cpu().numpy(), self.autoreset, self.tracker),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.net.load_state_dict(state["net"])
        self.update.load_state_dict(state["update"])
        self.env_steps = int(state["env_steps"])
        self.next_log = int(state["next_log"])
        try:
            self.generator.set_state(state["generator"].cpu())
            self.eval_generator.set_state(state["eval_generator"].cpu())
        except RuntimeError:  # saved on another device type (CPU and CUDA generators differ)
            self.generator.manual_seed(self.cfg.train.seed + self.env_steps)
            self.eval_generator.manual_seed(self.cfg.train.seed + self.env_steps + 1)
        self.tracker = EpisodeTracker(self.num_envs)
        obs, self.autoreset = resume_env_stream(
            self.envs, state, self.tracker,
            self.dist.env_seed(self.cfg.train.seed + self.env_steps, self.num_envs))
        self.obs = self._to_device(obs)
        self._reset_accumulators()

    def replay_nbytes(self) -> int:
        """PAAC is on-policy: no replay storage."""
        return 0

    def close(self) -> None:
        self.envs.close()

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
from agents.learner import LearnerBase, discrete_actions, load_acting_net
from agents.networks import build_encoder, channels_last
from envs import array_shape
from rlkit.init import apply_init

if TYPE_CHECKING:
    from agents.config import Config
    from rlkit.distributed import DistributedContext
    from rlkit.logger import Logger

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
        channels_last(self)

    def forward(self, obs: Tensor) -> tuple[Tensor, Tensor]:
        """``(logits (B, A), values (B,))`` for a batch of observations (uint8 pixels or floats)."""
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
    """Acting from an actor-critic (evaluation: from a checkpoint, or the learner's ``act``),
    sampling with its own ``generator``.

    PAAC's evaluation samples from the policy (the stochastic policy is what was trained);
    ``greedy=True`` takes its argmax instead. ``epsilon`` is accepted for the shared evaluation
    protocol and ignored: a stochastic policy explores by itself.
    """

    explores_with_epsilon = False  # named in rlkit evaluate's protocol

    def __init__(self, net: nn.Module, device: torch.device, generator: torch.Generator) -> None:
        self.net = net
        self.device = device
        self.generator = generator

    @torch.no_grad()
    def act(self, obs: np.ndarray, *, greedy: bool = False, epsilon: float = 0.0) -> np.ndarray:
        del epsilon
        logits, _ = self.net(torch.as_tensor(np.asarray(obs)).to(self.device, non_blocking=True))
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


def _network(agent: PAACConfig, obs_space: gym.Space, action_space: gym.Space) -> ActorCritic:
    n_actions = discrete_actions(action_space, "PAAC")
    return ActorCritic(array_shape(obs_space, "observation"), n_actions, encoder=agent.encoder,
                       mlp_hidden=agent.mlp_hidden)


def build_policy(cfg: Config, learner_state: dict[str, Any], observation_space: gym.Space,
                 action_space: gym.Space, device: torch.device, *, seed: int | None = None
                 ) -> PAACPolicy:
    """A checkpoint's sampling policy: the actor-critic alone (EMA weights with
    ``train.eval_ema``), sampling with a generator seeded with ``seed`` (from the OS if None)."""
    net = load_acting_net(_network(cfg.agent, observation_space, action_space), learner_state,
                          "net", device)
    return PAACPolicy(net, device, _generator(device, seed))


def _generator(device: torch.device, seed: int | None) -> torch.Generator:
    """A generator of its own on ``device``, seeded (or from the OS with None)."""
    generator = torch.Generator(device=device)
    if seed is None:
        generator.seed()
    else:
        generator.manual_seed(seed)
    return generator


class PAACLearner(LearnerBase):
    """PAAC on one vector env: ``n_e`` envs, one batched forward pass per step, one synchronous
    update per ``t_max`` steps (``LearnerBase`` does the rest of the runner's protocol).

    Autoreset: gymnasium's NEXT_STEP autoreset makes the step after an episode end a reset step
    (reward 0, action ignored). ``autoreset`` remembers which envs ended on the previous step,
    across rollouts too; those steps are masked out of the loss and of the episode tracker.

    Host syncs: reading the sampled actions once per step; scalars are read back once per log.

    Resume: the state holds the network, the update step, counters, both sampling generators
    and, for in-process picklable envs (CartPole), the envs themselves, so that a resumed run
    continues exactly; emulators cannot be pickled and start new games seeded by the step count.

    Data-parallel (``dist`` with N ranks, docs/distributed.md): each rank owns envs
    ``r*n_e .. (r+1)*n_e - 1`` of an ``N*n_e``-env run and samples their actions from the same
    stream that run would, and gradients are averaged, so N ranks are the same algorithm as one
    learner with ``N*n_e`` envs; ``env_steps`` counts all ranks' steps.
    """

    agent: PAACConfig
    eval_policy: PAACPolicy

    def __init__(self, cfg: Config, device: torch.device, logger: Logger,
                 dist: DistributedContext | None = None) -> None:
        super().__init__(cfg, device, logger, dist,
                         accumulate=("loss", "policy_loss", "value_loss", "entropy", "grad_norm"))
        seed = cfg.train.seed
        self.total_envs = self.num_envs * self.dist.world_size
        with torch.random.fork_rng(devices=[]):  # seeded init without touching global RNG
            torch.manual_seed(seed)
            self.net = _network(cfg.agent, self.envs.single_observation_space,
                                self.envs.single_action_space).to(device)
        self.dist.broadcast_module(self.net)

        steps_per_update = cfg.agent.t_max * self.total_envs
        self._build_update(
            self.net,
            decay_updates=math.ceil((cfg.optim.lr_decay_steps or cfg.train.steps)
                                    / steps_per_update),
            updates_per_log=cfg.train.log_every // steps_per_update)
        # Own generators: resume restores them exactly, and evaluation never shifts training.
        self.generator = _generator(device, seed)
        self.eval_policy = PAACPolicy(self.acting_net, device, _generator(device, seed + 1))

    def _keep_obs(self, obs: np.ndarray) -> Tensor:
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
            self.obs = self._keep_obs(obs)
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
        self._accumulate({"loss": loss.total.detach(), "policy_loss": loss.policy,
                          "value_loss": loss.value, "entropy": loss.entropy,
                          "grad_norm": stats.grad_norm})
        return loss

    def _step(self) -> None:
        """One rollout and its update."""
        self.learn(self.collect())

    # ------------------------------------------------------------------ checkpoint state

    def _state(self) -> dict[str, Any]:
        return {
            "net": self.net.state_dict(),
            "generator": self.generator.get_state(),
            "eval_generator": self.eval_policy.generator.get_state(),
        }

    def _load_state(self, state: dict[str, Any]) -> None:
        self.net.load_state_dict(state["net"])
        evaluation = self.eval_policy.generator
        try:
            self.generator.set_state(state["generator"].cpu())
            evaluation.set_state(state["eval_generator"].cpu())
        except RuntimeError:  # saved on another device type (CPU and CUDA generators differ)
            self.generator.manual_seed(self.cfg.train.seed + self.env_steps)
            evaluation.manual_seed(self.cfg.train.seed + self.env_steps + 1)

"""PAAC: synchronous parallel advantage actor-critic (Clemente, Castejon and Chandra 2017).

"Efficient Parallel Methods for Deep Reinforcement Learning" (arXiv:1705.04862): ``n_e``
environments are stepped together, one network does a single batched forward pass for all of
them, and after ``t_max`` steps the ``t_max x n_e`` rollout gives one synchronous update (no
stale gradients, unlike A3C). This module holds the two pure functions (:func:`nstep_returns`,
:func:`paac_loss`) and the learner the runner drives; the actor-critic network
(``agents.networks.ActorCritic``) and the rollout machinery (``agents.learner.ActorCriticLearner``)
are shared with PPO.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from agents.algo_configs import PAACConfig
from agents.learner import (
    ActorCriticLearner,
    ActorCriticPolicy,
    EnvRecord,
    actor_critic_network,
    actor_critic_policy_builder,
)
from agents.networks import ActorCritic, sample_actions

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


PAACPolicy = ActorCriticPolicy
"""PAAC's evaluation policy: samples from the actor-critic (``greedy=True``: its argmax)."""


_network = actor_critic_network("PAAC", image_default="nips", init="torch_uniform")
"""The original's defaults: the NIPS network for Atari images, Torch7's uniform init."""
build_policy = actor_critic_policy_builder(_network)
"""A checkpoint's sampling policy (``agents.policy.PolicyBuilder``): the actor-critic alone."""


class PAACLearner(ActorCriticLearner):
    """PAAC on one vector env: ``n_e`` envs, one batched forward pass per step, one synchronous
    update per ``t_max`` steps (``ActorCriticLearner`` holds the network, sampling, env stepping
    with its autoreset masks, evaluation policy and checkpoint state; ``LearnerBase`` the rest of
    the runner's protocol).

    Host syncs: reading the sampled actions once per step; scalars are read back once per log.
    """

    agent: PAACConfig

    def __init__(self, cfg: Config, device: torch.device, logger: Logger,
                 dist: DistributedContext | None = None) -> None:
        super().__init__(cfg, device, logger, dist,
                         accumulate=("loss", "policy_loss", "value_loss", "entropy", "grad_norm"),
                         network=_network, rollout_steps=cfg.agent.t_max)

    # ------------------------------------------------------------------ rollouts + updates

    def collect(self) -> Rollout:
        """Play ``t_max`` steps in all envs with the current policy (one forward pass per step)."""
        t_max = self.agent.t_max
        record = EnvRecord.empty(t_max, self.num_envs)
        logits, values, actions = [], [], []
        for t in range(t_max):
            # Activation statistics are hooked into the first forward of a monitor update only.
            capture = self.update.capture_activations() if t == 0 else contextlib.nullcontext()
            with capture:
                step_logits, step_values = self.net(self.obs)
            step_actions = self._sample(step_logits.detach())
            self._play(record, t, step_actions)
            logits.append(step_logits)
            values.append(step_values)
            actions.append(step_actions)
        self.env_steps += t_max * self.total_envs
        with torch.no_grad():
            bootstrap = self.net(self.obs)[1]
        if self.agent.clip_rewards:
            # The Atari wrapper already clips to the sign; for integer game rewards clipping
            # again is the identity, and other envs get the original's [-1, 1] clip here.
            np.clip(record.rewards, -1.0, 1.0, out=record.rewards)
        rewards, terminated, truncated, mask = record.to(self.device)
        return Rollout(torch.stack(logits), torch.stack(values), torch.stack(actions), rewards,
                       terminated, truncated, mask, bootstrap)

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

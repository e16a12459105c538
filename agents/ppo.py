"""PPO: proximal policy optimisation with the clipped surrogate (Schulman et al. 2017).

"Proximal Policy Optimization Algorithms" (arXiv:1707.06347): ``n_e`` envs play ``n_steps``
steps with the current policy; advantages come from generalised advantage estimation (Schulman
et al. 2016, "High-Dimensional Continuous Control Using Generalized Advantage Estimation",
arXiv:1506.02438); then ``n_epochs`` passes over the rollout in shuffled minibatches maximise
the clipped surrogate, which stops rewarding a move of the probability ratio beyond
``1 +- clip_range``, so many updates can reuse one rollout without the policy running away.
This module holds the two pure functions (:func:`gae`, :func:`ppo_loss`) and the learner; the
actor-critic network (``agents.networks.ActorCritic``) and the rollout machinery
(``agents.learner.ActorCriticLearner``) are shared with PAAC.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

from agents.algo_configs import PPOConfig
from agents.learner import (
    ActorCriticLearner,
    EnvRecord,
    actor_critic_network,
    actor_critic_policy_builder,
)
from rlkit.schedules import Constant, Linear, Schedule

if TYPE_CHECKING:
    from agents.config import Config
    from rlkit.distributed import DistributedContext
    from rlkit.logger import Logger

__all__ = [
    "Batch",
    "PPOConfig",
    "PPOLearner",
    "PPOLoss",
    "PPORollout",
    "build_policy",
    "gae",
    "ppo_loss",
]


def gae(
    rewards: Tensor,
    values: Tensor,
    next_values: Tensor,
    terminated: Tensor,
    truncated: Tensor,
    gamma: float,
    lam: float,
) -> Tensor:
    """Generalised advantage estimates over a ``(T, n_e)`` rollout (Schulman et al. 2016, eq. 16).

    ``values[t]`` is ``V(s_t)`` and ``next_values[t]`` is ``V(s_{t+1})``, the value of the
    observation step ``t`` returned (its last row: the state after the rollout). Walking back,
    ``delta_t = r_t + gamma * V(s_{t+1}) - V(s_t)`` with the bootstrap dropped if the episode
    *terminated* at ``t``, and ``A_t = delta_t + gamma * lam * A_{t+1}`` with ``A_{t+1}`` dropped
    if the episode ended (terminated or *truncated*) at ``t`` or ``t`` is the rollout's last step.
    A truncated step keeps its bootstrap: with gymnasium's NEXT_STEP autoreset its observation is
    the real final one. The step after an episode end is an autoreset step: its estimate is
    meaningless and the learner leaves it out. ``lam = 1`` gives the n-step returns to the
    rollout's end minus ``V(s_t)`` (``agents.paac.nstep_returns``); ``lam = 0`` one-step TD errors.
    """
    if not (
        rewards.shape == values.shape == next_values.shape == terminated.shape == truncated.shape
    ):
        raise ValueError(
            "gae needs rewards, values, next_values, terminated and truncated of one shape "
            f"(T, n_e); got {tuple(rewards.shape)}, {tuple(values.shape)}, "
            f"{tuple(next_values.shape)}, {tuple(terminated.shape)}, {tuple(truncated.shape)}"
        )
    advantages = torch.empty_like(rewards)
    following = torch.zeros_like(rewards[0])  # A_{t+1}; nothing after the rollout's last step
    for t in reversed(range(rewards.shape[0])):
        bootstrap = torch.where(terminated[t], 0.0, next_values[t])
        delta = rewards[t] + gamma * bootstrap - values[t]
        ended = terminated[t] | truncated[t]
        following = delta + gamma * lam * torch.where(ended, 0.0, following)
        advantages[t] = following
    return advantages


class PPOLoss(NamedTuple):
    """The loss to minimise and its parts (detached), each a mean over the minibatch."""

    total: Tensor
    policy: Tensor
    """``-mean(min(ratio * A, clip(ratio) * A))``."""
    value: Tensor
    """``0.5 * mean((V - R)^2)`` (with value clipping, the larger of the two errors)."""
    entropy: Tensor
    approx_kl: Tensor
    """``mean((ratio - 1) - log ratio)``, an estimate of KL(old || new) that is never negative."""
    clip_fraction: Tensor
    """Fraction of samples whose ratio is outside ``1 +- clip_range``."""


def ppo_loss(
    logits: Tensor,
    values: Tensor,
    actions: Tensor,
    old_log_probs: Tensor,
    old_values: Tensor,
    advantages: Tensor,
    returns: Tensor,
    *,
    clip_range: float,
    entropy_coef: float,
    value_coef: float,
    value_clip_range: float | None = None,
    normalize_advantages: bool = True,
) -> PPOLoss:
    """Clipped surrogate + value regression - entropy bonus on one minibatch (PPO paper, eq. 9).

    Shapes: ``logits (B, A)``, the rest ``(B,)``. ``old_log_probs``, ``old_values``,
    ``advantages`` and ``returns`` (= advantages + old values) come from the rollout and are
    constants. With ``ratio = pi(a|s) / pi_old(a|s)``, per sample
    ``-min(ratio * A, clip(ratio, 1 - eps, 1 + eps) * A)``: the pessimistic bound, so a ratio
    that has moved past ``1 +- eps`` in the advantage's favour gets no gradient. The value error
    ``(V - R)^2`` is, with ``value_clip_range``, the larger of it and
    ``(V_old + clip(V - V_old, +-value_clip_range) - R)^2``. ``normalize_advantages``
    standardises ``A`` over the minibatch first (population std, + 1e-8).
    """
    if logits.dim() != 2 or values.shape != logits.shape[:1]:
        raise ValueError(
            "ppo_loss needs logits (B, A) and values (B,); got "
            f"{tuple(logits.shape)} and {tuple(values.shape)}"
        )
    log_probs = F.log_softmax(logits, dim=-1)
    log_ratio = log_probs.gather(-1, actions.long().unsqueeze(-1)).squeeze(-1) - old_log_probs
    ratio = log_ratio.exp()
    adv = advantages.detach()
    if normalize_advantages:
        adv = (adv - adv.mean()) / (adv.std(correction=0) + 1e-8)
    clipped_ratio = ratio.clamp(1.0 - clip_range, 1.0 + clip_range)
    policy_term = -torch.min(ratio * adv, clipped_ratio * adv).mean()
    error = (values - returns).pow(2)
    if value_clip_range is not None:
        moved = (values - old_values).clamp(-value_clip_range, value_clip_range)
        error = torch.max(error, (old_values + moved - returns).pow(2))
    value_term = 0.5 * error.mean()
    entropy = -(log_probs.exp() * log_probs).sum(-1).mean()
    total = policy_term + value_coef * value_term - entropy_coef * entropy
    with torch.no_grad():
        approx_kl = ((ratio - 1.0) - log_ratio).mean()
        # Comparisons, not abs(ratio - 1): a gradient checker would take abs for a kink.
        outside = (ratio < 1.0 - clip_range) | (ratio > 1.0 + clip_range)
        clip_fraction = outside.to(ratio.dtype).mean()
    return PPOLoss(
        total, policy_term.detach(), value_term.detach(), entropy.detach(), approx_kl, clip_fraction
    )


class Batch(NamedTuple):
    """Transitions with what the loss needs of them: ``(T, n_e, ...)`` in a rollout, flat
    ``(B, ...)`` in a minibatch."""

    obs: Tensor
    """The observations acted on (uint8 pixels stay uint8)."""
    actions: Tensor
    """int64 actions taken."""
    log_probs: Tensor
    """log pi_old(a_t | s_t) of the actions taken."""
    values: Tensor
    """V_old(s_t)."""
    advantages: Tensor
    """GAE advantages."""
    returns: Tensor
    """advantages + values: the value targets."""


class PPORollout(NamedTuple):
    """``n_steps`` steps of ``n_e`` envs, played without gradient, on the learner's device."""

    batch: Batch
    """(T, n_e, ...) the transitions, autoreset steps included."""
    rewards: Tensor
    """(T, n_e) float32 rewards."""
    mask: Tensor
    """(T, n_e) bool: False for NEXT_STEP autoreset steps, which are not transitions."""


_network = actor_critic_network("PPO", image_default="nature", init="orthogonal")
"""CleanRL's ``ppo_atari.py``: the Nature CNN for Atari images, orthogonal init (gain sqrt(2),
0.01 in the policy head, 1 in the value head)."""
build_policy = actor_critic_policy_builder(_network)
"""A checkpoint's sampling policy (``agents.policy.PolicyBuilder``): the actor-critic alone."""


class PPOLearner(ActorCriticLearner):
    """PPO on one vector env: a rollout of ``n_steps`` steps of every env without gradient, then
    ``n_epochs x num_minibatches`` updates on it (``ActorCriticLearner`` holds the network,
    sampling, env stepping with its autoreset masks, evaluation policy and checkpoint state;
    ``LearnerBase`` the rest of the runner's protocol).

    The learning rate anneals per optimizer update (``optim.lr_schedule``), the clip range, if
    ``agent.clip_range_final`` is set, by agent steps over the same horizon; both are functions
    of counters in the checkpoint, so resume continues them exactly. Minibatches are shuffled
    with the learner's sampling generator (also checkpointed): a permutation of all
    ``n_steps x n_e`` slots, from which the autoreset steps are dropped, so every rank of a
    data-parallel run draws the same amount of randomness and their action streams stay aligned.

    A minibatch can only come out empty when a rollout holds fewer real transitions than
    ``num_minibatches`` (tiny ``n_steps x n_e``); it is skipped, which a data-parallel run, whose
    ranks must take the same number of updates, cannot afford: keep ``n_steps x n_e`` well
    above ``2 x num_minibatches`` there.

    Host syncs: reading the sampled actions once per step, dropping the autoreset steps once per
    epoch; scalars are read back once per log.
    """

    agent: PPOConfig

    def __init__(
        self,
        cfg: Config,
        device: torch.device,
        logger: Logger,
        dist: DistributedContext | None = None,
    ) -> None:
        agent: PPOConfig = cfg.agent
        super().__init__(
            cfg,
            device,
            logger,
            dist,
            accumulate=(
                "loss",
                "policy_loss",
                "value_loss",
                "entropy",
                "approx_kl",
                "clip_fraction",
                "grad_norm",
            ),
            network=_network,
            rollout_steps=agent.n_steps,
            updates_per_rollout=agent.n_epochs * agent.num_minibatches,
        )
        horizon = cfg.optim.lr_decay_steps or cfg.train.steps
        self.clip_schedule: Schedule = (
            Constant(agent.clip_range)
            if agent.clip_range_final is None
            else Linear(agent.clip_range, agent.clip_range_final, horizon)
        )

    @property
    def clip_range(self) -> float:
        """The surrogate's clip range now (annealed by agent steps with ``clip_range_final``)."""
        return self.clip_schedule(self.env_steps)

    def _extra_scalars(self) -> dict[str, float]:
        return {"train/clip_range": self.clip_range}

    # ------------------------------------------------------------------ rollouts + updates

    def collect(self) -> PPORollout:
        """Play ``n_steps`` steps in all envs with the current policy, then estimate advantages."""
        n_steps, n_envs = self.agent.n_steps, self.num_envs
        record = EnvRecord.empty(n_steps, n_envs)
        obs = torch.empty((n_steps, *self.obs.shape), dtype=self.obs.dtype, device=self.device)
        actions = torch.empty((n_steps, n_envs), dtype=torch.int64, device=self.device)
        log_probs = torch.empty((n_steps, n_envs), device=self.device)
        values = torch.empty((n_steps, n_envs), device=self.device)
        with torch.no_grad():
            for t in range(n_steps):
                obs[t] = self.obs
                logits, values[t] = self.net(self.obs)
                actions[t] = self._sample(logits)
                log_probs[t] = F.log_softmax(logits, -1).gather(-1, actions[t, :, None])[:, 0]
                self._play(record, t, actions[t])
            bootstrap = self.net(self.obs)[1]
        self.env_steps += n_steps * self.total_envs
        rewards, terminated, truncated, mask = record.to(self.device)
        next_values = torch.cat([values[1:], bootstrap.unsqueeze(0)])
        advantages = gae(
            rewards,
            values,
            next_values,
            terminated,
            truncated,
            self.agent.gamma,
            self.agent.gae_lambda,
        )
        batch = Batch(obs, actions, log_probs, values, advantages, advantages + values)
        return PPORollout(batch, rewards, mask)

    def minibatches(self, rollout: PPORollout) -> Iterator[Batch]:
        """``n_epochs`` passes over the rollout's transitions, each in ``num_minibatches``
        shuffled minibatches of (nearly) equal size."""
        flat = [x.flatten(0, 1) for x in rollout.batch]
        real = rollout.mask.flatten()
        for _ in range(self.agent.n_epochs):
            order = torch.randperm(len(real), generator=self.generator, device=self.device)
            order = order[real[order]]
            for index in order.tensor_split(self.agent.num_minibatches):
                if len(index):  # empty only if the rollout has fewer transitions than batches
                    yield Batch(*(x[index] for x in flat))

    def learn_minibatch(self, batch: Batch) -> PPOLoss:
        """One optimizer update on ``batch``."""
        agent = self.agent
        with self.update.capture_activations():  # hooks attach before monitor updates only
            logits, values = self.net(batch.obs)
        loss = ppo_loss(
            logits,
            values,
            batch.actions,
            batch.log_probs,
            batch.values,
            batch.advantages,
            batch.returns,
            clip_range=self.clip_range,
            entropy_coef=agent.entropy_coef,
            value_coef=agent.value_coef,
            value_clip_range=agent.value_clip_range,
            normalize_advantages=agent.normalize_advantages,
        )
        stats = self.update.update(loss.total)
        self._accumulate(
            {
                "loss": loss.total.detach(),
                "policy_loss": loss.policy,
                "value_loss": loss.value,
                "entropy": loss.entropy,
                "approx_kl": loss.approx_kl,
                "clip_fraction": loss.clip_fraction,
                "grad_norm": stats.grad_norm,
            }
        )
        return loss

    def _step(self) -> None:
        """One rollout and its epochs of minibatch updates."""
        for batch in self.minibatches(self.collect()):
            self.learn_minibatch(batch)

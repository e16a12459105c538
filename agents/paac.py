"""PAAC: synchronous parallel advantage actor-critic (Clemente, Castejon and Chandra 2017).

"Efficient Parallel Methods for Deep Reinforcement Learning" (arXiv:1705.04862): ``n_e``
environments are stepped together, one network does a single batched forward pass for all of
them, and after ``t_max`` steps the ``t_max x n_e`` rollout gives one synchronous update (no
stale gradients, unlike A3C). This module holds the two pure functions (:func:`nstep_returns`,
:func:`paac_loss`), the actor-critic network and the learner the runner drives.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor


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
    advantage = (returns - values).detach()
    policy_term = (weight * (-chosen * advantage - entropy_coef * entropy)).sum() / n_envs
    value_term = (weight * (returns - values).pow(2)).sum() / n_envs
    total = policy_term + value_coef * value_term
    mean_entropy = (weight * entropy).sum() / weight.sum().clamp(min=1.0)
    return PAACLoss(total, policy_term.detach(), value_term.detach(), mean_entropy.detach())

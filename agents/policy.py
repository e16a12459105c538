"""Evaluation policies: ``algo`` -> the function that builds a checkpoint's acting network.

Each algorithm module exposes ``build_policy(cfg, learner_state, observation_space,
action_space, device, *, seed=None) -> Policy``, building only what acting needs (no envs, no
replay). This dict is the one place evaluation dispatches on ``agent.algo``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

import gymnasium as gym
import numpy as np
import torch

from agents import dqn, paac
from agents.learner import acting_weights

if TYPE_CHECKING:
    from agents.config import Config


class Policy(Protocol):
    def act(self, obs: np.ndarray, *, greedy: bool = False, epsilon: float = 0.0) -> np.ndarray:
        """Actions ``(batch,)`` for observations ``(batch, *obs_shape)``."""
        ...


class PolicyBuilder(Protocol):
    """An algorithm module's ``build_policy``."""

    def __call__(
        self,
        cfg: Config,
        learner_state: dict[str, Any],
        observation_space: gym.Space,
        action_space: gym.Space,
        device: torch.device,
        *,
        seed: int | None = None,
    ) -> Policy: ...


POLICY_BUILDERS: dict[str, PolicyBuilder] = {
    "dqn": dqn.build_policy,
    "double_dqn": dqn.build_policy,
    "paac": paac.build_policy,
}

ACTING_STATE_KEYS = {
    "dqn": ("q",),
    "double_dqn": ("q",),
    "paac": ("net",),
}
"""The entries of a checkpoint's ``learner`` state that each algorithm's ``build_policy`` reads
(a run with ``train.eval_ema`` keeps the EMA weights in ``learner["update"]["ema"]``, and
``build_policy`` reads those instead: ``agents.learner.acting_weights``)."""


def build_policy(cfg: Config, learner_state: dict[str, Any], observation_space: gym.Space,
                 action_space: gym.Space, device: torch.device, *, seed: int | None = None
                 ) -> Policy:
    """The acting network of ``cfg.algo``, loaded from a checkpoint's ``learner`` state."""
    return POLICY_BUILDERS[cfg.algo](cfg, learner_state, observation_space, action_space,
                                     device, seed=seed)


def policy_only(checkpoint: dict[str, Any]) -> dict[str, Any]:
    """A training checkpoint cut down to what evaluation needs: config, step count, and the
    acting network's weights (no optimizer, target network, replay or env state).

    The result loads wherever a checkpoint is evaluated (``rlkit evaluate FILE --video``); it is
    a few MB for the Atari networks, small enough to commit. It cannot be resumed. A run with
    ``train.eval_ema`` exports the EMA weights (what its evaluations played) as the network.
    """
    algo = checkpoint["config"]["agent"]["algo"]
    learner = checkpoint["learner"]
    return {
        "format": checkpoint["format"],
        "config": checkpoint["config"],
        "policy_only": True,
        "learner": {key: acting_weights(learner, key) for key in ACTING_STATE_KEYS[algo]}
        | {"env_steps": learner.get("env_steps")},
    }

"""Evaluation policies: a checkpoint's acting network, built by its algorithm's policy builder.

Each algorithm module exposes ``build_policy(cfg, learner_state, observation_space,
action_space, device, *, seed=None) -> Policy``, building only what acting needs (no envs, no
replay); ``agents.algorithms`` names it per ``agent.algo``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

import gymnasium as gym
import numpy as np
import torch

from agents.algorithms import algorithm
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


def build_policy(cfg: Config, learner_state: dict[str, Any], observation_space: gym.Space,
                 action_space: gym.Space, device: torch.device, *, seed: int | None = None
                 ) -> Policy:
    """The acting network of ``cfg.algo``, loaded from a checkpoint's ``learner`` state."""
    build = algorithm(cfg.algo).policy_builder()
    return build(cfg, learner_state, observation_space, action_space, device, seed=seed)


def policy_only(checkpoint: dict[str, Any]) -> dict[str, Any]:
    """A training checkpoint cut down to what evaluation needs: config, step count, and the
    acting network's weights (no optimizer, target network, replay or env state).

    The result loads wherever a checkpoint is evaluated (``rlkit evaluate FILE --video``); it is
    a few MB for the Atari networks, small enough to commit. It cannot be resumed. A run with
    ``train.eval_ema`` exports the EMA weights (what its evaluations played) as the network.
    """
    keys = algorithm(checkpoint["config"]["agent"]["algo"]).acting_state
    learner = checkpoint["learner"]
    return {
        "format": checkpoint["format"],
        "config": checkpoint["config"],
        "policy_only": True,
        "learner": {key: acting_weights(learner, key) for key in keys}
        | {"env_steps": learner.get("env_steps")},
    }

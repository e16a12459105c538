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

if TYPE_CHECKING:
    from agents.config import Config


class Policy(Protocol):
    def act(self, obs: np.ndarray, *, greedy: bool = False, epsilon: float = 0.0) -> np.ndarray:
        """Actions ``(batch,)`` for observations ``(batch, *obs_shape)``."""
        ...


POLICY_BUILDERS = {
    "dqn": dqn.build_policy,
    "double_dqn": dqn.build_policy,
    "paac": paac.build_policy,
}


def build_policy(cfg: Config, learner_state: dict[str, Any], observation_space: gym.Space,
                 action_space: gym.Space, device: torch.device, *, seed: int | None = None
                 ) -> Policy:
    """The acting network of ``cfg.algo``, loaded from a checkpoint's ``learner`` state."""
    return POLICY_BUILDERS[cfg.algo](cfg, learner_state, observation_space, action_space,
                                     device, seed=seed)

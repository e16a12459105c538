"""The ``sync`` backend: every env stepped in this process, one after the other."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.vector import AutoresetMode
from gymnasium.vector.utils import batch_space

from envs.guard import GuardedVectorEnv, array_shape
from envs.vector.group import EnvGroup, seeds_for, stack_infos


class InProcessVectorEnv(GuardedVectorEnv):
    """Vector env over ``env_fns`` in this process, gymnasium 1.x NEXT_STEP autoreset.

    Same stepping code as the async workers (``EnvGroup``), so both backends agree step for
    step. Returned arrays are copies; callers may keep them.
    """

    backend = "sync"

    def __init__(self, env_fns: Sequence[Callable[[], gym.Env]]) -> None:
        envs = [fn() for fn in env_fns]
        self.num_envs = len(envs)
        self.single_observation_space = envs[0].observation_space
        self.single_action_space = envs[0].action_space
        self.observation_space = batch_space(self.single_observation_space, self.num_envs)
        self.action_space = batch_space(self.single_action_space, self.num_envs)
        self.metadata = {"autoreset_mode": AutoresetMode.NEXT_STEP}
        self.spec = envs[0].spec
        space = self.single_observation_space
        shape = array_shape(space, "observation")
        self._obs = np.zeros((self.num_envs, *shape), dtype=space.dtype)
        self._rewards = np.zeros(self.num_envs, dtype=np.float64)
        self._terminated = np.zeros(self.num_envs, dtype=bool)
        self._truncated = np.zeros(self.num_envs, dtype=bool)
        self._group = EnvGroup(envs, 0, self._obs, self._rewards, self._terminated, self._truncated)

    @property
    def envs(self) -> list[gym.Env]:
        return self._group.envs

    def _reset(
        self,
        *,
        seed: int | Sequence[int | None] | None = None,
        options: dict[str, Any] | None = None,
    ) -> tuple[np.ndarray, dict[str, Any]]:
        infos = self._group.reset(seeds_for(seed, self.num_envs), options)
        return self._obs.copy(), stack_infos(infos)

    def _step(
        self, actions: Any
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        infos = self._group.step(np.asarray(actions))
        return (
            self._obs.copy(),
            self._rewards.copy(),
            self._terminated.copy(),
            self._truncated.copy(),
            stack_infos(infos),
        )

    def close_extras(self, **kwargs: Any) -> None:
        self._group.close()

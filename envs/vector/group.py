"""Step a group of envs into preallocated arrays with gymnasium 1.x NEXT_STEP autoreset.

Shared by the in-process backend (arrays are plain numpy) and the worker processes of the async
backend (arrays are views of shared memory), so both backends behave identically.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, SupportsFloat

import gymnasium as gym
import numpy as np


class EnvGroup:
    """Envs with global indices ``start .. start + len(envs) - 1`` and their output rows.

    NEXT_STEP autoreset: the step after an env terminated or truncated resets it instead of
    stepping it; that step returns the reset observation, reward 0, terminated and truncated
    False, and the reset info, and ignores the action.
    """

    def __init__(
        self,
        envs: Sequence[gym.Env],
        start: int,
        obs: np.ndarray,
        rewards: np.ndarray,
        terminated: np.ndarray,
        truncated: np.ndarray,
    ) -> None:
        self.envs = list(envs)
        self.start = start
        self.obs, self.rewards = obs, rewards
        self.terminated, self.truncated = terminated, truncated
        self._autoreset = [False] * len(self.envs)
        self.current = start  # global index of the env being worked on, for error messages

    def reset(
        self, seeds: Sequence[int | None], options: dict[str, Any] | None
    ) -> list[dict[str, Any]]:
        """Reset every env (``seeds[j]`` for env j); returns the reset infos."""
        infos = []
        for j, env in enumerate(self.envs):
            self.current = self.start + j
            obs, info = env.reset(seed=seeds[j], options=options)
            self.obs[j] = obs
            infos.append(info)
        self.rewards[:] = 0
        self.terminated[:] = False
        self.truncated[:] = False
        self._autoreset = [False] * len(self.envs)
        return infos

    def step(self, actions: np.ndarray) -> list[dict[str, Any]]:
        """Step (or autoreset) every env with ``actions[j]``; returns the per-env infos."""
        infos = []
        reward: SupportsFloat
        for j, env in enumerate(self.envs):
            self.current = self.start + j
            if self._autoreset[j]:
                obs, info = env.reset()
                reward, terminated, truncated = 0.0, False, False
            else:
                obs, reward, terminated, truncated, info = env.step(actions[j])
            self.obs[j] = obs
            self.rewards[j] = reward
            self.terminated[j] = terminated
            self.truncated[j] = truncated
            self._autoreset[j] = bool(terminated or truncated)
            infos.append(info)
        return infos

    def close(self) -> None:
        for env in self.envs:
            env.close()


def stack_infos(infos: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Per-env info dicts -> gymnasium 1.x vector infos: ``{key: array, "_key": mask}``.

    Numeric values become arrays of their numpy dtype, anything else an object array; nested
    dicts are stacked recursively. Envs without the key have mask False and a zero entry.
    """
    n = len(infos)
    out: dict[str, Any] = {}
    keys = dict.fromkeys(k for info in infos for k in info)
    for key in keys:
        present = [i for i, info in enumerate(infos) if key in info]
        values = [infos[i][key] for i in present]
        if all(isinstance(v, dict) for v in values):
            out[key] = stack_infos([info.get(key, {}) for info in infos])
        else:
            array = np.asarray(values)
            if array.dtype.kind in "biuf":
                column = np.zeros((n, *array.shape[1:]), dtype=array.dtype)
            else:
                column = np.empty(n, dtype=object)
                array = np.empty(len(values), dtype=object)
                array[:] = values
            column[present] = array
            out[key] = column
        mask = np.zeros(n, dtype=bool)
        mask[present] = True
        out[f"_{key}"] = mask
    return out


def seeds_for(seed: int | Sequence[int | None] | None, num_envs: int) -> list[int | None]:
    """gymnasium's convention: an int seeds env i with ``seed + i``; a list gives one per env."""
    if seed is None:
        return [None] * num_envs
    if isinstance(seed, (int, np.integer)):
        return [int(seed) + i for i in range(num_envs)]
    seeds = list(seed)
    if len(seeds) != num_envs:
        raise ValueError(f"seed list has {len(seeds)} entries; it needs one per env ({num_envs})")
    return seeds

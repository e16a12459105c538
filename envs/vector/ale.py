"""The ``ale`` backend: ale-py's native C++ ``AtariVectorEnv`` with our observation and info rules.

What the native env does as our stack does (checked against it frame for frame in the tests):
frame skip with max-pooling, grayscale, INTER_AREA resize, frame stack, no-op starts, FIRE after
reset, sticky actions, the emulator-frame cap, NEXT_STEP autoreset. What this adapter fixes:

- the native stack pads a fresh episode with zero frames; ours repeats the first frame, so the
  padding slots are overwritten with the episode's first frame until real frames fill them;
- the native env runs unclipped and this adapter clips by sign, so ``raw_reward`` is kept;
- infos get gymnasium's ``_key`` masks plus ``raw_reward`` and ``game_over``.

What it cannot honour (``make_vector_env`` raises a ValueError): ``episodic_life=True`` (the
native episodic life restarts the whole game at every lost life) and ``render_mode``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from ale_py.vector_env import AtariVectorEnv
from gymnasium.vector import AutoresetMode

from envs.guard import GuardedVectorEnv
from envs.options import AtariOptions

NO_FRAME_CAP = 2**31 - 1  # the native env reads 0 as "truncate at once"


class AleVectorEnv(GuardedVectorEnv):
    """``make_atari``-equivalent observations and infos from ale-py's threaded vector env,
    for ``options`` with ``episodic_life=False``."""

    backend = "ale"

    def __init__(
        self,
        game: str,
        num_envs: int,
        options: AtariOptions,
        *,
        seed: int | None = None,
        num_threads: int = 0,
    ) -> None:
        if options.episodic_life:
            raise ValueError(
                "AleVectorEnv cannot honour episodic_life=True (the native episodic life "
                "restarts the whole game at every lost life); pass episodic_life=False"
            )
        o = options
        self._env = AtariVectorEnv(
            game,
            num_envs,
            num_threads=num_threads,
            frameskip=o.frame_skip,
            stack_num=o.frame_stack,
            img_height=o.screen_size,
            img_width=o.screen_size,
            grayscale=True,
            maxpool=True,
            noop_max=o.noop_max,
            use_fire_reset=o.fire_reset,
            episodic_life=False,
            reward_clipping=False,
            repeat_action_probability=o.repeat_action_probability,
            max_num_frames_per_episode=o.max_episode_frames or NO_FRAME_CAP,
            autoreset_mode=AutoresetMode.NEXT_STEP,
        )
        self.num_envs = num_envs
        self.single_observation_space = self._env.single_observation_space
        self.single_action_space = self._env.single_action_space
        self.observation_space = self._env.observation_space
        self.action_space = self._env.action_space
        self.metadata = {"autoreset_mode": AutoresetMode.NEXT_STEP}
        self._clip = o.clip_rewards
        self._pending_seed = seed
        self._stack = o.frame_stack
        self._first = np.zeros((num_envs, o.screen_size, o.screen_size), dtype=np.uint8)
        self._age = np.zeros(num_envs, dtype=np.int64)  # agent steps since each env's reset
        self._autoreset = np.zeros(num_envs, dtype=bool)

    def _reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """Reset all envs; env i gets ``seed + i`` (the ``seed`` given at construction if None)."""
        if seed is None:
            seed, self._pending_seed = self._pending_seed, None
        obs, info = self._env.reset(seed=seed, options=options)
        self._first[:] = obs[:, -1]
        self._age[:] = 0
        self._autoreset[:] = False
        self._pad(obs)
        zeros = np.zeros(self.num_envs)
        return obs, self._infos(info, zeros, np.zeros(self.num_envs, dtype=bool))

    def _step(
        self, actions: Any
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        obs, rewards, terminated, truncated, info = self._env.step(
            np.asarray(actions, dtype=np.int64)
        )
        fresh = self._autoreset
        self._age += 1
        self._age[fresh] = 0
        self._first[fresh] = obs[fresh, -1]
        self._pad(obs)
        raw = rewards.astype(np.float64)
        self._autoreset = terminated | truncated
        game_over = self._autoreset.copy()
        reward = np.sign(raw) if self._clip else raw
        return obs, reward, terminated, truncated, self._infos(info, raw, game_over)

    def _pad(self, obs: np.ndarray) -> None:
        """Overwrite the native zero padding of young episodes with their first frame."""
        for i in np.flatnonzero(self._age < self._stack - 1):
            obs[i, : self._stack - 1 - self._age[i]] = self._first[i]

    def _infos(
        self, info: dict[str, Any], raw: np.ndarray, game_over: np.ndarray
    ) -> dict[str, Any]:
        out: dict[str, Any] = {}
        everyone = np.ones(self.num_envs, dtype=bool)
        for key, value in {**info, "raw_reward": raw, "game_over": game_over}.items():
            out[key] = value
            out[f"_{key}"] = everyone
        return out

    def close_extras(self, **kwargs: Any) -> None:
        self._env.close()

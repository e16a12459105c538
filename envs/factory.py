"""``make_atari`` (the preprocessing stack) and ``make_env`` (Atari or any gymnasium id)."""

from __future__ import annotations

from typing import Any

import gymnasium as gym

from envs.guard import EnvGuard
from envs.minatar import is_minatar, make_minatar
from envs.options import ATARI_OPTION_NAMES, AtariOptions
from envs.registry import canonical_atari_id, is_atari, not_atari_error, unknown_env_error
from envs.wrappers import (
    ClipReward,
    EpisodicLife,
    FireReset,
    FrameLimit,
    FrameSkip,
    FrameStack,
    GrayscaleResize,
    NoopReset,
)


def make_atari(
    env_id: str, *, seed: int | None = None, render_mode: str | None = None, **options: Any
) -> gym.Env:
    """An Atari env with the standard DQN preprocessing (see ``envs.wrappers`` for each step).

    ``options`` are ``AtariOptions``' fields, each defaulting as there: ``frame_skip=4,
    frame_stack=4, screen_size=84, noop_max=30, episodic_life=True, clip_rewards=True,
    fire_reset=True, repeat_action_probability=0.0, max_episode_frames=108_000``; an unknown
    or out-of-range option raises a ValueError naming it.
    ``env_id`` may be ``"ALE/Pong-v5"``, ``"PongNoFrameskip-v4"`` or ``"Pong"``. The ALE env is
    always made with ``frameskip=1``, sticky actions from ``repeat_action_probability`` and no
    frame cap of its own (``FrameLimit`` applies ``max_episode_frames``; None disables it).
    Observations are uint8 ``(frame_stack, screen_size, screen_size)``, oldest frame first.
    ``EnvGuard`` sits outermost: an invalid action or a step after ``close()`` is refused.
    ``seed`` seeds the env with one ``reset(seed=seed)`` here and seeds the action space.
    For evaluation use ``episodic_life=False, clip_rewards=False``.
    """
    canonical = canonical_atari_id(env_id)
    if canonical is None:
        raise not_atari_error(env_id)
    o = AtariOptions.from_kwargs(options)
    env: gym.Env = gym.make(
        canonical,
        frameskip=1,
        repeat_action_probability=o.repeat_action_probability,
        max_num_frames_per_episode=0,  # 0 = no ALE cap; FrameLimit below does it
        obs_type="grayscale",  # ALE's palette grayscale, as AtariPreprocessing pools
        render_mode=render_mode,
        disable_env_checker=True,
    )
    if o.max_episode_frames is not None:
        env = FrameLimit(env, o.max_episode_frames)
    if o.noop_max > 0:
        env = NoopReset(env, o.noop_max)
    env = FrameSkip(env, o.frame_skip)
    if o.episodic_life:
        env = EpisodicLife(env)
    meanings = env.unwrapped.get_action_meanings()  # type: ignore[attr-defined]
    if o.fire_reset and "FIRE" in meanings:
        env = FireReset(env)
    env = GrayscaleResize(env, o.screen_size)
    if o.clip_rewards:
        env = ClipReward(env)
    env = EnvGuard(FrameStack(env, o.frame_stack))
    _seed(env, seed)
    return env


def make_env(env_id: str, **kwargs: Any) -> gym.Env:
    """Atari ids go through ``make_atari(env_id, **kwargs)``, MinAtar ids (``MinAtar/Breakout-v0``
    ...) through ``envs.minatar.make_minatar(env_id, **kwargs)``; other registered ids are made
    as is.

    For other ids, ``seed`` is applied like in ``make_atari``, the remaining kwargs go to
    ``gymnasium.make`` and ``EnvGuard`` wraps the result; Atari-only options (``frame_stack``
    ...) raise a ValueError for every non-Atari id.
    Unknown ids raise a ValueError that suggests the closest known ids; a MinAtar id without the
    ``minatar`` package raises ``envs.minatar.MissingExtraError`` naming the extra to install.
    """
    if is_atari(env_id):
        return make_atari(env_id, **kwargs)
    minatar = is_minatar(env_id)
    if not minatar and env_id not in gym.registry:
        raise unknown_env_error(env_id)
    misplaced = sorted(set(ATARI_OPTION_NAMES) & kwargs.keys())
    if misplaced:
        raise ValueError(
            f"option(s) {', '.join(misplaced)} apply only to Atari ids, not {env_id!r}; "
            "remove them for this env"
        )
    if minatar:
        return make_minatar(env_id, **kwargs)
    seed = kwargs.pop("seed", None)
    env = EnvGuard(gym.make(env_id, **kwargs))
    _seed(env, seed)
    return env


def _seed(env: gym.Env, seed: int | None) -> None:
    """Seed the env's RNGs now, so that the first plain ``reset()`` is reproducible."""
    if seed is not None:
        env.reset(seed=seed)
        env.action_space.seed(seed)

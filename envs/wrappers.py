"""The Atari preprocessing stack, one public ``gymnasium.Wrapper`` per step.

Each wrapper works on its own; ``envs.make_atari`` composes them (in this order, innermost first):

``FrameLimit -> NoopReset -> FrameSkip -> EpisodicLife -> FireReset -> GrayscaleResize ->
ClipReward -> FrameStack``

The per-frame wrappers (``FrameLimit``, ``NoopReset``) sit below ``FrameSkip`` so that they see
every emulator frame. With ``noop_max=0`` and no life/fire/clip wrappers the stack reproduces
gymnasium's ``AtariPreprocessing`` + ``FrameStackObservation`` bit for bit (tested), including
its treatment of the step on which an episode ends.

Two info keys are guaranteed on every step of the composed stack (``FrameSkip`` writes them, the
wrappers above keep them): ``info["raw_reward"]`` (float, the unclipped game reward of the agent
step) and ``info["game_over"]`` (bool, the real game ended, as opposed to a life-loss episode end).
Reset infos carry ``raw_reward=0.0`` and ``game_over=False`` so that vector-env info arrays always
hold both keys.

Every wrapper records its constructor arguments (``gymnasium.utils.RecordConstructorArgs``), so
``env.spec`` describes the whole stack and ``gymnasium.make(env.spec)`` rebuilds it.
"""

from __future__ import annotations

from typing import Any, SupportsFloat

import cv2
import gymnasium as gym
import numpy as np
from gymnasium.spaces import Box

StepResult = tuple[Any, SupportsFloat, bool, bool, dict[str, Any]]


def _reset_info(info: dict[str, Any]) -> dict[str, Any]:
    """A reset is not an agent step: it earns no reward and ends no game."""
    info["raw_reward"] = 0.0
    info["game_over"] = False
    return info


def _ale(env: gym.Env, wrapper: str) -> Any:
    """The ALE interface under ``env``; wrappers that read lives or frame counters need it."""
    ale = getattr(env.unwrapped, "ale", None)
    if ale is None:
        raise ValueError(
            f"{wrapper} needs an ALE env (ale_py AtariEnv underneath), got {env.unwrapped!r}; "
            "make the env with gymnasium.make('ALE/<Game>-v5', frameskip=1)"
        )
    return ale


def _action_index(env: gym.Env, meaning: str) -> int | None:
    """Index of an action meaning such as 'FIRE' in the env's action set, or None if absent."""
    meanings = env.unwrapped.get_action_meanings()  # type: ignore[attr-defined]
    return meanings.index(meaning) if meaning in meanings else None


class FrameLimit(gym.Wrapper, gym.utils.RecordConstructorArgs):
    """Truncate an episode once the emulator has run ``max_frames`` frames (default 108,000).

    Counting emulator frames (not agent steps) keeps the cap at 30 minutes of play whatever the
    frame skip (Machado et al. 2018). The count is ALE's own episode frame number, which also
    counts no-op and fire frames played during resets. Put it directly on the frameskip=1 ALE
    env so the cap falls on the exact frame, as ALE's ``max_num_frames_per_episode`` does.
    """

    def __init__(self, env: gym.Env, max_frames: int = 108_000) -> None:
        gym.utils.RecordConstructorArgs.__init__(self, max_frames=max_frames)
        gym.Wrapper.__init__(self, env)
        if max_frames < 1:
            raise ValueError(f"max_frames must be >= 1, got {max_frames}")
        self.max_frames = int(max_frames)
        self._ale_interface = _ale(env, "FrameLimit")

    def step(self, action: Any) -> StepResult:
        obs, reward, terminated, truncated, info = self.env.step(action)
        return obs, reward, terminated, truncated or self.reached(), info

    def reached(self) -> bool:
        """The emulator has played ``max_frames`` frames of this episode."""
        return self._ale_interface.getEpisodeFrameNumber() >= self.max_frames


class NoopReset(gym.Wrapper, gym.utils.RecordConstructorArgs):
    """After each reset, play a random number of NOOP frames in ``[1, noop_max]``.

    Random no-op starts (Mnih et al. 2015) vary the start state of deterministic games. The
    count is drawn from the base env's ``np_random`` (seeded by ``reset(seed=...)``), as
    gymnasium's ``AtariPreprocessing`` does. Put it below ``FrameSkip``: each no-op is one frame.
    """

    def __init__(self, env: gym.Env, noop_max: int = 30) -> None:
        gym.utils.RecordConstructorArgs.__init__(self, noop_max=noop_max)
        gym.Wrapper.__init__(self, env)
        if noop_max < 0:
            raise ValueError(f"noop_max must be >= 0, got {noop_max}")
        noop = _action_index(env, "NOOP")
        if noop_max > 0 and noop is None:
            raise ValueError("NoopReset needs a 'NOOP' action; this game has none, use noop_max=0")
        self.noop_max = int(noop_max)
        self._noop = noop or 0

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[Any, dict[str, Any]]:
        obs, info = self.env.reset(seed=seed, options=options)
        if self.noop_max == 0:
            return obs, info
        noops = int(self.env.unwrapped.np_random.integers(1, self.noop_max + 1))
        for _ in range(noops):
            obs, _, terminated, truncated, step_info = self.env.step(self._noop)
            info.update(step_info)
            if terminated or truncated:
                obs, info = self.env.reset(options=options)
        return obs, info


class _WrappedFrames:
    """Frames for ``FrameSkip`` from ``env.step``: works on any env with Box observations."""

    def __init__(self, env: gym.Env) -> None:
        self.env = env
        self._obs: Any = None
        self._info: dict[str, Any] = {}

    def advance(self, action: Any) -> tuple[float, bool, bool]:
        """Play one frame; its reward and whether the episode terminated or was truncated."""
        self._obs, reward, terminated, truncated, self._info = self.env.step(action)
        return float(reward), bool(terminated), bool(truncated)

    def capture(self, out: np.ndarray) -> None:
        """Copy the current frame into ``out``."""
        out[...] = self._obs

    def info(self) -> dict[str, Any]:
        """The info of the last frame played."""
        return self._info


_Checker = gym.wrappers.OrderEnforcing | gym.wrappers.PassiveEnvChecker
"""gymnasium's checking wrappers, which pass steps through once their checks are done."""


class _EmulatorFrames:
    """Frames for ``FrameSkip`` straight from the emulator, when the env below is a bare ALE env.

    ``AtariEnv.step`` copies out a screen on every frame and every wrapper in between adds a
    Python call, but ``FrameSkip`` needs the screens of the last two frames only. When nothing
    between ``FrameSkip`` and the ``AtariEnv`` changes a step (``FrameLimit``, which this
    applies itself; ``NoopReset``, which acts at reset; gymnasium's ``OrderEnforcing`` and
    ``PassiveEnvChecker`` once their checks are done) this plays the frames on the emulator and
    copies the two screens into the pooling buffers: about 12% less time per agent step on
    Pong here, and the same results bit for bit (tested against ``_WrappedFrames``).
    """

    def __init__(self, atari: Any, limits: list[FrameLimit], checks: list[_Checker]) -> None:
        self._ale = atari.ale
        self._action_set = atari._action_set
        self._get_info = atari._get_info
        self._limits = limits
        self._checks = checks
        grayscale = atari._obs_type == "grayscale"
        self.capture = self._ale.getScreenGrayscale if grayscale else self._ale.getScreenRGB

    @classmethod
    def below(cls, env: gym.Env) -> _EmulatorFrames | None:
        """The emulator under ``env`` if every layer above it is known to pass steps through."""
        limits: list[FrameLimit] = []
        checks: list[_Checker] = []
        layer = env
        while isinstance(layer, gym.Wrapper):
            if isinstance(layer, FrameLimit):
                limits.append(layer)
            elif isinstance(layer, (gym.wrappers.OrderEnforcing, gym.wrappers.PassiveEnvChecker)):
                checks.append(layer)
            elif not isinstance(layer, NoopReset):
                return None
            layer = layer.env
        plain = (
            type(layer).__name__ == "AtariEnv"
            and getattr(layer, "_frameskip", None) == 1
            and getattr(layer, "continuous", True) is False
            and getattr(layer, "sound_obs", True) is False
            and getattr(layer, "_obs_type", None) in ("grayscale", "rgb")
            and all(hasattr(layer, a) for a in ("ale", "_action_set", "_get_info"))
        )
        return cls(layer, limits, checks) if plain else None

    def ready(self) -> bool:
        """gymnasium's checkers are done: reset came first and the first steps were checked."""
        for check in self._checks:
            if isinstance(check, gym.wrappers.OrderEnforcing):
                if not check.has_reset:
                    return False
            elif not (check.checked_step and check.checked_data_reuse):
                return False
        return True

    def advance(self, action: Any) -> tuple[float, bool, bool]:
        """As ``AtariEnv.step`` with ``frameskip=1`` and the ``FrameLimit`` checks, minus the
        screen copy."""
        reward = self._ale.act(self._action_set[action], 1.0)
        terminated = self._ale.game_over(with_truncation=False)
        truncated = self._ale.game_truncated() or any(limit.reached() for limit in self._limits)
        return float(reward), terminated, truncated

    def info(self) -> dict[str, Any]:
        return self._get_info()


class FrameSkip(gym.Wrapper, gym.utils.RecordConstructorArgs):
    """Repeat each action ``skip`` times, sum the rewards, max-pool the last two frames.

    Max-pooling removes the flicker of sprites drawn on alternate frames (Mnih et al. 2015).
    The pooling buffers follow gymnasium's ``AtariPreprocessing`` exactly, including the step on
    which the episode ends: frames after the end are not captured, so that step's observation
    pools the most recently captured frames. Writes ``info["raw_reward"]`` (the summed reward)
    and ``info["game_over"]`` (the env below terminated or truncated). Directly on an ALE env
    it plays the frames on the emulator itself (see ``_EmulatorFrames``).
    """

    def __init__(self, env: gym.Env, skip: int = 4) -> None:
        gym.utils.RecordConstructorArgs.__init__(self, skip=skip)
        gym.Wrapper.__init__(self, env)
        if skip < 1:
            raise ValueError(f"skip must be >= 1, got {skip}")
        space = env.observation_space
        if not isinstance(space, Box):
            raise ValueError(f"FrameSkip needs a Box observation space, got {space}")
        self.skip = int(skip)
        # [0]: last frame, pooled in place; [1]: second-to-last frame.
        self._frames = np.zeros((2, *space.shape), dtype=space.dtype)
        self._wrapped = _WrappedFrames(env)
        self._emulator = _EmulatorFrames.below(env)

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[Any, dict[str, Any]]:
        obs, info = self.env.reset(seed=seed, options=options)
        self._frames[0] = obs
        self._frames[1] = 0
        return self._frames[0].copy(), _reset_info(info)

    def step(self, action: Any) -> StepResult:
        source: _WrappedFrames | _EmulatorFrames = self._wrapped
        if self._emulator is not None and self._emulator.ready():
            source = self._emulator
        total = 0.0
        terminated = truncated = False
        last = self.skip - 1
        for t in range(self.skip):
            reward, terminated, truncated = source.advance(action)
            total += reward
            if terminated or truncated:
                break
            if t == last - 1:
                source.capture(self._frames[1])
            elif t == last:
                source.capture(self._frames[0])
        if self.skip > 1:
            np.maximum(self._frames[0], self._frames[1], out=self._frames[0])
        info = source.info()
        info["raw_reward"] = total
        info["game_over"] = terminated or truncated
        return self._frames[0].copy(), total, terminated, truncated, info


class EpisodicLife(gym.Wrapper, gym.utils.RecordConstructorArgs):
    """End the training episode when a life is lost; reset the game only when it is really over.

    Mnih et al. (2015) end episodes at life loss during training. ``reset()`` after a life loss
    plays one NOOP step instead of restarting the game (a real reset happens when the game is
    over, when a seed is given, or if that NOOP step itself ends the game).
    ``info["game_over"]`` tells a life loss (False) from the end of the game (True).
    """

    def __init__(self, env: gym.Env) -> None:
        gym.utils.RecordConstructorArgs.__init__(self)
        gym.Wrapper.__init__(self, env)
        self._ale_interface = _ale(env, "EpisodicLife")
        self._noop = _action_index(env, "NOOP") or 0
        self._lives = 0
        self._game_over = True

    def step(self, action: Any) -> StepResult:
        obs, reward, terminated, truncated, info = self.env.step(action)
        self._game_over = bool(terminated or truncated)
        info.setdefault("game_over", self._game_over)
        lives = self._ale_interface.lives()
        # Games that count down to 0 end on their own; only 0 < lives < before is a life loss.
        if 0 < lives < self._lives:
            terminated = True
        self._lives = lives
        return obs, reward, terminated, truncated, info

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[Any, dict[str, Any]]:
        if self._game_over or seed is not None:
            obs, info = self.env.reset(seed=seed, options=options)
        else:
            obs, _, terminated, truncated, info = self.env.step(self._noop)
            if terminated or truncated:
                obs, info = self.env.reset(options=options)
        self._lives = self._ale_interface.lives()
        self._game_over = False
        return obs, _reset_info(info)


class FireReset(gym.Wrapper, gym.utils.RecordConstructorArgs):
    """Press FIRE after each reset, in games whose action meanings contain FIRE.

    Games such as Breakout wait for FIRE to launch the ball; without it an agent can stall for a
    whole episode. In games without FIRE this wrapper changes nothing.
    """

    def __init__(self, env: gym.Env) -> None:
        gym.utils.RecordConstructorArgs.__init__(self)
        gym.Wrapper.__init__(self, env)
        self.fire_action = _action_index(env, "FIRE")

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[Any, dict[str, Any]]:
        obs, info = self.env.reset(seed=seed, options=options)
        if self.fire_action is None:
            return obs, info
        obs, _, terminated, truncated, step_info = self.env.step(self.fire_action)
        if terminated or truncated:
            obs, step_info = self.env.reset(options=options)
        info.update(step_info)
        return obs, _reset_info(info)


class GrayscaleResize(gym.ObservationWrapper, gym.utils.RecordConstructorArgs):
    """Convert frames to grayscale (if RGB) and resize to ``screen_size`` with ``INTER_AREA``.

    ``make_atari`` asks ALE for grayscale frames (ALE's palette, as ``AtariPreprocessing`` uses)
    so that max-pooling happens on grayscale frames like the reference; RGB input is converted
    with OpenCV's ITU-R 601 weights. Area interpolation matches gymnasium's preprocessing.
    """

    def __init__(self, env: gym.Env, screen_size: int = 84) -> None:
        gym.utils.RecordConstructorArgs.__init__(self, screen_size=screen_size)
        gym.ObservationWrapper.__init__(self, env)
        if screen_size < 8:
            raise ValueError(f"screen_size must be >= 8, got {screen_size}")
        space = env.observation_space
        if not (
            isinstance(space, Box)
            and space.dtype == np.uint8
            and (len(space.shape) == 2 or (len(space.shape) == 3 and space.shape[2] == 3))
        ):
            raise ValueError(f"GrayscaleResize needs uint8 (H, W) or (H, W, 3) frames, got {space}")
        self.screen_size = int(screen_size)
        self._rgb = len(space.shape) == 3
        self.observation_space = Box(0, 255, (screen_size, screen_size), np.uint8)

    def observation(self, observation: np.ndarray) -> np.ndarray:
        if self._rgb:
            observation = cv2.cvtColor(observation, cv2.COLOR_RGB2GRAY)
        return cv2.resize(
            observation, (self.screen_size, self.screen_size), interpolation=cv2.INTER_AREA
        )


class ClipReward(gym.Wrapper, gym.utils.RecordConstructorArgs):
    """Replace each reward by its sign; keep the unclipped reward in ``info["raw_reward"]``.

    Sign clipping lets one learning rate serve games with very different score scales (Mnih et
    al. 2015); the raw reward stays available so that returns are reported in game score.
    """

    def __init__(self, env: gym.Env) -> None:
        gym.utils.RecordConstructorArgs.__init__(self)
        gym.Wrapper.__init__(self, env)

    def step(self, action: Any) -> StepResult:
        obs, reward, terminated, truncated, info = self.env.step(action)
        reward = float(reward)
        info.setdefault("raw_reward", reward)
        return obs, float((reward > 0) - (reward < 0)), terminated, truncated, info


class FrameStack(gym.Wrapper, gym.utils.RecordConstructorArgs):
    """Stack the last ``num_stack`` observations on a new leading axis, oldest first.

    After a reset every slot holds a copy of the first observation. The stack lives in one
    contiguous buffer that is shifted in place; each step returns a fresh copy, so callers may
    keep observations across steps.
    """

    def __init__(self, env: gym.Env, num_stack: int = 4) -> None:
        gym.utils.RecordConstructorArgs.__init__(self, num_stack=num_stack)
        gym.Wrapper.__init__(self, env)
        if num_stack < 1:
            raise ValueError(f"num_stack must be >= 1, got {num_stack}")
        space = env.observation_space
        if not isinstance(space, Box):
            raise ValueError(f"FrameStack needs a Box observation space, got {space}")
        self.num_stack = int(num_stack)
        low = np.repeat(space.low[None], num_stack, axis=0)
        high = np.repeat(space.high[None], num_stack, axis=0)
        self.observation_space = Box(low, high, dtype=space.dtype)
        self._stack = np.zeros(self.observation_space.shape, dtype=space.dtype)

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        obs, info = self.env.reset(seed=seed, options=options)
        self._stack[:] = obs
        return self._stack.copy(), info

    def step(self, action: Any) -> StepResult:
        obs, reward, terminated, truncated, info = self.env.step(action)
        self._stack[:-1] = self._stack[1:]
        self._stack[-1] = obs
        return self._stack.copy(), reward, terminated, truncated, info

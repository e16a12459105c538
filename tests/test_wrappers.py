"""Each Atari wrapper alone, and the whole stack against gymnasium's reference preprocessing."""

from __future__ import annotations

from typing import Any

import ale_py
import cv2
import gymnasium as gym
import numpy as np
import pytest
from gymnasium.spaces import Box, Discrete
from gymnasium.wrappers import AtariPreprocessing, FrameStackObservation

from envs import (
    ClipReward,
    EpisodicLife,
    FireReset,
    FrameLimit,
    FrameSkip,
    FrameStack,
    GrayscaleResize,
    NoopReset,
    make_atari,
)

gym.register_envs(ale_py)


def ale_env(env_id: str = "ALE/Pong-v5", **kwargs: Any) -> gym.Env:
    return gym.make(env_id, frameskip=1, repeat_action_probability=0.0, **kwargs)


def reference(env_id: str, **kwargs: Any) -> gym.Env:
    """gymnasium's own Atari stack, which ours matches bit for bit."""
    return FrameStackObservation(
        AtariPreprocessing(ale_env(env_id, **kwargs), noop_max=0, frame_skip=4, screen_size=84), 4
    )


class ScriptedEnv(gym.Env):
    """Frames filled with the step count; rewards from a script; ends after ``len(rewards)``."""

    def __init__(self, rewards: list[float], shape: tuple[int, ...] = (6, 6)) -> None:
        self.rewards = rewards
        self.observation_space = Box(0, 255, shape, np.uint8)
        self.action_space = Discrete(2)
        self.t = 0

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        self.t = 0
        return np.zeros(self.observation_space.shape, np.uint8), {}

    def step(self, action: Any):
        reward = self.rewards[self.t]
        self.t += 1
        obs = np.full(self.observation_space.shape, self.t, np.uint8)
        return obs, reward, self.t == len(self.rewards), False, {}


class ActionLog(gym.Wrapper):
    """Records every action that reaches the base env."""

    def __init__(self, env: gym.Env) -> None:
        super().__init__(env)
        self.actions: list[int] = []

    def step(self, action: Any):
        self.actions.append(int(action))
        return self.env.step(action)


# --- the bit-exact promise ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("env_id", "steps"),
    [("ALE/Pong-v5", 2000), ("ALE/Breakout-v5", 2000), ("ALE/SpaceInvaders-v5", 2000)],
)
def test_stack_matches_gymnasium_reference_step_for_step(env_id: str, steps: int) -> None:
    ours = make_atari(env_id, noop_max=0, episodic_life=False, clip_rewards=False, fire_reset=False)
    ref = reference(env_id)
    ours_obs, _ = ours.reset(seed=11)
    ref_obs, _ = ref.reset(seed=11)
    np.testing.assert_array_equal(ours_obs, ref_obs)
    rng = np.random.default_rng(0)
    resets = 0
    for t in range(steps):
        action = int(rng.integers(ref.action_space.n))
        o_obs, o_rew, o_term, o_trunc, _ = ours.step(action)
        r_obs, r_rew, r_term, r_trunc, _ = ref.step(action)
        assert (o_rew, o_term, o_trunc) == (r_rew, r_term, r_trunc), f"step {t}"
        assert np.array_equal(o_obs, r_obs), f"observation differs at step {t}"
        if r_term or r_trunc:
            resets += 1
            np.testing.assert_array_equal(ours.reset()[0], ref.reset()[0])
    assert resets >= 2, "the comparison must cross episode boundaries"


def test_frame_cap_truncates_on_the_same_step_as_ale_native_cap() -> None:
    ours = make_atari(
        "Breakout",
        noop_max=0,
        episodic_life=False,
        clip_rewards=False,
        fire_reset=False,
        max_episode_frames=202,  # not a multiple of 4: the cap falls inside a skipped step
    )
    ref = reference("ALE/Breakout-v5", max_num_frames_per_episode=202)
    ours.reset(seed=0)
    ref.reset(seed=0)
    for t in range(51):
        o = ours.step(1)
        r = ref.step(1)
        assert np.array_equal(o[0], r[0]) and o[1:4] == r[1:4], f"step {t}"
    assert o[3] is True and o[2] is False
    assert o[4]["episode_frame_number"] == 202 and o[4]["game_over"] is True


# --- each wrapper alone -------------------------------------------------------------------------


def test_frame_limit_truncates_at_exactly_max_frames() -> None:
    env = FrameLimit(ale_env(max_num_frames_per_episode=0), max_frames=37)
    env.reset(seed=0)
    truncated = [env.step(0)[3] for _ in range(37)]
    assert truncated == [False] * 36 + [True]
    with pytest.raises(ValueError, match="needs an ALE env"):
        FrameLimit(gym.make("CartPole-v1"), 10)


def test_noop_reset_plays_between_1_and_noop_max_noops() -> None:
    log = ActionLog(ale_env())
    env = NoopReset(log, noop_max=5)
    oracle = ale_env()
    env.reset(seed=4)
    oracle.reset(seed=4)
    oracle.unwrapped.np_random.integers(1, 6)
    counts = []
    for _ in range(40):
        log.actions.clear()
        _, info = env.reset()
        counts.append(len(log.actions))
        assert set(log.actions) == {0} and info["episode_frame_number"] == counts[-1]
        # the count is the base env's seeded draw, as in gymnasium's AtariPreprocessing
        assert counts[-1] == oracle.unwrapped.np_random.integers(1, 6)
    assert set(counts) == {1, 2, 3, 4, 5}
    log.actions.clear()
    NoopReset(log, noop_max=0).reset(seed=0)
    assert log.actions == []


def test_frame_skip_sums_rewards_and_pools_the_last_two_frames() -> None:
    env = FrameSkip(ale_env(obs_type="grayscale"), skip=4)
    oracle = ale_env(obs_type="grayscale")
    env.reset(seed=3)
    oracle.reset(seed=3)
    rng = np.random.default_rng(1)
    rewarded = 0
    for _ in range(300):
        action = int(rng.integers(6))
        frames, total = [], 0.0
        for _ in range(4):
            frame, reward, *_ = oracle.step(action)
            frames.append(frame)
            total += reward
        obs, reward, terminated, truncated, info = env.step(action)
        np.testing.assert_array_equal(obs, np.maximum(frames[-1], frames[-2]))
        assert reward == total == info["raw_reward"] and info["game_over"] is False
        rewarded += reward != 0
    assert rewarded > 0, "the oracle must have seen rewards to check their sum"


@pytest.mark.parametrize(
    ("game", "how_episodes_end"), [("ALE/Pong-v5", "truncated"), ("ALE/Breakout-v5", "terminated")]
)
def test_frame_skip_on_the_emulator_matches_the_env_step_path(
    game: str, how_episodes_end: str
) -> None:
    # FrameSkip plays frames on the emulator itself when only pass-through wrappers sit below
    # it; a plain gym.Wrapper in between forces the env.step path. Sticky actions, game overs
    # and a frame cap that falls inside an agent step must all come out the same.
    def stack(force_env_step: bool) -> FrameSkip:
        base = gym.make(game, frameskip=1, repeat_action_probability=0.25, obs_type="grayscale")
        below: gym.Env = FrameLimit(base, 1_498)  # 1,498 is not a multiple of the skip
        return FrameSkip(gym.Wrapper(below) if force_env_step else below, 4)

    fast, slow = stack(False), stack(True)
    assert fast._emulator is not None and slow._emulator is None
    rng = np.random.default_rng(0)
    ends = {"terminated": 0, "truncated": 0}
    for episode in range(4):
        assert np.array_equal(fast.reset(seed=episode)[0], slow.reset(seed=episode)[0])
        while True:
            action = int(rng.integers(fast.action_space.n))
            got, want = fast.step(action), slow.step(action)
            np.testing.assert_array_equal(got[0], want[0])
            assert got[1:] == want[1:]
            assert type(got[1]) is float and type(got[4]["game_over"]) is bool
            if got[2] or got[3]:
                ends["terminated" if got[2] else "truncated"] += 1
                break
    assert ends[how_episodes_end] > 0
    fresh = FrameSkip(FrameLimit(gym.make(game, frameskip=1)), 4)
    with pytest.raises(gym.error.ResetNeeded):
        fresh.step(0)  # gymnasium's reset-first check still applies


def test_fire_reset_presses_fire_only_in_games_with_fire() -> None:
    breakout = ActionLog(ale_env("ALE/Breakout-v5"))
    env = FireReset(breakout)
    env.reset(seed=0)
    assert breakout.actions == [env.unwrapped.get_action_meanings().index("FIRE")]
    freeway = ActionLog(ale_env("ALE/Freeway-v5"))
    assert "FIRE" not in freeway.unwrapped.get_action_meanings()
    env = FireReset(freeway)
    _, info = env.reset(seed=0)
    assert freeway.actions == [] and env.fire_action is None


def test_episodic_life_ends_episodes_on_life_loss_but_resets_only_at_game_over() -> None:
    env = EpisodicLife(FrameSkip(ale_env("ALE/Breakout-v5"), 4))
    ale = env.unwrapped.ale
    env.reset(seed=0)
    rng = np.random.default_rng(0)
    life_losses = game_overs = 0
    while game_overs < 2:
        lives_before = ale.lives()
        _, _, terminated, truncated, info = env.step(int(rng.integers(4)))
        if not (terminated or truncated):
            assert info["game_over"] is False
            continue
        if info["game_over"]:
            game_overs += 1
            assert ale.game_over()
            _, reset_info = env.reset()
            assert ale.lives() == 5 and reset_info["episode_frame_number"] < 10
        else:
            life_losses += 1
            assert 0 < ale.lives() < lives_before and not ale.game_over()
            frame = ale.getEpisodeFrameNumber()
            env.reset()
            assert ale.lives() == lives_before - 1, "a life loss must not restart the game"
            assert ale.getEpisodeFrameNumber() == frame + 4, "reset after life loss is one NOOP"
    assert life_losses >= 4


def test_clip_reward_keeps_sign_and_raw_reward() -> None:
    env = ClipReward(ScriptedEnv([-3.0, 0.0, 0.5, 2.0, -0.25]))
    env.reset()
    results = [env.step(0) for _ in range(5)]
    assert [r[1] for r in results] == [-1.0, 0.0, 1.0, 1.0, -1.0]
    assert [r[4]["raw_reward"] for r in results] == [-3.0, 0.0, 0.5, 2.0, -0.25]


def test_frame_stack_is_oldest_first_and_reset_fills_with_the_first_frame() -> None:
    env = FrameStack(ScriptedEnv([0.0] * 6), num_stack=4)
    assert env.observation_space.shape == (4, 6, 6)
    obs, _ = env.reset()
    assert obs.dtype == np.uint8 and obs.shape == (4, 6, 6)
    assert [int(f[0, 0]) for f in obs] == [0, 0, 0, 0]
    kept = [env.step(0)[0] for _ in range(5)]
    assert [int(f[0, 0]) for f in kept[0]] == [0, 0, 0, 1]
    assert [int(f[0, 0]) for f in kept[4]] == [2, 3, 4, 5]
    assert [int(f[0, 0]) for f in kept[1]] == [0, 0, 1, 2], "returned stacks must be copies"
    with pytest.raises(ValueError, match="num_stack"):
        FrameStack(ScriptedEnv([0.0]), num_stack=0)


def test_grayscale_resize_is_area_averaging() -> None:
    rng = np.random.default_rng(0)
    frame = rng.integers(0, 256, (168, 168), dtype=np.uint8)
    env = GrayscaleResize(ScriptedEnv([0.0], shape=(168, 168)), screen_size=84)
    # an exact 2x downscale with INTER_AREA is the mean of each 2x2 block
    blocks = frame.reshape(84, 2, 84, 2).astype(np.float64).mean(axis=(1, 3))
    out = env.observation(frame)
    assert out.shape == (84, 84) and out.dtype == np.uint8
    assert np.abs(out.astype(np.float64) - blocks).max() <= 0.5 + 1e-9
    rgb = rng.integers(0, 256, (168, 168, 3), dtype=np.uint8)
    rgb_env = GrayscaleResize(ScriptedEnv([0.0], shape=(168, 168, 3)), screen_size=84)
    gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    np.testing.assert_array_equal(rgb_env.observation(rgb), env.observation(gray))
    with pytest.raises(ValueError, match="screen_size"):
        GrayscaleResize(ScriptedEnv([0.0]), screen_size=7)

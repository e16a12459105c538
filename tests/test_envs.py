"""make_atari / make_env / is_atari: id spellings, options, info keys, seeding, bad input."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.error import ClosedEnvironmentError
from gymnasium.utils.env_checker import check_env

from envs import is_atari, make_atari, make_env


def rollout(env, steps: int, seed: int | None = None) -> list:
    obs, _ = env.reset(seed=seed)
    out = [obs]
    rng = np.random.default_rng(0)
    for _ in range(steps):
        obs, reward, terminated, truncated, _ = env.step(int(rng.integers(env.action_space.n)))
        out += [obs, reward, terminated, truncated]
        if terminated or truncated:
            out.append(env.reset()[0])
    return out


def assert_same(a: list, b: list) -> None:
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        assert np.array_equal(x, y)


def test_three_id_spellings_make_the_same_env() -> None:
    ids = ("ALE/Pong-v5", "PongNoFrameskip-v4", "Pong")
    runs = [rollout(make_atari(i), 60, seed=5) for i in ids]
    assert_same(runs[0], runs[1])
    assert_same(runs[0], runs[2])


def test_observation_shape_dtype_and_ale_settings() -> None:
    env = make_atari("Breakout", frame_stack=2, screen_size=42, repeat_action_probability=0.25)
    obs, _ = env.reset(seed=0)
    assert obs.shape == (2, 42, 42) == env.observation_space.shape and obs.dtype == np.uint8
    ale = env.unwrapped.ale
    assert ale.getFloat("repeat_action_probability") == pytest.approx(0.25)
    assert env.unwrapped._frameskip == 1


def test_info_keys_on_every_step_and_reset() -> None:
    for options in ({}, {"episodic_life": False, "clip_rewards": False}):
        env = make_atari("Breakout", **options)
        _, info = env.reset(seed=1)
        assert info["raw_reward"] == 0.0 and info["game_over"] is False
        rng = np.random.default_rng(0)
        score, games, clipped_sum = 0.0, 0, 0.0
        for _ in range(700):
            _, reward, terminated, truncated, info = env.step(int(rng.integers(4)))
            assert isinstance(info["raw_reward"], float) and isinstance(info["game_over"], bool)
            score += info["raw_reward"]
            clipped_sum += reward
            if terminated or truncated:
                games += info["game_over"]
                _, info = env.reset()
                assert info["raw_reward"] == 0.0 and info["game_over"] is False
        assert games >= 1
        if options:
            assert clipped_sum == score


def test_seed_makes_first_reset_reproducible() -> None:
    first = rollout(make_atari("Breakout", seed=3), 80)
    assert_same(first, rollout(make_atari("Breakout", seed=3), 80))


def test_is_atari() -> None:
    assert all(map(is_atari, ["ALE/Pong-v5", "PongNoFrameskip-v4", "Pong", "SpaceInvaders"]))
    assert not any(map(is_atari, ["CartPole-v1", "Pongg", "ALE/Pong"]))


def test_classic_control_ids_are_made_as_is() -> None:
    env = make_env("CartPole-v1", seed=0)
    obs, _ = env.reset()
    assert obs.shape == (4,)
    with pytest.raises(ValueError, match="frame_stack apply only to Atari ids"):
        make_env("CartPole-v1", frame_stack=4)


@pytest.mark.parametrize(
    ("env_id", "suggestion"),
    [("Pongg", "'Pong'"), ("ALE/Pong-v4", "'ALE/Pong-v5'"), ("CartPol-v1", "'CartPole-v1'")],
)
def test_unknown_ids_suggest_the_closest_known_ids(env_id: str, suggestion: str) -> None:
    with pytest.raises(ValueError, match="unknown env id") as err:
        make_env(env_id)
    assert suggestion in str(err.value)


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("frame_stack", 0),
        ("screen_size", 7),
        ("frame_skip", 0),
        ("noop_max", -1),
        ("repeat_action_probability", 1.5),
        ("max_episode_frames", 0),
    ],
)
def test_out_of_range_options_name_the_parameter(option: str, value: float) -> None:
    with pytest.raises(ValueError, match=f"^{option}=.*must be"):
        make_atari("Pong", **{option: value})


@pytest.mark.parametrize("env_id", ["Breakout", "CartPole-v1"])
def test_single_env_refuses_bad_actions_and_use_after_close(env_id: str) -> None:
    # Before: Atari picked the last action for -1 and raised a bare IndexError for n; CartPole
    # raised an AssertionError; a closed env kept stepping.
    env = make_env(env_id, seed=0)
    env.reset()
    n = env.action_space.n
    bad = {
        rf"^action {n} is out of range; actions must be integers in \[0, {n}\)": n,
        r"^action -1 is out of range": np.int64(-1),
        r"^action must be an integer .* got 1.5 of type float; pass an int": 1.5,
        r"^action has shape \(2,\), expected one integer": [0, 1],
    }
    for message, action in bad.items():
        with pytest.raises(ValueError, match=message):
            env.step(action)
    env.step(np.int64(0))
    env.step(np.array(1))
    env.close()
    env.close()
    with pytest.raises(ClosedEnvironmentError, match="this env is closed"):
        env.step(0)
    with pytest.raises(ClosedEnvironmentError, match="this env is closed"):
        env.reset()


def test_make_atari_tells_a_non_atari_id_to_use_make_env() -> None:
    # It said "unknown env id 'CartPole-v1': did you mean 'CartPole-v1'".
    with pytest.raises(ValueError, match=r"^'CartPole-v1' is not an Atari game id; .*make_env"):
        make_atari("CartPole-v1")
    with pytest.raises(ValueError, match="unknown env id 'Pongg'"):
        make_atari("Pongg")


MADE = {
    "make_atari defaults": lambda: make_atari("Breakout"),
    "make_atari options": lambda: make_atari(
        "Pong",
        noop_max=5,
        episodic_life=False,
        clip_rewards=False,
        frame_stack=2,
        screen_size=42,
        max_episode_frames=2_000,
        repeat_action_probability=0.25,
    ),
    "make_env classic": lambda: make_env("CartPole-v1"),
}


def wrapper_chain(env: gym.Env) -> list[str]:
    chain = []
    while isinstance(env, gym.Wrapper):
        chain.append(type(env).__name__)
        env = env.env
    return chain


@pytest.mark.parametrize("made", MADE)
def test_spec_round_trips_through_gymnasium_make(made: str) -> None:
    # FrameLimit and the other wrappers did not record their arguments, so the spec could not
    # be made again ("does not inherit from RecordConstructorArgs").
    env = MADE[made]()
    again = gym.make(env.spec)
    assert wrapper_chain(again) == wrapper_chain(env)
    assert again.spec == env.spec
    steps = 150 if isinstance(env.action_space, gym.spaces.Discrete) else 0
    assert_same(rollout(again, steps, seed=4), rollout(env, steps, seed=4))


@pytest.mark.filterwarnings("ignore:.*(different from the unwrapped|infinity):UserWarning")
@pytest.mark.parametrize("made", MADE)
def test_gymnasium_env_checker_passes(made: str) -> None:
    check_env(MADE[made](), skip_render_check=True)  # the render check opens windows


def test_atari_options_have_one_definition() -> None:
    import envs
    from agents.config import EnvConfig

    with pytest.raises(ValueError, match="^unknown Atari option.s. frameskip; the options are "):
        make_atari("Pong", frameskip=4)
    defaults = envs.AtariOptions()
    assert EnvConfig(id="Pong").atari_kwargs() == defaults.atari_kwargs()
    assert tuple(defaults.atari_kwargs()) == envs.ATARI_OPTION_NAMES

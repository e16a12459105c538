"""make_vector_env: backends agree with single envs, autoreset, infos, failures, cleanup."""

from __future__ import annotations

import functools
import os
import signal
import subprocess
import sys
import textwrap
import time
from multiprocessing.shared_memory import SharedMemory

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.error import ClosedEnvironmentError

from envs import make_env, make_vector_env
from envs.vector import (
    AleVectorEnv,
    InProcessVectorEnv,
    SharedMemoryVectorEnv,
    WorkerError,
    choose_backend,
)

REFERENCE_OPTIONS = {
    "noop_max": 0,
    "episodic_life": False,
    "clip_rewards": False,
    "fire_reset": False,
}


def random_actions(num_envs: int, steps: int, n: int = 4) -> np.ndarray:
    return np.random.default_rng(0).integers(0, n, (steps, num_envs))


def vector_rollout(vec, actions: np.ndarray, seed: int | None = None) -> list:
    obs, info = vec.reset(seed=seed)
    out = [obs, info["raw_reward"], info["game_over"]]
    for a in actions:
        obs, reward, terminated, truncated, info = vec.step(a)
        out += [obs, reward, terminated, truncated, info["raw_reward"], info["game_over"]]
    vec.close()
    return out


def single_rollouts(env_id: str, seeds: list[int], actions: np.ndarray, **kwargs) -> list:
    """The obvious oracle: each env alone, autoreset done by hand the NEXT_STEP way."""
    envs = [make_env(env_id, seed=s, **kwargs) for s in seeds]
    resets = [env.reset() for env in envs]
    out = [np.stack([r[0] for r in resets]), np.zeros(len(envs)), np.zeros(len(envs), bool)]
    done = [False] * len(envs)
    for a in actions:
        rows = []
        for i, env in enumerate(envs):
            if done[i]:
                obs, info = env.reset()
                rows.append((obs, 0.0, False, False, info))
            else:
                rows.append(env.step(int(a[i])))
            done[i] = rows[-1][2] or rows[-1][3]
        cols = list(zip(*rows, strict=True))
        infos = cols[4]
        raw = np.array([i["raw_reward"] for i in infos])
        game_over = np.array([i["game_over"] for i in infos])
        out += [np.stack(cols[0]), np.array(cols[1]), np.array(cols[2]), np.array(cols[3])]
        out += [raw, game_over]
    return out


def assert_same(a: list, b: list) -> None:
    assert len(a) == len(b)
    for k, (x, y) in enumerate(zip(a, b, strict=True)):
        assert np.array_equal(x, y), f"item {k} differs"


@pytest.mark.parametrize("backend", ["sync", "async"])
def test_backends_match_single_envs_seeded_seed_plus_i(backend: str) -> None:
    actions = random_actions(4, 150)
    vec = make_vector_env("Breakout", 4, backend=backend, seed=7)
    assert vec.metadata["autoreset_mode"].value == "NextStep"
    assert vec.observation_space.shape == (4, 4, 84, 84)
    got = vector_rollout(vec, actions)
    expected = single_rollouts("Breakout", [7, 8, 9, 10], actions)
    assert sum(t.sum() for t in got[5::6]) >= 4, "life losses must exercise autoreset"
    assert_same(got, expected)


def test_next_step_autoreset_returns_reset_obs_with_zero_reward() -> None:
    vec = make_vector_env("Breakout", 2, backend="sync", seed=0)
    vec.reset()
    actions = random_actions(2, 300)
    seen = 0
    for t in range(len(actions) - 1):
        _, _, terminated, truncated, _ = vec.step(actions[t])
        done = terminated | truncated
        if done.any():
            obs, reward, terminated, truncated, info = vec.step(actions[t + 1])
            for i in np.flatnonzero(done):
                assert reward[i] == 0 and not terminated[i] and not truncated[i]
                assert info["raw_reward"][i] == 0 and not info["game_over"][i]
                assert all(np.array_equal(obs[i, 0], f) for f in obs[i]), "reset fills the stack"
                seen += 1
    vec.close()
    assert seen >= 2


def test_ale_backend_matches_our_stack_frame_for_frame() -> None:
    actions = random_actions(2, 400)
    ale = make_vector_env("Breakout", 2, backend="ale", **REFERENCE_OPTIONS)
    sync = make_vector_env("Breakout", 2, backend="sync", **REFERENCE_OPTIONS)
    got = vector_rollout(ale, actions, seed=3)
    expected = vector_rollout(sync, actions, seed=3)
    assert sum(t.sum() for t in expected[5::6]) >= 2, "game overs must exercise the padding fix"
    assert_same(got, expected)


def test_ale_backend_default_preprocessing_infos_and_clipping() -> None:
    vec = make_vector_env("SpaceInvaders", 3, backend="ale", seed=0, episodic_life=False)
    obs, info = vec.reset()
    assert obs.shape == (3, 4, 84, 84)
    assert all(np.array_equal(obs[i, 0], obs[i, k]) for i in range(3) for k in range(4))
    rewards, raws = [], []
    for a in random_actions(3, 300, n=6):
        _, reward, _, _, info = vec.step(a)
        assert info["_raw_reward"].all() and info["_game_over"].all()
        rewards.append(reward)
        raws.append(info["raw_reward"])
    vec.close()
    np.testing.assert_array_equal(np.sign(raws), rewards)
    assert np.abs(raws).max() > 1, "Space Invaders aliens score 5 to 30"


def test_ale_backend_refuses_options_it_cannot_honour() -> None:
    with pytest.raises(ValueError, match="episodic_life=True is not supported by backend 'ale'"):
        make_vector_env("Pong", 2, backend="ale")
    with pytest.raises(ValueError, match="render_mode"):
        make_vector_env("Pong", 2, backend="ale", episodic_life=False, render_mode="rgb_array")
    with pytest.raises(ValueError, match="Atari games only"):
        make_vector_env("CartPole-v1", 2, backend="ale")


def test_auto_rule() -> None:
    assert choose_backend("CartPole-v1", 8, {}) == "sync"
    assert choose_backend("Pong", 8, {"episodic_life": False}) == "ale"
    assert choose_backend("Pong", 1, {}) == "sync"
    expected = "async" if (os.cpu_count() or 1) >= 2 else "sync"
    assert choose_backend("Pong", 8, {}) == expected
    vec = make_vector_env("CartPole-v1", 3, seed=0)
    assert isinstance(vec, InProcessVectorEnv) and vec.backend == "sync"
    vec.close()
    vec = make_vector_env("Pong", 2, episodic_life=False)
    assert isinstance(vec, AleVectorEnv) and vec.backend == "ale"
    vec.close()
    vec = make_vector_env("CartPole-v1", 2, backend="async", num_workers=1)
    assert vec.backend == "async"
    vec.close()


@pytest.mark.parametrize("backend", ["sync", "async"])
def test_classic_control_vector_env(backend: str) -> None:
    vec = make_vector_env("CartPole-v1", 3, backend=backend, seed=1)
    obs, _ = vec.reset()
    assert obs.shape == (3, 4)
    ends = 0
    for _ in range(60):
        _, reward, terminated, truncated, _ = vec.step(vec.action_space.sample())
        ends += int(terminated.sum() + truncated.sum())
        assert reward.shape == (3,)
    vec.close()
    assert ends >= 1


@pytest.mark.parametrize("backend", ["sync", "async"])
def test_a_composite_observation_space_is_refused_in_one_line(backend: str) -> None:
    # Blackjack observes a Tuple of Discretes, whose shape is None: both backends used to fail
    # with "TypeError: Value after * must be an iterable, not NoneType".
    with pytest.raises(ValueError, match=r"observation space Tuple\(.*\) has no array shape") as e:
        make_vector_env("Blackjack-v1", 2, backend=backend)
    assert "\n" not in str(e.value) and "FlattenObservation" in str(e.value)


def test_bad_arguments_name_the_parameter() -> None:
    with pytest.raises(ValueError, match="num_envs=0 .* >= 1"):
        make_vector_env("Pong", 0)
    with pytest.raises(ValueError, match="backend='gpu' is unknown; allowed values: auto, sync"):
        make_vector_env("Pong", 2, backend="gpu")
    with pytest.raises(ValueError, match="num_workers is an option of backend 'async' only"):
        make_vector_env("Pong", 2, backend="sync", num_workers=2)
    with pytest.raises(ValueError, match="frame_stack=0"):
        make_vector_env("Pong", 2, backend="ale", episodic_life=False, frame_stack=0)
    with pytest.raises(ValueError, match="unknown env id 'Pongg'"):
        make_vector_env("Pongg", 2)


def test_killed_worker_raises_naming_its_envs_and_close_frees_everything() -> None:
    vec = make_vector_env("Pong", 4, backend="async", num_workers=2, seed=0)
    assert isinstance(vec, SharedMemoryVectorEnv) and vec.env_ranges == [(0, 2), (2, 4)]
    vec.reset()
    vec.step(np.zeros(4, dtype=np.int64))
    os.kill(vec.worker_pids[1], signal.SIGKILL)
    start = time.monotonic()
    with pytest.raises(WorkerError, match=r"worker 1 .* envs 2\.\.3 died"):
        vec.step(np.zeros(4, dtype=np.int64))
    assert time.monotonic() - start < 5.0
    assert_unusable_and_closed_cleanly(vec)


def assert_unusable_and_closed_cleanly(vec: SharedMemoryVectorEnv) -> None:
    """After a failure: every later step refuses, and close() frees processes and memory."""
    with pytest.raises(WorkerError, match="unusable"):
        vec.step(np.zeros(vec.num_envs, dtype=np.int64))
    procs, name = list(vec._procs), vec.shm_name
    vec.close()
    assert not any(p.is_alive() for p in procs)
    with pytest.raises(FileNotFoundError):
        SharedMemory(name=name)


def test_worker_dead_before_the_next_command_is_named_not_a_broken_pipe() -> None:
    # Waiting for the killed worker to be reaped closes its pipe first, so the next step's send
    # fails; that must still be reported as the dead worker (it was a bare BrokenPipeError).
    vec = make_vector_env("CartPole-v1", 4, backend="async", num_workers=2, seed=0)
    vec.reset()
    os.kill(vec.worker_pids[1], signal.SIGKILL)
    vec._procs[1].join(timeout=5.0)
    for _ in range(3):  # the pipe may take a moment to report the closed end
        with pytest.raises(WorkerError, match=r"worker 1 .* envs 2\.\.3 died|unusable"):
            vec.step(np.zeros(4, dtype=np.int64))
    vec.close()


def test_env_exception_names_the_env_index() -> None:
    fns = [functools.partial(make_env, "CartPole-v1", seed=i) for i in range(3)]
    fns.append(functools.partial(MisbehavingCartPole, RuntimeError, 1))
    vec = SharedMemoryVectorEnv(fns, num_workers=2, context="fork")
    vec.reset()
    with pytest.raises(WorkerError, match="env 3 .async worker 1. raised"):
        vec.step(np.zeros(4, dtype=np.int64))
    vec.close()


def test_close_stops_workers_and_unlinks_shared_memory() -> None:
    vec = make_vector_env("CartPole-v1", 3, backend="async", num_workers=3)
    procs, name = list(vec._procs), vec.shm_name
    SharedMemory(name=name).close()  # exists while open
    vec.close()
    assert not any(p.is_alive() for p in procs)
    with pytest.raises(FileNotFoundError):
        SharedMemory(name=name)


def test_fork_started_workers_leave_the_block_to_the_main_process(tmp_path) -> None:
    # Workers started by fork used to start resource trackers of their own, which unlinked the
    # block behind the main process's back and warned of leaks when the workers exited.
    script = tmp_path / "fork_workers.py"
    script.write_text(
        textwrap.dedent(
            """
            import functools
            from envs import make_env
            from envs.vector import SharedMemoryVectorEnv
            if __name__ == "__main__":
                fns = [functools.partial(make_env, "CartPole-v1", seed=i) for i in range(4)]
                vec = SharedMemoryVectorEnv(fns, num_workers=2, context="fork")
                vec.reset(seed=0)
                for _ in range(5):
                    vec.step([0, 1, 0, 1])
                vec.close()
                print("closed")
            """
        )
    )
    run = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0 and run.stdout.strip() == "closed", run.stderr
    assert "leaked" not in run.stderr and "No such file" not in run.stderr, run.stderr


def shared_memory_env(env_id: str, seeds: list[int], **kwargs) -> SharedMemoryVectorEnv:
    fns = [functools.partial(make_env, env_id, seed=s) for s in seeds]
    return SharedMemoryVectorEnv(fns, **kwargs)


def test_calling_process_steps_its_share_like_the_workers() -> None:
    actions = random_actions(5, 150)
    vec = shared_memory_env("Breakout", [7, 8, 9, 10, 11], num_workers=2, main_envs=2)
    assert vec.main_envs == 2 and vec.env_ranges == [(2, 4), (4, 5)]
    got = vector_rollout(vec, actions)
    assert sum(t.sum() for t in got[5::6]) >= 4, "life losses must exercise autoreset"
    assert_same(got, single_rollouts("Breakout", [7, 8, 9, 10, 11], actions))
    # The default: one worker per core but one, and an equal share for the calling process.
    default = shared_memory_env("CartPole-v1", list(range(6)))
    workers = min(6, max(1, (os.cpu_count() or 1) - 1))
    assert len(default.worker_pids) == workers and default.main_envs == 6 // (workers + 1)
    default.close()
    with pytest.raises(ValueError, match="main_envs=4 is out of range"):
        shared_memory_env("CartPole-v1", [0, 1, 2, 3], main_envs=4)
    with pytest.raises(ValueError, match="num_workers=3 is out of range"):
        shared_memory_env("CartPole-v1", [0, 1, 2, 3], num_workers=3, main_envs=2)


def test_num_workers_0_is_refused_with_the_range_the_message_states() -> None:
    # It used to mean "the default", although the message gave the range as >= 1.
    with pytest.raises(ValueError, match=r"^num_workers=0 is out of range; it must be in \[1, "):
        make_vector_env("CartPole-v1", 4, backend="async", num_workers=0)
    with pytest.raises(ValueError, match=r"^num_workers=1.5 is out of range"):
        make_vector_env("CartPole-v1", 4, backend="async", num_workers=1.5)


def test_failures_with_a_calling_process_share_name_the_env() -> None:
    fns = [functools.partial(make_env, "CartPole-v1", seed=s) for s in range(4)]
    fns[1] = functools.partial(MisbehavingCartPole, RuntimeError, 1)
    vec = SharedMemoryVectorEnv(fns, num_workers=1, main_envs=2)
    vec.reset()
    with pytest.raises(WorkerError, match=r"env 1 \(calling process\) raised"):
        vec.step(np.zeros(4, dtype=np.int64))
    assert_unusable_and_closed_cleanly(vec)
    vec = shared_memory_env("CartPole-v1", [0, 1, 2, 3], num_workers=1, main_envs=2)
    vec.reset()
    os.kill(vec.worker_pids[0], signal.SIGKILL)
    with pytest.raises(WorkerError, match=r"worker 0 .* envs 2\.\.3 died"):
        vec.step(np.zeros(4, dtype=np.int64))
    vec.close()


class MisbehavingCartPole(gym.Wrapper):
    """CartPole whose step number ``at_step`` raises ``error``, or never returns if it is None
    (like an env stuck in a loop)."""

    def __init__(self, error: type[BaseException] | None, at_step: int) -> None:
        super().__init__(make_env("CartPole-v1", seed=0))
        self.error, self.at_step, self.steps = error, at_step, 0

    def step(self, action):
        self.steps += 1
        if self.steps == self.at_step:
            if self.error is None:
                time.sleep(600)
            else:
                raise self.error
        return self.env.step(action)


def test_an_interrupted_step_leaves_the_env_refusing_instead_of_out_of_step() -> None:
    interrupted = functools.partial(MisbehavingCartPole, KeyboardInterrupt, 3)
    fns = [interrupted] + [functools.partial(make_env, "CartPole-v1", seed=i) for i in (1, 2)]
    vec = SharedMemoryVectorEnv(fns, num_workers=1, main_envs=1)
    vec.reset()
    for _ in range(2):
        vec.step(np.zeros(3, dtype=np.int64))
    with pytest.raises(KeyboardInterrupt):
        vec.step(np.zeros(3, dtype=np.int64))
    with pytest.raises(WorkerError, match="unusable .interrupted during step"):
        vec.step(np.zeros(3, dtype=np.int64))
    vec.close()


def test_a_worker_that_stops_answering_is_named_after_timeout_s() -> None:
    hanging = functools.partial(MisbehavingCartPole, None, 2)
    fns = [functools.partial(make_env, "CartPole-v1", seed=0), hanging]
    vec = SharedMemoryVectorEnv(fns, num_workers=2, context="fork", timeout_s=1.0)
    vec.reset()
    vec.step(np.zeros(2, dtype=np.int64))
    start = time.monotonic()
    with pytest.raises(WorkerError, match=r"worker 1 .* envs 1\.\.1 did not answer within 1 s"):
        vec.step(np.zeros(2, dtype=np.int64))
    assert time.monotonic() - start < 5.0
    assert_unusable_and_closed_cleanly(vec)
    with pytest.raises(ValueError, match="timeout_s=0 must be > 0"):
        SharedMemoryVectorEnv(fns, timeout_s=0)
    with pytest.raises(ValueError, match="timeout_s is an option of backend 'async' only"):
        make_vector_env("CartPole-v1", 2, backend="sync", timeout_s=5.0)


def run_script(tmp_path, body: str) -> subprocess.CompletedProcess:
    """Run ``body`` as a plain script (``python script.py``), importing this checkout."""
    script = tmp_path / "script.py"
    script.write_text(textwrap.dedent(body))
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = {**os.environ, "PYTHONPATH": root}
    return subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=120, env=env
    )


def test_async_from_an_unguarded_script_forks_and_a_guarded_one_uses_forkserver(tmp_path) -> None:
    # Without a main guard, forkserver/spawn workers re-ran the script and the user got a page
    # of child tracebacks and a WorkerError. Build it at the top level and inside a function.
    unguarded = run_script(
        tmp_path,
        """
        from envs import make_vector_env
        def build():
            return make_vector_env("CartPole-v1", 2, backend="async", num_workers=1)
        vec = make_vector_env("CartPole-v1", 2, backend="async", num_workers=1)
        vec.reset(seed=0)
        vec.step([0, 1])
        other = build()
        print(vec.backend, vec.start_method, other.start_method)
        vec.close()
        other.close()
        """,
    )
    assert unguarded.returncode == 0, unguarded.stderr
    assert unguarded.stdout.split() == ["async", "fork", "fork"]
    guarded = run_script(
        tmp_path,
        """
        from envs import make_vector_env
        if __name__ == "__main__":
            vec = make_vector_env("CartPole-v1", 2, backend="async", num_workers=1)
            vec.reset(seed=0)
            print(vec.start_method)
            vec.close()
        """,
    )
    assert guarded.returncode == 0 and guarded.stdout.split() == ["forkserver"], guarded.stderr


def test_an_explicit_start_method_that_reruns_an_unguarded_script_is_one_line(tmp_path) -> None:
    run = run_script(
        tmp_path,
        """
        import functools
        from envs import make_env
        from envs.vector import SharedMemoryVectorEnv
        fns = [functools.partial(make_env, "CartPole-v1", seed=i) for i in range(2)]
        try:
            SharedMemoryVectorEnv(fns, num_workers=1, context="spawn")
        except ValueError as error:
            print(error)
        """,
    )
    assert run.returncode == 0, run.stderr
    assert "Traceback" not in run.stderr, run.stderr
    lines = run.stdout.strip().splitlines()
    assert len(lines) == 1 and "context='spawn' runs the top level of" in lines[0]
    assert 'if __name__ == "__main__":' in lines[0] and "line 7" in lines[0]


BAD_VECTOR_ACTIONS = {
    r"actions has shape \(3,\), expected \(2,\): one action per env": [0, 1, 2],
    r"actions has shape \(\), expected \(2,\)": 1,
    r"action 99 for env 1 is out of range; actions must be integers in \[0, 4\)": [0, 99],
    r"action -1 for env 0 is out of range": [-1, 0],
    r"actions must be integers in \[0, 4\) \(Discrete\(4\)\), got a float64 array": [0, 1.5],
}


@pytest.mark.parametrize("backend", ["sync", "async", "ale"])
def test_bad_actions_are_refused_in_one_line_and_the_env_stays_usable(backend: str) -> None:
    # Before: sync took 3 actions for 2 envs and raised a bare IndexError on 99, ale hung for
    # ever on 99, and async lost the worker for good.
    options = {"episodic_life": False} if backend == "ale" else {}
    vec = make_vector_env("Breakout", 2, backend=backend, seed=0, **options)
    first, _ = vec.reset()
    for message, actions in BAD_VECTOR_ACTIONS.items():
        with pytest.raises(ValueError, match=message) as error:
            vec.step(actions)
        assert "\n" not in str(error.value)
    obs, reward, terminated, truncated, _ = vec.step(np.array([1, 0]))
    assert obs.shape == first.shape and reward.shape == terminated.shape == truncated.shape == (2,)
    vec.close()
    vec.close()
    with pytest.raises(ClosedEnvironmentError, match=f"this {backend} vector env is closed"):
        vec.step(np.zeros(2, dtype=np.int64))
    with pytest.raises(ClosedEnvironmentError, match="is closed and cannot step or reset"):
        vec.reset()

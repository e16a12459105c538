"""Environment throughput: our Atari stack and vector backends vs gymnasium's reference.

Prints one JSON object (agent steps per second, random actions, Pong). Every env uses the
reference preprocessing options (no-op 0, no life loss, no clipping, no fire reset) so that all
backends, ale-py's native one included, do the same work as gymnasium's
``FrameStackObservation(AtariPreprocessing(...), 4)``. Startup is not timed. Contenders take
turns in short slices; rates are medians over slices and each ratio is the median of the
per-slice ratios, which cancels the drift of this shared machine's speed within a run.

    python scripts/bench_envs.py [--seconds 8] [--rounds 8] [--env Pong] [--counts 8 16]
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import time
from collections.abc import Callable

import ale_py
import gymnasium as gym
import numpy as np
from gymnasium.wrappers import AtariPreprocessing, FrameStackObservation

from envs import make_atari, make_vector_env
from envs.registry import canonical_atari_id
from envs.vector import AleVectorEnv, SharedMemoryVectorEnv

gym.register_envs(ale_py)

BACKENDS = ("sync", "async", "ale")
OPTIONS = {"noop_max": 0, "episodic_life": False, "clip_rewards": False, "fire_reset": False}


def reference_env(env_id: str) -> gym.Env:
    base = gym.make(env_id, frameskip=1, repeat_action_probability=0.0)
    return FrameStackObservation(
        AtariPreprocessing(base, noop_max=0, frame_skip=4, screen_size=84), 4
    )


def run_single(env: gym.Env, seconds: float) -> tuple[int, float]:
    rng = np.random.default_rng()
    steps, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        for action in rng.integers(0, env.action_space.n, 50):
            _, _, terminated, truncated, _ = env.step(int(action))
            if terminated or truncated:
                env.reset()
        steps += 50
    return steps, time.perf_counter() - start


def run_vector(vec: gym.vector.VectorEnv, seconds: float) -> tuple[int, float]:
    actions = np.random.default_rng().integers(0, vec.single_action_space.n, (16, vec.num_envs))
    steps, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        for a in actions:
            vec.step(a)
        steps += len(actions) * vec.num_envs
    return steps, time.perf_counter() - start


def interleaved(envs: dict, run: Callable, seconds: float, rounds: int) -> dict[str, list[float]]:
    """Steps/s of each env in each of ``rounds`` alternating slices of ``seconds / rounds``.

    Alternating keeps every contender exposed to the same background load on a shared machine.
    """
    rates: dict[str, list[float]] = {name: [] for name in envs}
    for _ in range(rounds):
        for name, env in envs.items():
            steps, elapsed = run(env, seconds / rounds)
            rates[name].append(steps / elapsed)
    return rates


def ratio(rates: dict[str, list[float]], a: str, b: str) -> float:
    """Median over rounds of ``a``'s rate over ``b``'s in the same round: the machine's speed
    drifts by 10-30% within a run here, and a per-round ratio cancels the drift."""
    return float(np.median(np.array(rates[a]) / np.array(rates[b])))


def summary(rates: dict[str, list[float]]) -> dict[str, float]:
    return {name: float(np.median(r)) for name, r in rates.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=8.0, help="timed seconds per entry")
    parser.add_argument("--env", default="Pong", help="Atari game id (any spelling)")
    parser.add_argument("--counts", type=int, nargs="+", default=[8, 16])
    parser.add_argument("--rounds", type=int, default=8, help="alternating slices per entry")
    args = parser.parse_args()
    ref_id = canonical_atari_id(args.env)
    if ref_id is None:
        parser.error(f"{args.env!r} is not an Atari id")

    result: dict = {"env": ref_id, "cpu_count": os.cpu_count(), "seconds": args.seconds}
    singles = {"ours": make_atari(ref_id, **OPTIONS), "gymnasium_reference": reference_env(ref_id)}
    for env in singles.values():
        env.reset(seed=0)
    single = interleaved(singles, run_single, args.seconds, args.rounds)
    result["single"] = {**summary(single), "ratio": ratio(single, "ours", "gymnasium_reference")}

    for n in args.counts:
        vecs = {
            b: make_vector_env(ref_id, n, backend=b, **OPTIONS)
            for b in ("sync", "async", "ale", "auto")
        }
        fns = [functools.partial(reference_env, ref_id) for _ in range(n)]
        vecs["gymnasium_async"] = gym.vector.AsyncVectorEnv(fns)
        for vec in vecs.values():
            vec.reset(seed=0)
        rates = interleaved(vecs, run_vector, args.seconds, args.rounds)
        entry: dict = summary(rates)
        chosen = {AleVectorEnv: "ale", SharedMemoryVectorEnv: "async"}.get(type(vecs["auto"]))
        entry["auto_backend"] = chosen or "sync"
        for vec in vecs.values():
            vec.close()
        fastest = max(("sync", "async", "ale"), key=entry.__getitem__)
        entry["ratios"] = {
            **{f"{b}_vs_gymnasium_async": ratio(rates, b, "gymnasium_async") for b in BACKENDS},
            # auto is a second instance of the backend it picks, measured separately; the
            # second figure compares the picked backend's own instance with the fastest one.
            "auto_vs_fastest_backend": ratio(rates, "auto", fastest),
            "auto_choice_vs_fastest_backend": ratio(rates, entry["auto_backend"], fastest),
        }
        entry["fastest_backend"] = fastest
        result[f"vector_{n}"] = entry
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()

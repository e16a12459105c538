"""Benchmark rlkit's replay buffers against Stable-Baselines3's at Atari shape; prints JSON.

Every buffer gets the identical synthetic stream: episodes of random length (mean 500 steps) built
from a pool of random 84x84 frames, shifted into 4-frame stacks as the Atari frame-stack wrapper
does. The machine is shared, so rates that are compared are measured *interleaved*: the buffers
being compared take turns in short bursts and each rate is the median over bursts, so a change in
background load hits both sides alike.

1. rlkit ``ReplayBuffer`` at ``--capacity`` (1,000,000, allocated in full) and SB3
   ``ReplayBuffer(optimize_memory_usage=True)`` at ``--sb3-capacity`` (28 KB a transition, so 1M
   would need 28 GB) are filled side by side with ``--fill`` transitions, each ``add`` timed;
   then ``sample(32)`` and ``sample(256)`` are timed in interleaved bursts.
2. SB3 is freed; rlkit ``PrioritizedReplayBuffer`` at ``--capacity`` gets the same fill, and
   ``sample(32) + update_priorities(32)`` is timed against uniform ``sample(32)`` of the same
   storage (a ``UniformSampler`` attached to the prioritised buffer, its batch gathered by that
   buffer) and, for reference, of the uniform buffer.
3. PER is freed; the uniform buffer keeps adding until its ring has wrapped (every page of the
   1M buffer touched) and sampling is timed again at full size.

    python scripts/bench_replay.py [--fill 100000] [--capacity 1000000] [--sb3-capacity 200000]
"""

from __future__ import annotations

import argparse
import gc
import json
import platform
import statistics
import time
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from rlkit.replay import PrioritizedReplayBuffer, ReplayBuffer, UniformSampler

OBS_SHAPE = (4, 84, 84)
Transition = tuple[np.ndarray, int, float, np.ndarray, bool]


def stream(n: int, seed: int = 0) -> Iterator[Transition]:
    """``n`` transitions ``(obs, action, reward, next_obs, terminated)``, the same every call."""
    rng = np.random.default_rng(seed)
    pool = rng.integers(0, 256, (512, 84, 84), dtype=np.uint8)
    obs = None
    for _ in range(n):
        if obs is None:
            obs = np.repeat(pool[rng.integers(512)][None], 4, axis=0)
        next_obs = np.concatenate((obs[1:], pool[rng.integers(512)][None]))
        terminated = bool(rng.random() < 1 / 500)
        yield obs, int(rng.integers(6)), float(rng.integers(-1, 2)), next_obs, terminated
        obs = None if terminated else next_obs


def add_ours(buf: ReplayBuffer, item: Transition) -> float:
    """Seconds spent in one ``add``."""
    obs, action, reward, next_obs, terminated = item
    t0 = time.perf_counter()
    buf.add(obs, action, reward, next_obs, terminated, False)
    return time.perf_counter() - t0


def add_sb3(buf: Any, item: Transition) -> float:
    obs, action, reward, next_obs, terminated = item
    args = (obs[None], next_obs[None], np.array([action]), np.array([reward]))
    done = np.array([terminated])
    t0 = time.perf_counter()
    buf.add(*args, done, [{}])
    return time.perf_counter() - t0


def interleaved_rates(
    fns: dict[str, Callable[[], object]], rounds: int = 9, burst_s: float = 0.25
) -> dict[str, list[float]]:
    """Calls per second of each function in each of ``rounds`` bursts taken in turn."""
    for fn in fns.values():
        fn()  # warm-up
    samples: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            calls, t0 = 0, time.perf_counter()
            while (elapsed := time.perf_counter() - t0) < burst_s:
                fn()
                calls += 1
            samples[name].append(calls / elapsed)
    return samples


def medians(samples: dict[str, list[float]]) -> dict[str, float]:
    return {name: statistics.median(rates) for name, rates in samples.items()}


def ratio(samples: dict[str, list[float]], a: str, b: str) -> float:
    """Median over bursts of ``a``'s rate over ``b``'s in the same round: this shared machine's
    speed drifts within a run, and a per-round ratio cancels the drift."""
    return statistics.median(x / y for x, y in zip(samples[a], samples[b], strict=True))


def rss_gb() -> float | None:
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024 / 1e9
    except OSError:
        pass
    return None


def make_sb3(capacity: int) -> tuple[Any, str, int]:
    """SB3's buffer, its version, and the bytes its arrays allocate."""
    import gymnasium as gym
    import torch
    from stable_baselines3 import __version__ as sb3_version
    from stable_baselines3.common.buffers import ReplayBuffer as SB3ReplayBuffer

    torch.set_num_threads(1)
    buf = SB3ReplayBuffer(
        capacity,
        gym.spaces.Box(0, 255, OBS_SHAPE, np.uint8),
        gym.spaces.Discrete(6),
        device="cpu",
        optimize_memory_usage=True,
        handle_timeout_termination=False,  # SB3 refuses it together with the memory option
    )
    names = ("observations", "actions", "rewards", "dones", "timeouts")
    nbytes = sum(getattr(buf, name).nbytes for name in names if hasattr(buf, name))
    return buf, sb3_version, nbytes


def phase_vs_sb3(ours: ReplayBuffer, fill: int, sb3_capacity: int) -> dict:
    sb3, sb3_version, sb3_nbytes = make_sb3(sb3_capacity)
    ours_add = sb3_add = 0.0
    for item in stream(fill):
        ours_add += add_ours(ours, item)
        sb3_add += add_sb3(sb3, item)
    samples = interleaved_rates(
        {
            "rlkit_sample32": lambda: ours.sample(32),
            "sb3_sample32": lambda: sb3.sample(32),
            "rlkit_sample256": lambda: ours.sample(256),
            "sb3_sample256": lambda: sb3.sample(256),
        }
    )
    return {
        "sb3_version": sb3_version,
        "sb3_capacity": sb3_capacity,
        "sb3_bytes_per_transition": sb3_nbytes / sb3_capacity,
        "rlkit_add_per_s": fill / ours_add,
        "sb3_add_per_s": fill / sb3_add,
        **{f"{name}_per_s": value for name, value in medians(samples).items()},
        "sample32_vs_sb3": ratio(samples, "rlkit_sample32", "sb3_sample32"),
        "sample256_vs_sb3": ratio(samples, "rlkit_sample256", "sb3_sample256"),
    }


def phase_per(ours: ReplayBuffer, fill: int, capacity: int) -> dict:
    per = PrioritizedReplayBuffer(capacity, OBS_SHAPE, frame_stack=4, seed=0)
    add_seconds = sum(add_ours(per, item) for item in stream(fill))
    rng = np.random.default_rng(0)
    uniform = UniformSampler(seed=0)
    uniform.attach(per)

    def per_step() -> None:
        batch = per.sample(32, beta=0.5)
        per.update_priorities(batch.indices, rng.random(32))

    samples = interleaved_rates(
        {
            "per_sample32_update32": per_step,
            # Uniform sampling of the very same storage: the reference the ratio uses, because
            # two 7 GB buffers land on different pages and their frame gathers (the bulk of a
            # sample) differ by up to ~10% for that reason alone.
            "uniform_sample32_same_storage": lambda: per.gather(*uniform.sample(32)),
            "uniform_sample32": lambda: ours.sample(32),
        }
    )
    return {
        "per_bytes_per_transition": per.nbytes / capacity,
        "per_add_per_s": fill / add_seconds,
        **{f"{name}_per_s": value for name, value in medians(samples).items()},
        "per_vs_uniform_same_storage": ratio(
            samples, "per_sample32_update32", "uniform_sample32_same_storage"
        ),
        "per_vs_uniform_other_buffer": ratio(samples, "per_sample32_update32", "uniform_sample32"),
    }


def phase_full(ours: ReplayBuffer, fill: int, capacity: int) -> dict:
    for item in stream(capacity + capacity // 50 - fill, seed=1):
        add_ours(ours, item)
    samples = interleaved_rates(
        {"sample32": lambda: ours.sample(32), "sample256": lambda: ours.sample(256)}, rounds=3
    )
    return {
        "transitions_added": capacity + capacity // 50,
        "sampleable": len(ours),
        "rss_gb": rss_gb(),
        **{f"{name}_per_s": value for name, value in medians(samples).items()},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fill", type=int, default=100_000, help="transitions before sampling")
    parser.add_argument("--capacity", type=int, default=1_000_000, help="rlkit buffers' capacity")
    parser.add_argument("--sb3-capacity", type=int, default=200_000)
    args = parser.parse_args()
    t0 = time.perf_counter()
    ours = ReplayBuffer(args.capacity, OBS_SHAPE, frame_stack=4, seed=0)
    vs_sb3 = phase_vs_sb3(ours, args.fill, args.sb3_capacity)
    gc.collect()
    per = phase_per(ours, args.fill, args.capacity)
    gc.collect()
    full = phase_full(ours, args.fill, args.capacity)
    bytes_per_transition = ours.nbytes / args.capacity
    paired = {
        "sample32_vs_sb3": vs_sb3.pop("sample32_vs_sb3"),
        "sample256_vs_sb3": vs_sb3.pop("sample256_vs_sb3"),
        "per_step_vs_uniform_sample32": per.pop("per_vs_uniform_same_storage"),
        "per_step_vs_uniform_sample32_other_buffer": per.pop("per_vs_uniform_other_buffer"),
    }
    result = {
        "obs_shape": list(OBS_SHAPE),
        "rlkit_capacity": args.capacity,
        "fill": args.fill,
        "note": (
            f"same stream into every buffer; rates with {args.fill} transitions stored, measured "
            f"in interleaved bursts (median of 9; a ratio is the median of per-round ratios); "
            f"SB3 at capacity {args.sb3_capacity} because 1M "
            "needs ~28 GB; a shared 2-core machine, so absolute rates are noisy"
        ),
        "machine": platform.machine(),
        "numpy": np.__version__,
        "rlkit_bytes_per_transition": bytes_per_transition,
        "rlkit_nbytes_gb": ours.nbytes / 1e9,
        **vs_sb3,
        **per,
        "rlkit_full": full,
        "ratios": {
            "bytes_per_transition_vs_sb3": bytes_per_transition
            / vs_sb3["sb3_bytes_per_transition"],
            "add_vs_sb3": vs_sb3["rlkit_add_per_s"] / vs_sb3["sb3_add_per_s"],
            **paired,
        },
        "targets": {
            "bytes_per_transition_max": 7200,
            "add_vs_sb3_min": 1.0,
            "sample_vs_sb3_min": 1.0,
            "per_vs_uniform_min": 0.75,
        },
        "total_seconds": time.perf_counter() - t0,
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()

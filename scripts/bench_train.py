"""End-to-end training throughput of rlkit's learners against Stable-Baselines3, in one run.

Each section times whole training steps (act, env step, store, update) on Pong for rlkit and for
the SB3 counterpart with the same network, buffer size, batch size and update frequency, after
an untimed warm-up that fills the buffer, and reports agent steps per second. Sections:

* ``dqn``: ``agents.dqn.DQNLearner`` (configs/pong_dqn.yaml) vs ``stable_baselines3.DQN``
  (``CnnPolicy`` = the same Nature CNN, ``make_atari_env`` + 4-frame stack).

Add a section by writing ``bench_<name>(args) -> dict`` and one entry in ``SECTIONS``.

    python scripts/bench_train.py                      # every section, CPU
    python scripts/bench_train.py --only dqn --steps 2000 --device cuda

Prints one JSON object (and writes it to ``--json PATH`` if given). Needs the ``bench`` extra.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]
EPSILON = 0.1
"""Constant exploration for both libraries, so both run the network on ~90% of steps (with
epsilon near 1 at the start of training both would skip it and time only the updates)."""


def _rlkit_dqn_sps(args: argparse.Namespace) -> float:
    from agents.config import load_config
    from agents.dqn import DQNLearner
    from rlkit.logger import Logger

    cfg = load_config(ROOT / "configs" / "pong_dqn.yaml", [
        f"agent.buffer_size={args.buffer_size}", f"agent.learning_starts={args.warmup}",
        "agent.batch_size=32", "agent.train_freq=4", f"train.device={args.device}",
        "env.backend=sync", f"train.seed={args.seed}", "train.log_every=1000000000",
        f"agent.epsilon_start={EPSILON}", f"agent.epsilon_final={EPSILON}",
    ])
    learner = DQNLearner(cfg, torch.device(args.device), Logger(None))
    try:
        while learner.env_steps < args.warmup:
            learner.train_iteration()
        start_steps, start = learner.env_steps, time.perf_counter()
        while learner.env_steps < args.warmup + args.steps:
            learner.train_iteration()
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()
        return (learner.env_steps - start_steps) / (time.perf_counter() - start)
    finally:
        learner.close()


def _sb3_dqn_sps(args: argparse.Namespace) -> float:
    from stable_baselines3 import DQN
    from stable_baselines3.common.env_util import make_atari_env
    from stable_baselines3.common.vec_env import VecFrameStack

    env = VecFrameStack(make_atari_env("PongNoFrameskip-v4", n_envs=1, seed=args.seed), 4)
    model = DQN(
        "CnnPolicy", env, buffer_size=args.buffer_size, learning_starts=args.warmup,
        batch_size=32, train_freq=4, gradient_steps=1, target_update_interval=10_000,
        learning_rate=2.5e-4, gamma=0.99, device=args.device, seed=args.seed, verbose=0,
        exploration_initial_eps=EPSILON, exploration_final_eps=EPSILON,
    )
    try:
        model.learn(total_timesteps=args.warmup)
        start = time.perf_counter()
        model.learn(total_timesteps=args.steps, reset_num_timesteps=False)
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()
        return args.steps / (time.perf_counter() - start)
    finally:
        env.close()


def bench_dqn(args: argparse.Namespace) -> dict[str, Any]:
    """DQN on Pong, updates on (one every 4 agent steps, batch 32), same buffer size."""
    rlkit_sps = _rlkit_dqn_sps(args)
    sb3_sps = _sb3_dqn_sps(args)
    return {
        "rlkit_steps_per_s": round(rlkit_sps, 1),
        "sb3_steps_per_s": round(sb3_sps, 1),
        "speedup": round(rlkit_sps / sb3_sps, 2),
        "settings": {"env": "Pong (frame skip 4, 84x84x4)", "network": "Nature CNN",
                     "buffer_size": args.buffer_size, "batch_size": 32, "train_freq": 4,
                     "warmup_steps": args.warmup, "timed_steps": args.steps},
    }


SECTIONS: dict[str, Callable[[argparse.Namespace], dict[str, Any]]] = {
    "dqn": bench_dqn,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", choices=sorted(SECTIONS), action="append",
                        help="run only this section (repeatable); default: all")
    parser.add_argument("--steps", type=int, default=3000, help="timed agent steps per library")
    parser.add_argument("--warmup", type=int, default=1000,
                        help="untimed agent steps first (= learning_starts)")
    parser.add_argument("--buffer-size", type=int, default=100_000)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (both libraries)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, help="also write the result here")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    result: dict[str, Any] = {
        "machine": {"cpu": platform.processor() or platform.machine(), "device": args.device,
                    "torch_threads": args.threads, "torch": torch.__version__},
    }
    for name in args.only or list(SECTIONS):
        result[name] = SECTIONS[name](args)
    text = json.dumps(result, indent=2)
    print(text)
    if args.json is not None:
        args.json.write_text(text + "\n")


if __name__ == "__main__":
    main()

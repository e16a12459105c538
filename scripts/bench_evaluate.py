"""Benchmark evaluation: games played side by side against one at a time; prints JSON.

``rlkit evaluate`` and the runner's evaluations play up to ``PARALLEL_GAMES`` games side by side
with one batched forward pass per step (``agents.evaluate.play_games``). The reference is the same
function with one env, which plays the games one after another with one forward pass per step,
as evaluation did before. Both play ``--games`` games of the checkpoint's env with its policy;
the two take turns ``--repeats`` times and the rates are medians, so background load hits both
alike. Games differ between the two (other env seeds), so the rate is games per second *and*
agent steps per second; the ratio is of agent steps per second.

    python scripts/bench_evaluate.py RUN/checkpoints/last.pt [--games 100] [--repeats 3]
"""

from __future__ import annotations

import platform
import statistics
import sys
import time
from typing import Any

import numpy as np
import torch

from agents.cli import _Parser, print_json_report
from agents.environments import PARALLEL_GAMES, open_eval_envs
from agents.evaluate import play_games, read_checkpoint
from agents.policy import build_policy
from rlkit.device import set_cpu_threads


def timed_play(checkpoint: str, games: int, side_by_side: bool, seed: int) -> dict[str, float]:
    """Play ``games`` games with one env or ``min(games, PARALLEL_GAMES)``; time the playing."""
    ckpt, cfg = read_checkpoint(checkpoint)
    set_cpu_threads(cfg.train.threads)  # as rlkit evaluate plays
    with open_eval_envs(cfg.env, games if side_by_side else 1) as envs:
        policy = build_policy(cfg, ckpt["learner"], envs[0].observation_space,
                              envs[0].action_space, torch.device("cpu"), seed=seed)
        start = time.perf_counter()
        result = play_games(lambda obs: policy.act(obs, epsilon=0.05), envs, games, seed=seed)
        seconds = time.perf_counter() - start
    steps = int(np.sum(result.lengths))
    return {"seconds": seconds, "agent_steps": steps, "steps_per_s": steps / seconds,
            "games_per_s": games / seconds, "mean_score": float(np.mean(result.returns))}


def bench(checkpoint: str, games: int, repeats: int) -> dict[str, Any]:
    runs: dict[str, list[dict[str, float]]] = {"one_at_a_time": [], "side_by_side": []}
    for repeat in range(repeats):
        for name in runs:  # alternate, so that background load hits both
            runs[name].append(timed_play(checkpoint, games, name == "side_by_side", repeat))
    rates = {name: statistics.median(r["steps_per_s"] for r in rs) for name, rs in runs.items()}
    return {
        "checkpoint": checkpoint, "games": games, "repeats": repeats,
        "parallel_games": min(games, PARALLEL_GAMES), "torch_threads": torch.get_num_threads(),
        "machine": platform.processor() or platform.machine(),
        "median_steps_per_s": rates,
        "ratio_side_by_side": rates["side_by_side"] / rates["one_at_a_time"],
        "runs": runs,
    }


def main(argv: list[str] | None = None) -> int:
    parser = _Parser(prog="bench_evaluate.py", description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", help="an rlkit train checkpoint (or rlkit export file)")
    parser.add_argument("--games", type=int, default=100, help="games per measurement")
    parser.add_argument("--repeats", type=int, default=3, help="measurements of each (median)")
    args = parser.parse_args(argv)
    if args.games < 1 or args.repeats < 1:
        parser.error("--games and --repeats must be >= 1")
    return print_json_report("bench_evaluate.py",
                             lambda: bench(args.checkpoint, args.games, args.repeats))


if __name__ == "__main__":
    sys.exit(main())

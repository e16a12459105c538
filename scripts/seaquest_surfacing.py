"""Does a MinAtar Seaquest policy surface for air? Plays games from a checkpoint, prints JSON.

A Seaquest agent that shoots but never surfaces scores a handful of points per game and then
runs out of oxygen; surfacing (with divers) is what the higher scores need. The score alone does
not tell the two apart, so this reads MinAtar's game state on every step: how often the
submarine rose to the surface, and the oxygen left when each game ended (-1: it ran out).

    python scripts/seaquest_surfacing.py RUN/checkpoints/last.pt --games 20 --seed 100
"""

from __future__ import annotations

import sys
from typing import Any

import numpy as np
import torch

from agents.cli import USER_ERRORS, _Parser, print_json_report
from agents.environments import make_eval_env
from agents.evaluate import read_checkpoint
from agents.policy import build_policy
from rlkit.device import set_cpu_threads


def surfacing_report(checkpoint: str, games: int, seed: int) -> dict[str, Any]:
    """Play ``games`` games (game ``k`` seeded ``seed + k``) with the checkpoint's sampled
    policy, as ``rlkit evaluate`` plays it; count surfacings and read the final oxygen."""
    ckpt, cfg = read_checkpoint(checkpoint)
    if not cfg.env.id.startswith("MinAtar/Seaquest-"):
        raise ValueError(f"{checkpoint} was trained on {cfg.env.id}, not MinAtar Seaquest; pass "
                         "a Seaquest checkpoint")
    set_cpu_threads(cfg.train.threads)  # as rlkit evaluate plays
    env = make_eval_env(cfg.env)
    policy = build_policy(cfg, ckpt["learner"], env.observation_space, env.action_space,
                          torch.device("cpu"), seed=seed)
    state = env.unwrapped.game.env  # MinAtar's Seaquest: sub_y 0 is the surface
    scores, surfacings, oxygen = [], [], []
    for game in range(games):
        obs, _ = env.reset(seed=seed + game)
        score, rises, below, done = 0.0, 0, state.sub_y > 0, False
        while not done:
            action = policy.act(np.asarray(obs)[None])[0]
            obs, reward, terminated, truncated, _ = env.step(action)
            score += float(reward)
            rises += int(below and state.sub_y == 0)
            below = state.sub_y > 0
            done = terminated or truncated
        scores.append(score)
        surfacings.append(rises)
        oxygen.append(int(state.oxygen))
    env.close()
    return {
        "checkpoint": checkpoint, "env_id": cfg.env.id, "games": games, "seed": seed,
        "scores": scores, "surfacings": surfacings, "oxygen_at_end": oxygen,
        "games_with_a_surfacing": sum(r > 0 for r in surfacings),
        "games_out_of_oxygen": sum(o < 0 for o in oxygen),
    }


def main(argv: list[str] | None = None) -> int:
    parser = _Parser(prog="seaquest_surfacing.py", description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", help="a MinAtar Seaquest checkpoint (rlkit train)")
    parser.add_argument("--games", type=int, default=20, help="games to play (default 20)")
    parser.add_argument("--seed", type=int, default=100, help="game k is seeded SEED + k")
    args = parser.parse_args(argv)
    return print_json_report(
        "seaquest_surfacing.py", lambda: surfacing_report(args.checkpoint, args.games, args.seed),
        (ValueError, *USER_ERRORS))


if __name__ == "__main__":
    sys.exit(main())

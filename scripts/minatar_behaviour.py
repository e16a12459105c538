"""What does a MinAtar policy do? Plays games from a checkpoint, reads the game state, prints JSON.

The score alone does not tell a plateau's strategies apart, so this plays whole games with the
checkpoint's policy, as ``rlkit evaluate`` plays it (DQN at ``--epsilon``, an actor-critic
sampling), and reads MinAtar's game state on every step:

- **Seaquest**: how often the submarine rose to the surface, and the oxygen left when each game
  ended (-1: it ran out). A policy that shoots but never surfaces scores a handful of points per
  game and runs out of oxygen; surfacing with divers is what higher scores need.
- **Breakout**: whether the paddle follows the ball. While the ball falls towards a column other
  than the paddle's, the share of the policy's actions that move the paddle towards it, away
  from it, or leave it still; the share of steps the paddle spends in the four centre columns;
  and how far (in columns) the paddle was from the ball when it was lost.

    python scripts/minatar_behaviour.py RUN/checkpoints/last.pt --games 20 --seed 100
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from typing import Any, NamedTuple

import numpy as np
import torch

from agents.cli import USER_ERRORS, _Parser, print_json_report
from agents.config import Config
from agents.environments import make_eval_env
from agents.evaluate import read_checkpoint
from agents.policy import build_policy
from rlkit.device import set_cpu_threads

CENTRE_COLUMNS = (3, 4, 5, 6)
"""Breakout's four middle columns (of 0-9), where the paddle starts (column 4)."""


class Step(NamedTuple):
    """One step of a game: what the report reads of MinAtar's game state before and after it,
    the action the policy chose (one of ``"nlurdf"``) and what the step returned."""

    game: int
    before: Any
    after: Any
    action: str
    reward: float
    done: bool


def play(ckpt: dict[str, Any], cfg: Config, games: int, seed: int, epsilon: float,
         read: Callable[[Any], Any]) -> Iterator[Step]:
    """Play ``games`` games (game ``k`` seeded ``seed + k``) of the checkpoint's policy, as
    ``rlkit evaluate`` plays it, reading the game state with ``read`` around every step."""
    set_cpu_threads(cfg.train.threads)  # as rlkit evaluate plays
    env = make_eval_env(cfg.env)
    policy = build_policy(cfg, ckpt["learner"], env.observation_space, env.action_space,
                          torch.device("cpu"), seed=seed)
    minatar: Any = env.unwrapped  # MinAtar's gymnasium env: action_set, game
    state = minatar.game.env  # MinAtar's game object, stepped in place
    try:
        for game in range(games):
            obs, _ = env.reset(seed=seed + game)
            done = False
            while not done:
                action = int(policy.act(np.asarray(obs)[None], epsilon=epsilon)[0])
                before = read(state)
                obs, reward, terminated, truncated, _ = env.step(action)
                done = bool(terminated or truncated)
                yield Step(game, before, read(state), state.action_map[minatar.action_set[action]],
                           float(reward), done)
    finally:
        env.close()


def seaquest_report(steps: Iterator[Step], games: int) -> dict[str, Any]:
    """Scores, surfacings per game (the submarine at row 0 after being below), end oxygen."""
    scores, rises, oxygen = [0.0] * games, [0] * games, [0] * games
    for step in steps:  # before / after: (sub_y, oxygen)
        scores[step.game] += step.reward
        rises[step.game] += int(step.before[0] > 0 and step.after[0] == 0)
        if step.done:
            oxygen[step.game] = step.after[1]
    return {"scores": scores, "surfacings": rises, "oxygen_at_end": oxygen,
            "games_with_a_surfacing": sum(r > 0 for r in rises),
            "games_out_of_oxygen": sum(o < 0 for o in oxygen)}


def breakout_report(steps: Iterator[Step], games: int) -> dict[str, Any]:
    """Scores, and whether the paddle follows a falling ball (see the module docstring)."""
    scores = [0.0] * games
    moves = {"towards": 0, "away": 0, "still": 0}
    centre = total = 0
    miss_distance: list[int] = []
    for step in steps:  # before: (ball_x, paddle column, ball direction; 2 and 3 fall)
        ball_x, paddle, direction = step.before
        scores[step.game] += step.reward
        total += 1
        centre += paddle in CENTRE_COLUMNS
        if direction in (2, 3) and ball_x != paddle:
            move = {"l": -1, "r": 1}.get(step.action, 0)
            side = 1 if ball_x > paddle else -1
            moves["still" if move == 0 else "towards" if move == side else "away"] += 1
        if step.done:
            miss_distance.append(abs(ball_x - paddle))
    counted = sum(moves.values())
    return {"scores": scores,
            "falling_ball_elsewhere": {k: round(v / max(counted, 1), 4) for k, v in moves.items()},
            "falling_ball_elsewhere_steps": counted,
            "paddle_in_centre_columns": round(centre / max(total, 1), 4),
            "columns_from_ball_when_lost": miss_distance}


class GameReport(NamedTuple):
    read: Callable[[Any], Any]
    """What to read of MinAtar's game object before and after each step."""
    summarise: Callable[[Iterator[Step], int], dict[str, Any]]


REPORTS = {
    "Breakout": GameReport(lambda s: (int(s.ball_x), int(s.pos), int(s.ball_dir)),
                           breakout_report),
    "Seaquest": GameReport(lambda s: (int(s.sub_y), int(s.oxygen)), seaquest_report),
}
"""The games this script reads, and how."""


def behaviour_report(checkpoint: str, games: int, seed: int, epsilon: float) -> dict[str, Any]:
    """The report of the checkpoint's game (``ValueError`` for other games)."""
    ckpt, cfg = read_checkpoint(checkpoint)
    game_name = cfg.env.id.removeprefix("MinAtar/").split("-")[0]
    if not cfg.env.id.startswith("MinAtar/") or game_name not in REPORTS:
        raise ValueError(f"{checkpoint} was trained on {cfg.env.id}; this script reads MinAtar "
                         f"{' and '.join(REPORTS)} only: pass a checkpoint of one of them")
    report = REPORTS[game_name]
    steps = play(ckpt, cfg, games, seed, epsilon, report.read)
    summary = report.summarise(steps, games)
    return {"checkpoint": checkpoint, "env_id": cfg.env.id, "games": games, "seed": seed,
            "epsilon": epsilon, "mean_score": float(np.mean(summary["scores"])), **summary}


def main(argv: list[str] | None = None) -> int:
    parser = _Parser(prog="minatar_behaviour.py", description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", help="a MinAtar Breakout or Seaquest checkpoint")
    parser.add_argument("--games", type=int, default=20, help="games to play (default 20)")
    parser.add_argument("--seed", type=int, default=100, help="game k is seeded SEED + k")
    parser.add_argument("--epsilon", type=float, default=0.05,
                        help="DQN's random-action probability, as rlkit evaluate (default 0.05; "
                        "actor-critics sample their policy and ignore it)")
    args = parser.parse_args(argv)
    return print_json_report(
        "minatar_behaviour.py",
        lambda: behaviour_report(args.checkpoint, args.games, args.seed, args.epsilon),
        (ValueError, *USER_ERRORS))


if __name__ == "__main__":
    sys.exit(main())

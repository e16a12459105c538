"""Learning tests: every learner solves CartPole-v1 on three seeds, by Gym's definition.

Each test trains through the CLI (``rlkit train``), which stops once 100 confirmation games
clear ``train.target_score`` = 475 (runner module doc), then plays 100 further games with
``rlkit evaluate`` on a seed that no training or evaluation used, for both ``last.pt`` and
``best.pt``: each must average at least 475 (Gym's CartPole-v1 threshold over 100 episodes).
The configs compute on one thread, so the seeds train in parallel worker processes, one per
core (``parallel_runs``), with the floats each would compute alone.

The seeds were fixed before any of these runs was looked at and are not to be changed to make a
test pass: a failing seed means the config or the stopping rule is not robust. Nothing here
relies on bit-identical floats: another CPU trains another trajectory, and the configs leave
margin in score and in budget for that.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from parallel_runs import Runs, run_selected_seeds

from rlkit.checkpoint import load_checkpoint

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
SEEDS = (101, 202, 303)
"""Training seeds, chosen before any result was seen."""
EVAL_SEED = 12345
"""Games of the final evaluation: a seed outside training's, so they are fresh games."""
SOLVED = 475.0
"""Gym's CartPole-v1 threshold: mean score over 100 consecutive episodes."""

LEARNERS = {
    "dqn": ("cartpole_dqn.yaml", []),
    "double_dqn_per": (
        "cartpole_dqn.yaml",
        ["--set", "agent.algo=double_dqn", "--set", "agent.prioritized=true"],
    ),
    "paac": ("cartpole_paac.yaml", []),
    "ppo": ("cartpole_ppo.yaml", []),
}
"""Learner -> (config, overrides). Double DQN + PER is the DQN config with two overrides."""


def evaluation_args(learner: str) -> list[str]:
    """The policy each learner is judged by.

    DQN: the DQN protocol, epsilon-greedy with epsilon 0.05 (Mnih et al. 2015); its config
    trains down to the same epsilon, so the agent has learned to recover from random pushes.
    PAAC and PPO: greedy, the argmax of the learned policy. PAAC's entropy bonus deliberately
    keeps a little randomness in the sampled policy, which costs CartPole dearly (one wrong push
    late in a game can end it) and says nothing about what was learned; Atari evaluation
    samples, as the original did. The configs' periodic evaluations are greedy too
    (``train.eval_greedy``), so training stops on the same policy this test scores.
    """
    return ["--greedy"] if learner in ("paac", "ppo") else ["--epsilon", "0.05"]


CHECKPOINTS = ("last.pt", "best.pt")
"""Both checkpoints a run leaves must be solved."""


def commands(learner: str, seed: int, workdir: Path) -> list[list[str]]:
    """Train ``learner`` on ``seed``, then play 100 fresh games with ``last.pt`` and ``best.pt``."""
    config, overrides = LEARNERS[learner]
    run = workdir / "run"
    train = ["train", str(CONFIGS / config), "--run-dir", str(run), "--seed", str(seed),
             "--set", "train.progress=false", *overrides]
    games = ["--episodes", "100", "--seed", str(EVAL_SEED), *evaluation_args(learner)]
    return [train, *(["evaluate", str(run / "checkpoints" / name), *games,
                      "--json", str(workdir / f"{name}.json")] for name in CHECKPOINTS)]


@pytest.fixture(scope="module")
def solved_runs(request: pytest.FixtureRequest,
                tmp_path_factory: pytest.TempPathFactory) -> Runs:
    """Every selected (learner, seed) trained and evaluated, seeds in parallel (one per core)."""
    return run_selected_seeds(request, tmp_path_factory, "test_cartpole_is_solved", commands)


@pytest.mark.slow
@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("learner", sorted(LEARNERS))
def test_cartpole_is_solved(solved_runs: Runs, learner: str, seed: int) -> None:
    workdir, finished = solved_runs[(learner, seed)]
    assert finished.returncode == 0, finished.output_tail
    last = load_checkpoint(workdir / "run" / "checkpoints" / "last.pt")
    agent = last["config"]["agent"]
    algos = {"dqn": "dqn", "double_dqn_per": "double_dqn", "paac": "paac", "ppo": "ppo"}
    assert agent["algo"] == algos[learner]
    assert agent.get("prioritized", False) == (learner == "double_dqn_per")
    assert last["runner"]["solved_at"] is not None, "the budget ran out before the target held"
    for name in CHECKPOINTS:
        summary = json.loads((workdir / f"{name}.json").read_text())
        assert summary["episodes"] == 100
        spread = {k: summary[k] for k in ("mean", "median", "std", "min", "max")}
        assert summary["mean"] >= SOLVED, (name, spread)

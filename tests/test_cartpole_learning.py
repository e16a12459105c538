"""Learning tests: every learner solves CartPole-v1 on three seeds, by Gym's definition.

Each test trains through the CLI (``rlkit train``), which stops once 100 confirmation games
clear ``train.target_score`` = 475 (runner module doc), then plays 100 further games with
``rlkit evaluate`` on a seed that no training or evaluation used, for both ``last.pt`` and
``best.pt``: each must average at least 475 (Gym's CartPole-v1 threshold over 100 episodes).

The seeds were fixed before any of these runs was looked at and are not to be changed to make a
test pass: a failing seed means the config or the stopping rule is not robust. Nothing here
relies on bit-identical floats: another CPU trains another trajectory, and the configs leave
margin in score and in budget for that.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agents.cli import main
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


@pytest.mark.slow
@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("learner", sorted(LEARNERS))
def test_cartpole_is_solved(tmp_path: Path, learner: str, seed: int) -> None:
    config, overrides = LEARNERS[learner]
    run = tmp_path / "run"
    train = ["train", str(CONFIGS / config), "--run-dir", str(run), "--seed", str(seed)]
    assert main([*train, "--set", "train.progress=false", *overrides]) == 0
    last = load_checkpoint(run / "checkpoints" / "last.pt")
    agent = last["config"]["agent"]
    algos = {"dqn": "dqn", "double_dqn_per": "double_dqn", "paac": "paac", "ppo": "ppo"}
    assert agent["algo"] == algos[learner]
    assert agent.get("prioritized", False) == (learner == "double_dqn_per")
    assert last["runner"]["solved_at"] is not None, "the budget ran out before the target held"
    for name in ("last.pt", "best.pt"):
        out = tmp_path / f"{name}.json"
        games = ["--episodes", "100", "--seed", str(EVAL_SEED), *evaluation_args(learner)]
        assert main(["evaluate", str(run / "checkpoints" / name), *games, "--json", str(out)]) == 0
        summary = json.loads(out.read_text())
        assert summary["episodes"] == 100
        spread = {k: summary[k] for k in ("mean", "median", "std", "min", "max")}
        assert summary["mean"] >= SOLVED, (name, spread)

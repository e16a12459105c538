"""Learning tests on an Atari-like game: DQN and PAAC learn MinAtar Breakout within a small budget.

Each test trains the published MinAtar config through the CLI (``rlkit train``) for a fixed number
of frames (MinAtar has no frame skip: one agent step is one frame), then plays 30 games with
``rlkit evaluate`` on a seed no training used. Random play scores about 0.5 per game.

Calibration (seeds 1, 2, 3, never the tests' seeds; a 2-core CPU; 30 games each): DQN after
100k frames scored 2.9 / 3.5 / 3.2 in about 67 s of training, PAAC after 300k frames (its
learning rate annealed over that budget) 2.6 / 2.9 / 2.6 in about 36 s. The threshold, 1.5 for
both, is three times random play and about half the weakest calibration seed: a seed that fails
means the config has become fragile, not that the threshold wants lowering.

The configs compute on one thread, so the seeds train in parallel worker processes, one per core
(``parallel_runs``), with the floats each would compute alone. The seeds were fixed before any
of these runs was looked at. Nothing relies on bit-identical floats: another CPU trains another
trajectory, and the thresholds leave room for that.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from parallel_runs import Runs, run_selected_seeds

pytest.importorskip("minatar", reason="the MinAtar extra: pip install -e '.[minatar]'")

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
SEEDS = (11, 22)
"""Training seeds, chosen before any result was seen."""
EVAL_SEED = 12345
EVAL_GAMES = 30

LEARNERS = {
    "dqn": ("minatar_dqn.yaml", 100_000, ["--epsilon", "0.05"]),
    "paac": ("minatar_paac.yaml", 300_000, []),
}
"""Learner -> (config, frames of training, evaluation policy: the config's own protocol)."""
THRESHOLD = 1.5
"""Mean score over ``EVAL_GAMES`` games that both learners must reach on MinAtar Breakout."""


def commands(learner: str, seed: int, workdir: Path) -> list[list[str]]:
    """Train ``learner`` on ``seed`` for its budget, then play ``EVAL_GAMES`` fresh games."""
    config, frames, policy = LEARNERS[learner]
    run = workdir / "run"
    train = ["train", str(CONFIGS / config), "--run-dir", str(run), "--seed", str(seed),
             "--steps", str(frames), "--set", "train.progress=false",
             "--set", "train.eval_every=0"]
    games = ["--episodes", str(EVAL_GAMES), "--seed", str(EVAL_SEED), *policy]
    evaluate = ["evaluate", str(run / "checkpoints" / "last.pt"), *games,
                "--json", str(workdir / "eval.json")]
    return [train, evaluate]


@pytest.fixture(scope="module")
def trained_runs(request: pytest.FixtureRequest,
                 tmp_path_factory: pytest.TempPathFactory) -> Runs:
    """Every selected (learner, seed) trained and evaluated, seeds in parallel (one per core)."""
    return run_selected_seeds(request, tmp_path_factory,
                              "test_minatar_breakout_is_learned", commands)


@pytest.mark.slow
@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("learner", sorted(LEARNERS))
def test_minatar_breakout_is_learned(trained_runs: Runs, learner: str, seed: int) -> None:
    workdir, finished = trained_runs[(learner, seed)]
    assert finished.returncode == 0, finished.output_tail
    summary = json.loads((workdir / "eval.json").read_text())
    assert summary["env_id"] == "MinAtar/Breakout-v0" and summary["episodes"] == EVAL_GAMES
    spread = {k: summary[k] for k in ("mean", "median", "min", "max")}
    assert summary["mean"] >= THRESHOLD, spread

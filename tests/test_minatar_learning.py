"""Learning tests on an Atari-like game: DQN and PAAC learn MinAtar Breakout within a small budget.

Each test trains the published MinAtar config through the CLI (``rlkit train``) for a fixed number
of frames (MinAtar has no frame skip: one agent step is one frame), then plays 30 games with
``rlkit evaluate`` on a seed no training used. Random play scores about 0.5 per game.

Calibration (seeds 1, 2, 3, never the tests' seeds; a 2-core CPU; 30 games each): DQN after
100k frames scored 2.9 / 3.5 / 3.2 in about 67 s of training, PAAC after 300k frames (its
learning rate annealed over that budget) 2.6 / 2.9 / 2.6 in about 36 s. The threshold, 1.5 for
both, is three times random play and about half the weakest calibration seed: a seed that fails
means the config has become fragile, not that the threshold wants lowering.

The seeds were fixed before any of these runs was looked at. Nothing relies on bit-identical
floats: another CPU trains another trajectory, and the thresholds leave room for that.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("minatar", reason="the MinAtar extra: pip install -e '.[minatar]'")

from agents.cli import main  # noqa: E402

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


@pytest.mark.slow
@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("learner", sorted(LEARNERS))
def test_minatar_breakout_is_learned(tmp_path: Path, learner: str, seed: int) -> None:
    config, frames, policy = LEARNERS[learner]
    run = tmp_path / "run"
    train = ["train", str(CONFIGS / config), "--run-dir", str(run), "--seed", str(seed)]
    quiet = ["--set", "train.progress=false", "--set", "train.eval_every=0"]
    assert main([*train, "--steps", str(frames), *quiet]) == 0
    out = tmp_path / "eval.json"
    games = ["--episodes", str(EVAL_GAMES), "--seed", str(EVAL_SEED), *policy, "--json", str(out)]
    assert main(["evaluate", str(run / "checkpoints" / "last.pt"), *games]) == 0
    summary = json.loads(out.read_text())
    assert summary["env_id"] == "MinAtar/Breakout-v0" and summary["episodes"] == EVAL_GAMES
    spread = {k: summary[k] for k in ("mean", "median", "min", "max")}
    assert summary["mean"] >= THRESHOLD, spread

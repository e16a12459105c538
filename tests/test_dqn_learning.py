"""Learning tests: configs/cartpole_dqn.yaml trains on the CPU and ``rlkit evaluate`` then scores
>= 475 over 10 games under the DQN protocol (epsilon 0.05), for two seeds; the same with Double
DQN + prioritised replay. Each run takes about 1-2 minutes on a laptop CPU."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agents.cli import main
from rlkit.checkpoint import load_checkpoint

CARTPOLE = str(Path(__file__).resolve().parents[1] / "configs" / "cartpole_dqn.yaml")
VARIANTS = {
    "dqn": [],
    "double_dqn_per": ["--set", "agent.algo=double_dqn", "--set", "agent.prioritized=true"],
}


@pytest.mark.slow
@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_cartpole_is_solved(tmp_path, variant, seed):
    run = tmp_path / "run"
    assert main(["train", CARTPOLE, "--run-dir", str(run), "--seed", str(seed),
                 "--set", "train.progress=false", *VARIANTS[variant]]) == 0
    best = run / "checkpoints" / "best.pt"
    algo = load_checkpoint(best)["config"]["agent"]
    assert algo["algo"] == ("dqn" if variant == "dqn" else "double_dqn")
    assert algo["prioritized"] == (variant != "dqn")
    out = tmp_path / "eval.json"
    assert main(["evaluate", str(best), "--episodes", "10", "--json", str(out)]) == 0
    summary = json.loads(out.read_text())
    assert summary["episodes"] == 10
    assert summary["mean"] >= 475, summary

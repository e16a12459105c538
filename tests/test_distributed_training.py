"""Data-parallel training end to end on CPU/gloo: `rlkit train --nproc 2` through torchrun,
rank-0-only outputs, exact resume with the same N, and a clear error with another N."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from agents.cli import main
from rlkit.checkpoint import load_checkpoint

ROOT = Path(__file__).resolve().parents[1]
CARTPOLE_DQN = str(ROOT / "configs" / "cartpole_dqn.yaml")
SMALL_DQN = ["--set", "agent.learning_starts=40", "--set", "agent.train_freq=4",
             "--set", "agent.batch_size=8", "--set", "agent.mlp_hidden=[8]",
             "--set", "agent.epsilon_decay_steps=200", "--set", "agent.target_update_steps=20",
             "--set", "env.num_envs=2", "--set", "train.eval_every=0",
             "--set", "train.log_every=40", "--set", "train.progress=false",
             "--set", "checkpoint.every=0", "--set", "train.threads=1",
             "--set", "train.device=cpu"]


def rlkit(*argv: str, timeout: float = 180) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(name, None)
    return subprocess.run([sys.executable, "-m", "agents.cli", *argv], capture_output=True,
                          text=True, timeout=timeout, env=env, cwd=ROOT)


@pytest.fixture(scope="module")
def dqn_runs(tmp_path_factory) -> dict[str, Path]:
    """Two 2-rank DQN runs: 320 steps straight, and 160 steps + resume to 320."""
    base = tmp_path_factory.mktemp("dqn2")
    straight, split = base / "straight", base / "split"
    for run, steps in ((straight, 320), (split, 160)):
        proc = rlkit("train", CARTPOLE_DQN, "--nproc", "2", "--steps", str(steps),
                     "--run-dir", str(run), *SMALL_DQN)
        assert proc.returncode == 0, proc.stderr[-3000:]
    proc = rlkit("train", "--resume", str(split), "--nproc", "2", "--steps", "320")
    assert proc.returncode == 0, proc.stderr[-3000:]
    return {"straight": straight, "split": split}


def test_two_rank_run_writes_one_checkpoint_with_every_rank(dqn_runs):
    ckpt = load_checkpoint(dqn_runs["straight"] / "checkpoints" / "last.pt")
    assert ckpt["world_size"] == 2 and len(ckpt["ranks"]) == 1
    learner, other = ckpt["learner"], ckpt["ranks"][0]["learner"]
    assert learner["env_steps"] == other["env_steps"] == 320  # global agent steps, summed
    for key, value in learner["q"].items():  # the ranks' networks agree bit for bit
        assert torch.equal(value, other["q"][key]), key
    assert learner["update"]["updates"] > 0
    # each rank played its own envs and explored with its own generator
    assert not (learner["obs"] == other["obs"]).all()
    assert learner["rng"] != other["rng"]
    # rank 0 alone writes TensorBoard files
    assert len(list(dqn_runs["straight"].glob("events.out.tfevents.*"))) == 1


def test_resume_with_same_ranks_continues_exactly(dqn_runs):
    a = load_checkpoint(dqn_runs["straight"] / "checkpoints" / "last.pt")
    b = load_checkpoint(dqn_runs["split"] / "checkpoints" / "last.pt")
    assert b["learner"]["env_steps"] == 320
    for rank_a, rank_b in ((a, b), (a["ranks"][0], b["ranks"][0])):
        for key, value in rank_a["learner"]["q"].items():
            assert torch.equal(value, rank_b["learner"]["q"][key]), key
        assert rank_a["learner"]["rng"] == rank_b["learner"]["rng"]


def test_resume_with_another_world_size_fails_with_one_line(dqn_runs, capsys):
    code = main(["train", "--resume", str(dqn_runs["split"]), "--steps", "400"])
    err = capsys.readouterr().err.strip()
    assert code == 1
    assert err == ("rlkit: error: checkpoint was written by 2 rank(s), this run has 1; "
                   "resume with --nproc 2")


def test_nproc_mistakes(capsys, monkeypatch, tmp_path):
    code = main(["train", CARTPOLE_DQN, "--nproc", "0", "--run-dir", str(tmp_path / "r")])
    assert code == 1
    assert capsys.readouterr().err.strip() == "rlkit: error: --nproc must be >= 1, got 0"
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    code = main(["train", CARTPOLE_DQN, "--nproc", "2", "--run-dir", str(tmp_path / "r")])
    assert code == 1
    assert capsys.readouterr().err.strip().startswith(
        "rlkit: error (rank 1): --nproc starts its own ranks; under torchrun leave it out")

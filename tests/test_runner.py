"""Runner: run directory layout, exact resume, SIGINT checkpoint, and an Atari smoke run
(train -> checkpoint -> resume -> evaluate with JSON and video)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch

from agents.cli import main
from agents.config import load_config
from rlkit.checkpoint import load_checkpoint

ROOT = Path(__file__).resolve().parents[1]
CARTPOLE = str(ROOT / "configs" / "cartpole_dqn.yaml")
PONG = str(ROOT / "configs" / "pong_dqn.yaml")

SMALL_CARTPOLE = [
    "--set", "train.progress=false", "--set", "agent.learning_starts=100",
    "--set", "agent.train_freq=4", "--set", "agent.gradient_steps=2",
    "--set", "agent.target_update_steps=20", "--set", "agent.batch_size=16",
    "--set", "agent.mlp_hidden=[16]", "--set", "agent.epsilon_decay_steps=400",
    "--set", "env.num_envs=2", "--set", "train.log_every=100", "--set", "train.eval_every=300",
    "--set", "train.eval_episodes=2", "--set", "checkpoint.every=250",
]


def params(path: Path) -> dict[str, torch.Tensor]:
    return load_checkpoint(path)["learner"]["q"]


def test_resume_is_exact(tmp_path):
    """N steps straight == N/2, then --resume to N: identical parameters and counters."""
    straight, split = tmp_path / "straight", tmp_path / "split"
    assert main(["train", CARTPOLE, "--run-dir", str(straight), "--steps", "800",
                 *SMALL_CARTPOLE]) == 0
    assert main(["train", CARTPOLE, "--run-dir", str(split), "--steps", "400",
                 *SMALL_CARTPOLE]) == 0
    half = load_checkpoint(split / "checkpoints" / "last.pt")
    assert half["learner"]["env_steps"] == 400 and half["learner"]["replay"] is not None
    assert main(["train", "--resume", str(split), "--steps", "800"]) == 0

    a, b = (load_checkpoint(d / "checkpoints" / "last.pt") for d in (straight, split))
    assert a["learner"]["env_steps"] == b["learner"]["env_steps"] == 800
    assert a["learner"]["update"]["updates"] == b["learner"]["update"]["updates"] > 0
    for name, tensor in a["learner"]["q"].items():
        assert torch.equal(tensor, b["learner"]["q"][name]), name
    for name, tensor in a["learner"]["target"].items():
        assert torch.equal(tensor, b["learner"]["target"][name]), name
    assert a["runner"]["best_score"] == b["runner"]["best_score"]
    # the run directory: resolved config, last/best checkpoints, TensorBoard events
    assert load_config(straight / "config.yaml").train.steps == 800
    assert (straight / "checkpoints" / "best.pt").exists()
    assert list(straight.glob("events.out.tfevents.*"))


def test_sigint_writes_checkpoint_and_exits_zero(tmp_path):
    run = tmp_path / "run"
    proc = subprocess.Popen(
        [sys.executable, "-m", "agents.cli", "train", CARTPOLE, "--run-dir", str(run),
         "--steps", "10000000", *SMALL_CARTPOLE],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        deadline = time.time() + 90
        while not (run / "checkpoints" / "last.pt").exists() and time.time() < deadline:
            time.sleep(0.2)  # the first periodic checkpoint proves the loop is running
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
    assert proc.returncode == 0, err
    assert "SIGINT at step" in out and f"rlkit train --resume {run}" in out
    assert "Traceback" not in err
    ckpt = load_checkpoint(run / "checkpoints" / "last.pt")
    assert ckpt["learner"]["env_steps"] > 250


def test_pong_smoke_train_resume_evaluate(tmp_path, capsys):
    """A few thousand Pong steps with a tiny buffer, resumed, then one capped evaluation game."""
    run = tmp_path / "pong"
    tiny = ["--set", "train.progress=false", "--set", "agent.buffer_size=2000",
            "--set", "agent.learning_starts=600", "--set", "agent.batch_size=8",
            "--set", "agent.train_freq=8",
            "--set", "agent.target_update_steps=400", "--set", "train.log_every=500",
            "--set", "checkpoint.every=1000", "--set", "env.max_episode_frames=1000",
            "--set", "train.threads=1", "--set", "env.backend=sync"]
    assert main(["train", PONG, "--run-dir", str(run), "--steps", "1200", *tiny]) == 0
    first = load_checkpoint(run / "checkpoints" / "last.pt")
    assert first["learner"]["env_steps"] == 1200
    assert first["learner"]["replay"] is not None  # 2000-transition buffer: saved (auto)
    assert main(["train", "--resume", str(run), "--steps", "1800"]) == 0
    second = load_checkpoint(run / "checkpoints" / "last.pt")
    assert second["learner"]["env_steps"] == 1800
    assert second["learner"]["update"]["updates"] == (1800 - 600) // 8 + 1
    capsys.readouterr()
    out_json = tmp_path / "eval.json"
    video = tmp_path / "video"
    assert main(["evaluate", str(run / "checkpoints" / "last.pt"), "--episodes", "1",
                 "--json", str(out_json), "--video", str(video)]) == 0
    printed = capsys.readouterr().out
    assert "mean " in printed and "over 1 games" in printed
    summary = json.loads(out_json.read_text())
    assert set(summary) == {"mean", "median", "std", "min", "max", "episodes", "returns"}
    assert summary["episodes"] == 1 and len(summary["returns"]) == 1
    assert -21 <= summary["mean"] <= 21
    assert (video / "game0.mp4").stat().st_size > 10_000


def test_resume_without_replay_refills_before_updating(tmp_path):
    run = tmp_path / "run"
    assert main(["train", CARTPOLE, "--run-dir", str(run), "--steps", "300", *SMALL_CARTPOLE,
                 "--set", "checkpoint.save_replay=false"]) == 0
    ckpt = load_checkpoint(run / "checkpoints" / "last.pt")
    assert ckpt["learner"]["replay"] is None
    updates = ckpt["learner"]["update"]["updates"]
    # the empty buffer is refilled for learning_starts (100) steps before the next update
    assert main(["train", "--resume", str(run), "--steps", "398"]) == 0
    after = load_checkpoint(run / "checkpoints" / "last.pt")["learner"]
    assert after["env_steps"] == 398 and after["update"]["updates"] == updates
    assert after["next_round"] == 300 + 100  # updates resume once the buffer is refilled

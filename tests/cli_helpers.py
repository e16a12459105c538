"""What several test modules share to drive the ``rlkit`` CLI in-process: the CartPole DQN config,
overrides that shrink it to a seconds-long run, and the one-line-error checks."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

from agents.cli import main

ROOT = Path(__file__).resolve().parents[1]
CARTPOLE = str(ROOT / "configs" / "cartpole_dqn.yaml")

SMALL_CARTPOLE = [
    "--set", "train.progress=false", "--set", "agent.learning_starts=100",
    "--set", "agent.train_freq=4", "--set", "agent.gradient_steps=2",
    "--set", "agent.target_update_steps=20", "--set", "agent.batch_size=16",
    "--set", "agent.mlp_hidden=[16]", "--set", "agent.epsilon_decay_steps=400",
    "--set", "env.num_envs=2", "--set", "train.log_every=100", "--set", "train.eval_every=300",
    "--set", "train.eval_episodes=2", "--set", "checkpoint.every=250",
]
"""CartPole DQN small enough to train, evaluate and checkpoint a few times in seconds."""


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    """``rlkit *argv`` in this process: (exit code, stdout, stderr)."""
    try:
        code = main(list(argv))
    except SystemExit as exc:  # argparse usage errors
        code = exc.code
    out, err = capsys.readouterr()
    return code, out, err


def one_error_line(err: str) -> str:
    """The single ``rlkit: error:`` line ``err`` must consist of (no traceback, nothing else)."""
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("rlkit: error: "), err
    assert "Traceback" not in err
    return lines[0]


def interrupt_when_checkpointed(argv: list[str], checkpoint: Path) -> subprocess.CompletedProcess:
    """Start ``argv`` (a command that drives runs), Ctrl-C it (SIGINT to it alone) once
    ``checkpoint`` exists, and return how it ended, output captured."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env)
    deadline = time.monotonic() + 120  # a guard against hanging, not a timing assertion
    while not checkpoint.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=120)
    return subprocess.CompletedProcess(argv, proc.returncode, stdout, stderr)

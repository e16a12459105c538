"""Running ``rlkit train`` / ``rlkit evaluate`` as child processes, for commands that drive many
runs (``rlkit search``, ``scripts/bench_learning.py``), and passing a stop signal on to them.

A run driven this way is an ordinary run directory: a Ctrl-C (or SIGTERM/SIGHUP) reaches each
child once, the trainer writes ``last.pt`` and exits, and the driver, run again, continues the
run with ``rlkit train --resume`` (``run_state`` and ``budget_reached`` tell where it stands).
"""

from __future__ import annotations

import contextlib
import os
import shlex
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from types import FrameType
from typing import Any

import agents

SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
"""Signals that stop a driver; SIGHUP (a closed terminal) reaches the trainers as SIGTERM, the
signals ``agents.runner`` checkpoints on."""


class Stopped(Exception):
    """The driver was signalled to stop; the runs it started are checkpointed."""


class Launcher:
    """Runs ``python -m agents.cli`` subprocesses and passes a stop signal on to them.

    Children get their own session, so a Ctrl-C in the terminal reaches them once, from here,
    and not twice (a second SIGINT while a trainer is closing would cut its shutdown short).
    ``log_to_files``: each child's stdout and stderr go to the log file ``run`` is given (runs
    side by side); else its stderr stays on this process's stderr and its stdout joins it.
    ``echo``: a prefix, e.g. ``"bench_learning"``, to print each command with on stderr; None:
    launch quietly.
    """

    def __init__(self, log_to_files: bool, echo: str | None = None) -> None:
        self.log_to_files = log_to_files
        self.echo = echo
        self.stop = threading.Event()
        self._children: set[subprocess.Popen] = set()
        self._lock = threading.Lock()
        # The children import the same ``agents`` package as this process.
        root = str(Path(agents.__file__).resolve().parents[1])
        path = os.environ.get("PYTHONPATH")
        self._env = {**os.environ, "PYTHONPATH": root + (os.pathsep + path if path else "")}

    def on_signal(self, signum: int, _frame: FrameType | None) -> None:
        """Signal handler: stop starting children and pass the signal to the running ones."""
        forward = signal.SIGINT if signum == signal.SIGINT else signal.SIGTERM
        self.stop.set()
        with self._lock:
            for child in self._children:
                child.send_signal(forward)

    @contextlib.contextmanager
    def forwarding_signals(self) -> Iterator[None]:
        """Install ``on_signal`` for ``SIGNALS`` (main thread only); restore the old handlers."""
        previous = {sig: signal.signal(sig, self.on_signal) for sig in SIGNALS}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def run(self, args: list[str], log: Path) -> int:
        """Run ``python -m agents.cli ARGS`` to completion; its exit code (``Stopped`` if the
        driver was stopped before or while it ran)."""
        argv = [sys.executable, "-m", "agents.cli", *args]
        with self._open_log(log) as out:
            with self._lock:
                if self.stop.is_set():
                    raise Stopped
                if self.echo is not None:
                    print(f"{self.echo}: {shlex.join(['rlkit', *args])}", file=sys.stderr,
                          flush=True)
                child = subprocess.Popen(
                    argv,
                    stdout=out,
                    stderr=out if self.log_to_files else None,
                    env=self._env,
                    start_new_session=True,
                )
                self._children.add(child)
            try:
                code = child.wait()
            finally:
                with self._lock:
                    self._children.discard(child)
        if self.stop.is_set():
            raise Stopped
        return code

    def _open_log(self, log: Path) -> Any:
        """The run's log file, or this process's stderr (one run at a time: the trainer's
        progress bar stays visible and stdout is left to the driver's own output)."""
        if self.log_to_files:
            log.parent.mkdir(parents=True, exist_ok=True)
            return log.open("a")
        return os.fdopen(os.dup(2), "w")


def run_state(run_dir: Path) -> dict[str, Any] | None:
    """Agent steps, running seconds, best periodic evaluation and the step a confirmed target
    stopped it at (``solved_at``, else None) of ``run_dir``'s ``last.pt``; None without one.

    Reads the whole checkpoint, replay buffer included when the run saved one: seconds for a
    large buffer. A corrupt checkpoint raises ``CheckpointError`` (one of ``cli.USER_ERRORS``).
    """
    from agents.evaluate import read_checkpoint  # torch: only when a run is looked at

    last = run_dir / "checkpoints" / "last.pt"
    if not last.exists():
        return None
    ckpt, _ = read_checkpoint(last)
    runner = ckpt["runner"]
    return {
        "steps": int(ckpt["learner"]["env_steps"]),
        "wall_seconds": float(runner["elapsed"]),
        "best_score": float(runner["best_score"]),
        "solved_at": runner.get("solved_at"),
    }


def budget_reached(state: dict[str, Any] | None, steps: int) -> bool:
    """The run has reached ``steps`` agent steps, or a confirmed ``train.target_score`` stopped
    it (the runner records that step; a best screen at the target alone does not stop a run)."""
    if state is None:
        return False
    return state["steps"] >= steps or state.get("solved_at") is not None


def train_args(config: str, run_dir: Path, steps: int, seed: int,
               overrides: list[str] | tuple[str, ...], state: dict[str, Any] | None) -> list[str]:
    """``rlkit train`` arguments that bring ``run_dir`` to ``steps``: a new run of ``config``
    (``state`` None), or ``--resume`` of the one there (which keeps its own config)."""
    if state is not None:
        return ["train", "--resume", str(run_dir), "--steps", str(steps)]
    args = ["train", config, "--seed", str(seed), "--steps", str(steps), "--run-dir", str(run_dir)]
    for override in overrides:
        args += ["--set", override]
    return args

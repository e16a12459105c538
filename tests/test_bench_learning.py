"""scripts/bench_learning.py: train a config on several seeds, stop and resume, evaluate, report.

End to end on CartPole PAAC with a budget of a few thousand agent steps and 2-game evaluations.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from cli_helpers import interrupt_when_checkpointed

from agents.curves import read_curve
from agents.evaluate import read_checkpoint

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location(
    "bench_learning", ROOT / "scripts" / "bench_learning.py"
)
bench_learning = importlib.util.module_from_spec(_spec)
sys.modules["bench_learning"] = bench_learning  # its dataclasses look their module up
_spec.loader.exec_module(bench_learning)

CARTPOLE = str(ROOT / "configs" / "cartpole_paac.yaml")
TINY = [
    "--set",
    "checkpoint.every=500",
    "--set",
    "train.eval_every=800",
    "--set",
    "train.eval_episodes=2",
    "--set",
    "train.progress=false",
]


def _steps(run_dir: Path) -> int:
    ckpt, _ = read_checkpoint(run_dir / "checkpoints" / "last.pt")
    return int(ckpt["learner"]["env_steps"])


def _interrupt_after_first_checkpoint(out: Path) -> subprocess.CompletedProcess:
    """Run the benchmark as a user would, with a budget it cannot finish, and Ctrl-C it (SIGINT
    to the script alone) once seed 1 has written a checkpoint."""
    argv = [
        sys.executable,
        str(ROOT / "scripts" / "bench_learning.py"),
        CARTPOLE,
        "--steps",
        "100M",
        "--seeds",
        "1",
        "2",
        "--eval-episodes",
        "2",
        "--out",
        str(out),
        *TINY,
    ]
    return interrupt_when_checkpointed(argv, out / "seed_1" / "checkpoints" / "last.pt")


def test_interrupted_benchmark_resumes_and_reports(tmp_path: Path, capfd) -> None:
    out = tmp_path / "bench"
    stopped = _interrupt_after_first_checkpoint(out)
    assert stopped.returncode == 130, stopped.stderr
    assert stopped.stderr.strip().splitlines()[-1] == (
        "rlkit: interrupted: the runs are checkpointed; run the same command again to continue"
    )
    assert stopped.stdout == ""
    # The trainer got the signal and checkpointed; no later seed was started, nothing reported.
    interrupted_at = _steps(out / "seed_1")
    assert 0 < interrupted_at < 100_000_000
    assert not (out / "seed_2").exists() and not (out / "results.json").exists()

    # Continue with a budget just past the interruption, two seeds at a time.
    budget = interrupted_at + 1600
    argv = [
        CARTPOLE,
        "--steps",
        str(budget),
        "--seeds",
        "1",
        "2",
        "--eval-episodes",
        "2",
        "--out",
        str(out),
        "--parallel",
        "2",
        *TINY,
    ]
    assert bench_learning.main(argv) == 0
    printed = json.loads(capfd.readouterr().out)
    report = json.loads((out / "results.json").read_text())
    assert printed == report

    # Seed 1 was resumed from its checkpoint, not restarted: its games before the interruption
    # are still the start of its curve, joined with the resumed segment.
    curve = read_curve(out / "seed_1")
    assert curve.segments == 2
    assert curve.steps[0] < interrupted_at < curve.steps[-1]
    assert np.all(np.diff(curve.steps) >= 0) and np.all(np.diff(curve.wall) >= 0)
    assert read_curve(out / "seed_2").segments == 1
    assert (out / "seed_2" / "bench.log").stat().st_size > 0  # parallel: output to log files

    assert [s["seed"] for s in report["seeds"]] == [1, 2]
    for seed in report["seeds"]:
        run_dir = out / f"seed_{seed['seed']}"
        assert seed["agent_steps"] == _steps(run_dir) >= budget
        assert seed["frames"] == seed["agent_steps"]  # CartPole: one frame per agent step
        assert seed["wall_seconds"] > 0
        for name in ("final", "best"):
            evaluation = json.loads(
                (run_dir / f"eval_{'last' if name == 'final' else 'best'}.json").read_text()
            )
            assert seed[name]["mean"] == evaluation["mean"]
            assert seed[name]["episodes"] == 2
            assert seed[name]["human_normalized"] == evaluation.get("human_normalized")
        assert seed["train_games"] > 10 and seed["train_last_mean"] is not None
    finals = [s["final"]["mean"] for s in report["seeds"]]
    assert report["mean"]["final"] == pytest.approx(np.mean(finals))
    assert report["budget"] == {"agent_steps": budget, "frames": budget}
    assert report["references"] == []  # no published CartPole scores
    assert (out / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    table = (out / "results.md").read_text()
    assert "| seed | final evaluation | best.pt evaluation |" in table
    assert "\n| 1 | " in table and "\n| 2 | " in table and "\n| mean | " in table

    # The same command once more: every seed is finished and evaluated, so nothing is rerun.
    evals = sorted(out.glob("seed_*/eval_*.json"))
    mtimes = [p.stat().st_mtime_ns for p in evals]
    assert bench_learning.main(argv) == 0
    assert "bench_learning: rlkit" not in capfd.readouterr().err
    assert [p.stat().st_mtime_ns for p in evals] == mtimes


def test_frame_budget_is_converted_with_the_frame_skip() -> None:
    parse = bench_learning.build_parser().parse_args
    pong = bench_learning.make_bench(
        parse(
            [str(ROOT / "configs" / "pong_paac.yaml"), "--frames", "40M", "--out", "x", "--no-plot"]
        )
    )
    assert (pong.steps, pong.frames_per_step) == (10_000_000, 4)
    assert [r.score for r in bench_learning.references_for(pong.env_id)] == [9.3, 18.9, 20.25, 17.3]
    cartpole = bench_learning.make_bench(parse([CARTPOLE, "--frames", "2.5k", "--out", "x"]))
    assert (cartpole.steps, cartpole.frames_per_step) == (2500, 1)
    minatar = bench_learning.make_bench(
        parse([str(ROOT / "configs" / "minatar_paac.yaml"), "--frames", "5M", "--out", "x"])
    )
    assert (minatar.steps, minatar.frames_per_step) == (5_000_000, 1)  # MinAtar has no frame skip
    # The MinAtar paper's DQN and AC(0.8) at 5M frames, for the curves.
    assert [r.score for r in bench_learning.references_for(minatar.env_id)] == [10.0, 17.5]


def _one_error_line(err: str, expected: str) -> None:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("rlkit: error: ") and expected in lines[0], lines[0]


@pytest.mark.parametrize(
    ("extra", "code", "expected"),
    [
        (["--steps", "1000", "--set", "agent.gama=0.9"], 1, "unknown config key 'agent.gama'"),
        (["--steps", "abc"], 2, "expected a positive count such as 3000, 400k or 40M, got 'abc'"),
        (["--steps", "1000", "--frames", "4000"], 2, "not allowed with argument"),
        (["--steps", "1000", "--seeds", "1", "1"], 1, "--seeds has duplicates (1 1)"),
        (["--steps", "1000", "--parallel", "0"], 1, "--parallel must be >= 1, got 0"),
        (["--steps", "1000", "--set", "env.id=CartPol-v1"], 1, "env.id: "),
    ],
)
def test_user_mistakes_are_one_line_before_any_training(
    tmp_path: Path, capsys, extra, code, expected
) -> None:
    out = tmp_path / "bench"
    try:
        got = bench_learning.main([CARTPOLE, "--out", str(out), *extra])
    except SystemExit as exc:  # argparse
        got = exc.code
    assert got == code
    _one_error_line(capsys.readouterr().err, expected)
    assert not out.exists()


def test_missing_matplotlib_fails_before_training(tmp_path: Path, monkeypatch, capsys) -> None:
    for name in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    out = tmp_path / "bench"
    assert bench_learning.main([CARTPOLE, "--steps", "1000", "--out", str(out)]) == 1
    _one_error_line(
        capsys.readouterr().err,
        "matplotlib is not installed; install the plot extra: pip install -e '.[plot]'",
    )
    assert not out.exists()

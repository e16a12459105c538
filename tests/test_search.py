"""``rlkit search``: spec parsing and its one-line errors, deterministic sampling inside the
ranges, results.json and the rerun that skips finished trials, an interrupted search that
resumes its trial, a changed command refused, and the summary's ranking.

End-to-end runs are CartPole DQN trials of a few hundred agent steps and 2-game evaluations.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
from cli_helpers import CARTPOLE, ROOT, interrupt_when_checkpointed, one_error_line, run_cli

from agents import search as search_mod
from agents.curves import read_curve
from agents.launcher import run_state
from agents.search import make_search, parse_param, ranked, summary
from rlkit.search import Choice, LogUniform, Uniform

LR = "optim.lr=loguniform(1e-4,1e-2)"
TINY = ["--set", "agent.learning_starts=100", "--set", "checkpoint.every=200",
        "--set", "train.eval_every=0", "--set", "train.target_score=null", "--set",
        "agent.buffer_size=1000"]


# ------------------------------------------------------------------------------ specs


def test_parse_param_specs() -> None:
    assert parse_param("optim.lr=loguniform(1e-5,1e-3)") == (
        "optim.lr", "loguniform(1e-05,0.001)", LogUniform(1e-5, 1e-3))
    assert parse_param("optim.lr=loguniform(1.23456789e-5,1e-3)")[1] == (
        "loguniform(1.23456789e-05,0.001)")  # the fingerprint keeps every digit
    assert parse_param(" agent.gamma = uniform( 0.9 , 0.999 ) ") == (
        "agent.gamma", "uniform(0.9,0.999)", Uniform(0.9, 0.999))
    key, spec, dist = parse_param("agent.mlp_hidden=choice([64, 64], [128], null)")
    assert key == "agent.mlp_hidden" and dist == Choice(([64, 64], [128], None))
    assert spec == "choice([64, 64],[128],null)"
    assert parse_param("optim.name=choice(adam,sgd)")[2] == Choice(("adam", "sgd"))


@pytest.mark.parametrize(
    ("param", "expected"),
    [
        ("optim.lr=normal(0,1)", "bad --param 'optim.lr=normal(0,1)'; write section.key="),
        ("optim.lr=loguniform(1e-3,1e-5)", "LogUniform needs 0 < low < high, got 0.001, 1e-05"),
        ("optim.lr=loguniform(0,1)", "LogUniform needs 0 < low < high"),
        ("optim.lr=uniform(1)", "uniform takes two numbers LOW,HIGH"),
        ("optim.lr=uniform(a,b)", "uniform takes two numbers LOW,HIGH"),
        ("optim.lr=choice(1,,2)", "an empty value"),
        ("lr=loguniform(1e-5,1e-3)", "'lr' is not a section.key config key"),
        ("optim.lrr=loguniform(1e-5,1e-3)", "unknown config key 'optim.lrr'; did you mean "
                                            "optim.lr?"),
        ("optimizer.lr=loguniform(1e-5,1e-3)",
         "unknown config key 'optimizer'; did you mean optim?"),
        ("agent.dueling=uniform(0,1)", "--param agent.dueling: the key is not a number; search "
                                       "it with choice"),
        ("optim.betas=uniform(0,1)", "--param optim.betas: the key is not a number"),
        ("optim.lr=uniform(-1,1)", "sampled value is refused: optim.lr must be > 0"),
        ("agent.loss=choice(huber,l3)", "agent.loss: expected one of 'huber', 'mse'"),
    ],
)
def test_bad_specs_are_one_line_errors(capsys, tmp_path, param, expected) -> None:
    code, out, err = run_cli(capsys, "search", CARTPOLE, "--param", param, "--trials", "20",
                             "--steps", "100", "--out", str(tmp_path / "s"))
    assert code == 1 and out == ""
    assert expected in one_error_line(err)
    assert not (tmp_path / "s").exists()  # refused before anything was written


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ([], "no --param to search"),
        (["--param", LR, "--param", LR], "optim.lr is given twice"),
        (["--param", LR, "--set", "optim.lr=1e-3"], "optim.lr is given twice"),
        (["--param", LR, "--jobs", "0"], "--jobs must be >= 1, got 0"),
        (["--param", LR, "--episodes", "0"], "--episodes must be >= 1, got 0"),
        (["--param", LR, "--seed", "-1"], "--seed must be in 0..4294967295"),
    ],
)
def test_bad_commands_are_one_line_errors(capsys, tmp_path, extra, expected) -> None:
    code, _, err = run_cli(capsys, "search", CARTPOLE, "--trials", "2", "--steps", "100",
                           "--out", str(tmp_path / "s"), *extra)
    assert code == 1
    assert expected in one_error_line(err)


# ------------------------------------------------------------------------------ sampling


def _trials(tmp_path: Path, seed: int, trials: int = 40) -> tuple[dict, ...]:
    return make_search(CARTPOLE, [LR, "agent.batch_size=loguniform(16,256)",
                                  "agent.gamma=uniform(0.9,0.999)", "agent.loss=choice(huber,mse)"],
                       trials=trials, steps=100, out=str(tmp_path), seed=seed).trials


def test_sampling_stays_in_range_and_is_deterministic_under_seed(tmp_path) -> None:
    trials = _trials(tmp_path, seed=3)
    for t in trials:
        assert 1e-4 <= t["optim.lr"] <= 1e-2
        assert isinstance(t["agent.batch_size"], int) and 16 <= t["agent.batch_size"] <= 256
        assert 0.9 <= t["agent.gamma"] <= 0.999
        assert t["agent.loss"] in ("huber", "mse")
    # log-uniform: about half the samples below the geometric middle of the range
    assert 0.25 < sum(t["optim.lr"] < 1e-3 for t in trials) / len(trials) < 0.75
    assert {t["agent.loss"] for t in trials} == {"huber", "mse"}
    assert _trials(tmp_path, seed=3) == trials  # same seed, same search
    assert _trials(tmp_path, seed=4) != trials
    assert _trials(tmp_path, seed=3, trials=5) == trials[:5]  # more trials only add trials
    # trial seeds and evaluation seeds: distinct per trial and from each other
    seeds = {search_mod.trial_seed(3, i) for i in range(40)}
    evals = {search_mod.eval_seed(3, i) for i in range(40)}
    assert len(seeds) == len(evals) == 40 and not seeds & evals


# ------------------------------------------------------------------------------ ranking


def _result(trial: int, mean: float | None, steps: int = 1000, lr: float = 1e-3) -> dict:
    score = None if mean is None else {"mean": mean, "std": 1.0, "median": mean, "min": mean,
                                       "max": mean, "episodes": 2}
    return {"trial": trial, "params": {"optim.lr": lr}, "score": score, "diverged": mean is None,
            "steps": steps, "solved_at": None, "seconds": 1.0}


def test_summary_ranks_by_score_then_steps_and_flags_the_border(tmp_path) -> None:
    search = make_search(CARTPOLE, [LR], trials=5, steps=100, out=str(tmp_path))
    results = [_result(0, 20.0, lr=2e-4), _result(1, None), _result(2, 90.0, steps=900, lr=1.1e-4),
               _result(3, 90.0, steps=800, lr=9e-3), _result(4, 50.0)]
    assert [r["trial"] for r in ranked(results)] == [3, 2, 4, 0, 1]
    text = summary(search, results).splitlines()
    assert text[0].split()[:3] == ["rank", "trial", "optim.lr"]
    assert [int(line.split()[1]) for line in text[1:6]] == [3, 2, 4, 0, 1]
    assert "diverged" in text[5]
    assert text[6].startswith("best: trial 3 (optim.lr=0.009): 90.0 ± 1.0 over 10 games")
    assert text[7].startswith("on the border: the best optim.lr, 0.009, lies in the outer 10% of "
                              "loguniform(0.0001,0.01)")
    inside = summary(search, [_result(0, 5.0, lr=1e-3), _result(1, 1.0, lr=1e-2)])
    assert inside.splitlines()[-1].startswith("no best value on the border")


# ------------------------------------------------------------------------------ end to end


def _search_argv(out: Path, trials: int = 2, steps: int = 400, param: str = LR,
                 extra: tuple[str, ...] = ()) -> list[str]:
    return ["search", CARTPOLE, "--param", param, "--trials", str(trials), "--steps", str(steps),
            "--episodes", "2", "--out", str(out), "--jobs", "2", *TINY, *extra]


def test_search_records_results_and_a_rerun_skips_finished_trials(capsys, tmp_path) -> None:
    out = tmp_path / "s"
    code, stdout, err = run_cli(capsys, *_search_argv(out))
    assert code == 0, err
    record = json.loads((out / "results.json").read_text())
    assert [t["trial"] for t in record["trials"]] == [0, 1]
    assert record["command"]["params"] == [["optim.lr", "loguniform(0.0001,0.01)"]]
    for t in record["trials"]:
        assert t["steps"] == 400 and t["score"]["episodes"] == 2 and not t["diverged"]
        assert run_state(out / t["run_dir"])["steps"] == 400
        assert math.isfinite(t["score"]["mean"]) and t["seconds"] > 0
    lines = stdout.splitlines()
    assert sorted(line.split()[1] for line in lines[:2]) == ["0", "1"]
    assert "optim.lr=" in lines[0] and "over 2 games, 400 steps" in lines[0]
    assert lines[2].startswith("rank") and lines[5].startswith("best: trial")
    assert (out / "summary.txt").read_text() == "\n".join(lines[2:]) + "\n"

    # The same command again runs nothing; one more trial runs only that trial.
    checkpoints = {p: p.stat().st_mtime_ns for p in out.glob("trial_*/checkpoints/last.pt")}
    code, stdout, err = run_cli(capsys, *_search_argv(out))
    assert code == 0, err
    assert stdout.splitlines()[0].startswith("rlkit search: 2 of 2 trials already in")
    code, stdout, err = run_cli(capsys, *_search_argv(out, trials=3))
    assert code == 0, err
    assert stdout.splitlines()[1].startswith("trial 2 (3/3 done): optim.lr=")
    assert {p: p.stat().st_mtime_ns for p in checkpoints} == checkpoints
    record = json.loads((out / "results.json").read_text())
    assert [t["trial"] for t in record["trials"]] == [0, 1, 2]

    # A changed command is refused in one line and leaves the record alone.
    before = (out / "results.json").read_text()
    for changed, what in (
        (_search_argv(out, steps=800), "--steps"),
        (_search_argv(out, param="optim.lr=loguniform(1e-5,1e-2)"), "--param"),
        (_search_argv(out, extra=("--set", "agent.gamma=0.9")), "the config or --set"),
        (_search_argv(out, extra=("--seed", "1")), "--seed"),
        (_search_argv(out, extra=("--episodes", "3")), "--episodes"),
    ):
        code, _, err = run_cli(capsys, *changed)
        assert code == 1
        line = one_error_line(err)
        assert f"holds a search with another command (changed: {what}); run " in line, line
        assert line.endswith("or pass a new --out")
    assert (out / "results.json").read_text() == before


def test_a_diverged_trial_is_recorded_and_the_search_goes_on(capsys, tmp_path) -> None:
    out = tmp_path / "s"
    extra = ("--set", "optim.max_grad_norm=null", "--seed", "1")
    code, stdout, err = run_cli(capsys, *_search_argv(out, param="optim.lr=choice(1e-3,1e30)",
                                                      extra=extra))
    assert code == 0, err
    trials = json.loads((out / "results.json").read_text())["trials"]
    by_lr = {t["params"]["optim.lr"]: t for t in trials}
    assert set(by_lr) == {1e-3, 1e30}  # seed 1 draws both
    assert by_lr[1e30]["diverged"] and by_lr[1e30]["score"] is None
    assert not by_lr[1e-3]["diverged"] and by_lr[1e-3]["score"]["episodes"] == 2
    assert "optim.lr=1e+30: diverged (NaN guard, see " in stdout
    table = stdout.splitlines()[2:5]
    assert "diverged" in table[2] and "1e+30" in table[2]  # ranked last


def test_interrupted_search_resumes_its_trial(tmp_path) -> None:
    """Ctrl-C (SIGINT to the search alone) while trial 0 trains: exit 130, the trainer
    checkpointed; the same command resumes that run directory rather than restarting it."""
    out = tmp_path / "s"
    # No updates before the budget: the trial is pure acting, fast, and long enough to stop.
    argv = [sys.executable, "-m", "agents.cli", "search", CARTPOLE, "--param", LR, "--trials",
            "1", "--steps", "20000", "--episodes", "2", "--out", str(out), *TINY,
            "--set", "agent.learning_starts=20000", "--set", "checkpoint.every=500"]
    proc = interrupt_when_checkpointed(argv, out / "trial_000" / "checkpoints" / "last.pt")
    stdout, stderr = proc.stdout, proc.stderr
    assert proc.returncode == 130, stderr
    assert stderr.strip().splitlines()[-1].startswith("rlkit: interrupted: finished trials are "
                                                      "in ")
    assert stdout == ""
    stopped_at = run_state(out / "trial_000")["steps"]
    assert 0 < stopped_at < 20000
    assert json.loads((out / "results.json").read_text())["trials"] == []

    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[0].startswith("trial 0 (1/1 done)")
    assert run_state(out / "trial_000")["steps"] == 20000
    curve = read_curve(out / "trial_000")
    assert curve.segments == 2  # the first run and its resume, one run directory
    assert curve.steps[0] < stopped_at < curve.steps[-1]
    assert [t["trial"] for t in json.loads((out / "results.json").read_text())["trials"]] == [0]

"""``rlkit`` CLI: every user mistake is one ``rlkit: error:`` line with a non-zero exit code."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from cli_helpers import CARTPOLE, ROOT, one_error_line, run_cli


def assert_one_error_line(err: str, expected: str) -> None:
    line = one_error_line(err)
    assert expected in line, line


@pytest.mark.parametrize(
    ("argv", "code", "expected"),
    [
        (["train", CARTPOLE, "--set", "agent.gama=0.9"], 1,
         "unknown config key 'agent.gama'; did you mean agent.gamma?"),
        (["train", CARTPOLE, "--set", "train.steps=abc"], 1,
         "train.steps: expected int, got 'abc'"),
        (["train", CARTPOLE, "--set", "agent.dueling=maybe"], 1,
         "agent.dueling: expected bool, got 'maybe'"),
        (["train", CARTPOLE, "--set", "agent.algo=a2c"], 1, "agent.algo: unknown algorithm 'a2c'"),
        (["train", CARTPOLE, "--set", "nonsense"], 1, "bad override 'nonsense'"),
        (["train", "configs/does_not_exist.yaml"], 1,
         "config file 'configs/does_not_exist.yaml' not found"),
        (["train"], 1, "missing CONFIG; use rlkit train configs/NAME.yaml"),
        (["train", "--steps", "abc", CARTPOLE], 2, "argument --steps: invalid int value: 'abc'"),
        (["train", CARTPOLE, "--device", "tpu"], 1, "unknown device 'tpu'"),
        (["train", CARTPOLE, "--device", "cuda:abc"], 1,
         "malformed device 'cuda:abc'; use auto, cpu, cuda or cuda:N with N a GPU index"),
        (["evaluate", "x.pt", "--device", "cuda:"], 1, "malformed device 'cuda:'"),
        (["train", CARTPOLE, "--set", "nosection.key=1"], 1,
         "unknown config key 'nosection'; valid keys: env, agent, optim, train, checkpoint"),
        (["evaluate", "missing/last.pt"], 1, "no checkpoint at missing/last.pt"),
        (["frobnicate"], 2, "invalid choice: 'frobnicate'"),
    ],
)
def test_user_mistakes(capsys, tmp_path, monkeypatch, argv, code, expected):
    monkeypatch.chdir(tmp_path)  # a default run directory, if one were made, lands here
    got, _, err = run_cli(capsys, *argv)
    assert got == code
    assert_one_error_line(err, expected)


def test_unknown_env_id(capsys, tmp_path):
    code, _, err = run_cli(capsys, "train", CARTPOLE, "--set", "env.id=CartPol-v1",
                           "--run-dir", str(tmp_path / "run"))
    assert code == 1
    assert_one_error_line(err, "env.id: ")
    assert "CartPole-v1" in err  # the closest known id is suggested


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_cuda_without_gpu(capsys, tmp_path):
    code, _, err = run_cli(capsys, "train", CARTPOLE, "--device", "cuda",
                           "--run-dir", str(tmp_path / "run"))
    assert code == 1
    assert_one_error_line(err, "device 'cuda' requested but no CUDA GPU is available; "
                               "use --device cpu or auto")
    code, _, err = run_cli(capsys, "train", CARTPOLE, "--set", "train.device=cuda",
                           "--run-dir", str(tmp_path / "run"))
    assert code == 1
    assert_one_error_line(err, "no CUDA GPU is available")


def test_corrupt_and_foreign_checkpoints(capsys, tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"this is not a checkpoint")
    code, _, err = run_cli(capsys, "evaluate", str(bad))
    assert code == 1
    assert_one_error_line(err, f"{bad} is not a valid checkpoint (truncated, corrupt, or not "
                               "written by torch.save); pass a last.pt or best.pt written by "
                               "rlkit train")
    assert "PytorchStreamReader" not in err and "central directory" not in err
    foreign = tmp_path / "foreign.pt"
    torch.save({"state_dict": {}}, foreign)
    code, _, err = run_cli(capsys, "evaluate", str(foreign))
    assert code == 1
    assert_one_error_line(err, f"{foreign} is not an rlkit training checkpoint")
    code, _, err = run_cli(capsys, "evaluate", str(tmp_path))
    assert code == 1
    assert_one_error_line(err, "is a directory, not a checkpoint")


def test_resume_mistakes(capsys, tmp_path):
    code, _, err = run_cli(capsys, "train", "--resume", str(tmp_path / "nope"))
    assert code == 1
    assert_one_error_line(err, "does not exist; pass a directory made by rlkit train")
    (tmp_path / "empty").mkdir()
    code, _, err = run_cli(capsys, "train", "--resume", str(tmp_path / "empty"))
    assert code == 1
    assert_one_error_line(err, "has no checkpoints/last.pt to resume from")
    code, _, err = run_cli(capsys, "train", CARTPOLE, "--resume", str(tmp_path / "empty"))
    assert code == 1
    assert_one_error_line(err, "--resume continues a run with its own config")


def test_existing_run_dir_and_bad_evaluate_args(capsys, tmp_path):
    run = tmp_path / "run"
    argv = ["train", CARTPOLE, "--run-dir", str(run), "--steps", "200",
            "--set", "train.progress=false", "--set", "train.eval_every=0",
            "--set", "agent.learning_starts=100", "--set", "agent.mlp_hidden=[8]"]
    code, _, err = run_cli(capsys, *argv)
    assert code == 0, err
    code, _, err = run_cli(capsys, *argv)
    assert code == 1
    assert_one_error_line(err, f"run directory {run} already holds a checkpoint; continue it "
                               f"with --resume {run}")
    last = str(run / "checkpoints" / "last.pt")
    code, _, err = run_cli(capsys, "evaluate", last, "--episodes", "0")
    assert code == 1
    assert_one_error_line(err, "--episodes must be >= 1, got 0")
    code, _, err = run_cli(capsys, "evaluate", last, "--epsilon", "1.5")
    assert code == 1
    assert_one_error_line(err, "--epsilon must be in [0, 1], got 1.5")
    # unwritable outputs are refused before any game is played (no score line printed)
    a_file = tmp_path / "a_file"
    a_file.write_text("")
    for flag, path, expected in (
        ("--json", tmp_path, f"--json {tmp_path} is a directory; pass a file path"),
        ("--json", a_file / "scores.json", f"--json {a_file / 'scores.json'} cannot be created: "
                                           f"{a_file} is a file, not a directory"),
        ("--video", a_file, f"--video {a_file} is a file, not a directory"),
        ("--video", a_file / "v", f"--video {a_file / 'v'} cannot be created: {a_file} is a file"),
    ):
        code, out, err = run_cli(capsys, "evaluate", last, flag, str(path), "--episodes", "1")
        assert code == 1 and out == ""
        assert_one_error_line(err, expected)
    code, out, err = run_cli(capsys, "evaluate", last, "--seed", "-1")
    assert code == 1 and out == ""
    assert_one_error_line(err, "--seed must be in 0..4294967295 (numpy's seed range), got -1")
    code, _, err = run_cli(capsys, "evaluate", last, "--video", str(tmp_path / "v"),
                           "--episodes", "1")
    if code != 0:  # CartPole renders through pygame, which may be absent
        assert_one_error_line(err, "--video cannot render this env")


def test_subprocess_error_has_no_traceback(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "agents.cli", "train", CARTPOLE, "--set", "optim.lr=fast",
         "--run-dir", str(tmp_path / "run")],
        capture_output=True, text=True, cwd=ROOT, timeout=120,
    )
    assert proc.returncode == 1
    assert proc.stderr.strip() == "rlkit: error: optim.lr: expected float, got 'fast'"


@pytest.mark.parametrize("seed", ["-1", str(2**32)])
def test_seed_out_of_range_leaves_no_run_dir(capsys, tmp_path, seed):
    run = tmp_path / "run"
    code, _, err = run_cli(capsys, "train", CARTPOLE, "--seed", seed, "--run-dir", str(run))
    assert code == 1
    assert_one_error_line(err, f"--seed must be in 0..4294967295 (numpy's seed range), got {seed}")
    assert not run.exists()
    code, _, err = run_cli(capsys, "train", CARTPOLE, "--set", f"train.seed={seed}",
                           "--run-dir", str(run))
    assert code == 1
    assert_one_error_line(
        err, f"train.seed must be in 0..4294967295 (numpy's seed range), got {seed}")
    assert not run.exists()


def test_run_dir_that_is_a_file_or_cannot_be_created(capsys, tmp_path):
    a_file = tmp_path / "a_file"
    a_file.write_text("not a directory")
    code, _, err = run_cli(capsys, "train", CARTPOLE, "--run-dir", str(a_file))
    assert code == 1
    assert_one_error_line(err, f"run directory {a_file} is a file, not a directory")
    code, _, err = run_cli(capsys, "train", CARTPOLE, "--run-dir", str(a_file / "run"))
    assert code == 1
    assert_one_error_line(err, f"run directory {a_file / 'run'} cannot be created: {a_file} is "
                               "a file, not a directory")
    assert a_file.read_text() == "not a directory"


def test_failed_start_removes_the_run_dir_it_made(capsys, tmp_path, monkeypatch):
    """A start that fails after the run directory was made (here: building the learner) removes
    it again: no directory holding only config.yaml is left behind."""
    import agents.runner

    def refuse(*_args, **_kwargs):
        raise agents.runner.RunError("learner refused on purpose")

    monkeypatch.setattr(agents.runner, "make_learner", refuse)
    run = tmp_path / "deep" / "run"
    code, _, err = run_cli(capsys, "train", CARTPOLE, "--run-dir", str(run))
    assert code == 1
    assert_one_error_line(err, "learner refused on purpose")
    assert not (tmp_path / "deep").exists()
    existing = tmp_path / "existing"
    existing.mkdir()
    (existing / "notes.txt").write_text("mine")
    code, _, _ = run_cli(capsys, "train", CARTPOLE, "--run-dir", str(existing))
    assert code == 1
    assert (existing / "notes.txt").read_text() == "mine"  # a directory it did not make stays


def test_the_configs_expectation_is_printed_as_training_starts(capsys, tmp_path):
    """A config's ``train.expectation`` (e.g. Pong's flat first millions of frames) reaches the
    user before the progress bar does."""
    code, _, err = run_cli(capsys, "train", CARTPOLE, "--steps", "200", "--run-dir",
                           str(tmp_path / "run"), "--set",
                           "train.expectation=flat until 1M frames")
    assert code == 0
    assert "rlkit: expect: flat until 1M frames" in err


def test_published_pong_configs_state_their_expectation():
    from agents.config import load_config

    for name in ("pong_paac.yaml", "pong_paac_fast.yaml", "pong_dqn_fast.yaml"):
        expectation = load_config(Path(CARTPOLE).parent / name).train.expectation
        assert expectation and "frames" in expectation, name

"""`rlkit export`: a policy-only file that `rlkit evaluate` plays and `--resume` refuses."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from agents.cli import main

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("export") / "run"
    assert main(["train", str(CONFIGS / "cartpole_paac.yaml"), "--steps", "3000",
                 "--run-dir", str(run)]) == 0
    return run


def test_exported_policy_is_small_and_plays_like_the_checkpoint(trained_run, tmp_path, capsys):
    last, out = trained_run / "checkpoints" / "last.pt", tmp_path / "policy.pt"
    assert main(["export", str(last), str(out)]) == 0
    stored = torch.load(out, weights_only=False)
    assert stored["policy_only"] is True
    assert set(stored["learner"]) == {"net", "env_steps"}
    assert out.stat().st_size < last.stat().st_size

    scores = []
    for path in (last, out):
        assert main(["evaluate", str(path), "--episodes", "3", "--json",
                     str(tmp_path / f"{path.stem}.json")]) == 0
        scores.append(json.loads((tmp_path / f"{path.stem}.json").read_text())["returns"])
    assert scores[0] == scores[1]


def test_resume_refuses_an_exported_policy(trained_run, tmp_path, capsys):
    copy = tmp_path / "run"
    shutil.copytree(trained_run, copy)
    last = copy / "checkpoints" / "last.pt"
    assert main(["export", str(last), str(last)]) == 0
    capsys.readouterr()
    assert main(["train", "--resume", str(copy), "--steps", "4000"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "holds only a policy network" in err[0]


def test_export_of_a_file_that_is_not_a_checkpoint_is_one_line(tmp_path, capsys):
    bogus = tmp_path / "x.pt"
    bogus.write_text("not a checkpoint")
    assert main(["export", str(bogus), str(tmp_path / "out.pt")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("rlkit: error:")
    assert not (tmp_path / "out.pt").exists()

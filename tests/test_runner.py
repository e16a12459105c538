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

import pytest
import torch
from cli_helpers import CARTPOLE, ROOT, SMALL_CARTPOLE

from agents.cli import main
from agents.config import load_config
from rlkit.checkpoint import load_checkpoint

PONG = str(ROOT / "configs" / "pong_dqn.yaml")
PAAC = str(ROOT / "configs" / "cartpole_paac.yaml")

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


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_stop_signal_writes_checkpoint_and_exits_128_plus_signal(tmp_path, sig, code):
    """Ctrl-C / SIGTERM: checkpoint, the resume hint, and a non-zero exit (the shell's 128 + N),
    so ``rlkit train ... && rlkit evaluate ...`` does not go on as if training had finished."""
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
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
    assert proc.returncode == code, err
    assert f"{signal.Signals(sig).name} at step" in out and f"rlkit train --resume {run}" in out
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
    assert set(summary) == {"mean", "median", "std", "min", "max", "episodes", "returns",
                            "env_id", "human_normalized", "protocol"}
    assert summary["episodes"] == 1 and len(summary["returns"]) == 1
    assert -21 <= summary["mean"] <= 21
    assert (video / "game0.mp4").stat().st_size > 10_000


def test_resume_without_replay_refills_before_updating(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", CARTPOLE, "--run-dir", str(run), "--steps", "300", *SMALL_CARTPOLE,
                 "--set", "checkpoint.save_replay=false"]) == 0
    ckpt = load_checkpoint(run / "checkpoints" / "last.pt")
    assert ckpt["learner"]["replay"] is None
    updates = ckpt["learner"]["update"]["updates"]
    # the empty buffer is refilled for learning_starts (100) steps before the next update
    capsys.readouterr()
    assert main(["train", "--resume", str(run), "--steps", "398"]) == 0
    assert ("rlkit: last.pt holds no replay buffer (checkpoint.save_replay); the buffer refills "
            "from scratch before updates resume, so this is not an exact continuation"
            ) in capsys.readouterr().err
    after = load_checkpoint(run / "checkpoints" / "last.pt")["learner"]
    assert after["env_steps"] == 398 and after["update"]["updates"] == updates
    assert after["next_round"] == 300 + 100  # updates resume once the buffer is refilled


def test_resume_refuses_a_budget_at_or_below_the_current_step(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", CARTPOLE, "--run-dir", str(run), "--steps", "300",
                 *SMALL_CARTPOLE]) == 0
    before = (run / "checkpoints" / "last.pt").read_bytes()
    capsys.readouterr()
    for steps in ("300", "200"):
        assert main(["train", "--resume", str(run), "--steps", steps]) == 1
        err = capsys.readouterr().err.strip()
        assert err == (f"rlkit: error: --steps {steps} is not above the run's current step 300; "
                       "pass a larger budget (the stored one is 300)")
    assert main(["train", "--resume", str(run)]) == 1  # nothing left of the stored budget
    assert capsys.readouterr().err.strip() == (
        "rlkit: error: the run already reached its budget of 300 agent steps; pass --steps N "
        "with N > 300 to train further")
    assert (run / "checkpoints" / "last.pt").read_bytes() == before
    assert load_config(run / "config.yaml").train.steps == 300


SMALL_PAAC = [
    "--set", "train.progress=false", "--set", "env.num_envs=4", "--set", "agent.mlp_hidden=[8]",
    "--set", "train.log_every=80", "--set", "train.eval_every=0", "--set", "checkpoint.every=0",
    "--set", "train.threads=1", "--set", "optim.lr_final=0.0005",
    "--set", "optim.lr_decay_steps=null",  # the schedule follows train.steps
]


def test_new_budget_on_resume_keeps_the_lr_schedule_horizon(tmp_path, capsys):
    """PAAC anneals its LR over train.steps: 320 steps + resume to 640 must equal one run whose
    schedule ends at 320, not a run whose schedule was stretched to 640 halfway through."""
    straight, split = tmp_path / "straight", tmp_path / "split"
    assert main(["train", PAAC, "--run-dir", str(straight), "--steps", "640", *SMALL_PAAC,
                 "--set", "optim.lr_decay_steps=320"]) == 0
    assert main(["train", PAAC, "--run-dir", str(split), "--steps", "320", *SMALL_PAAC]) == 0
    capsys.readouterr()
    assert main(["train", "--resume", str(split), "--steps", "640"]) == 0
    err = capsys.readouterr().err
    assert ("rlkit: budget changed from 320 to 640 agent steps; optim.lr_decay_steps pinned to "
            "320 so the schedules keep their horizon") in err
    resumed = load_config(split / "config.yaml")
    assert (resumed.train.steps, resumed.optim.lr_decay_steps) == (640, 320)
    a, b = (load_checkpoint(d / "checkpoints" / "last.pt")["learner"] for d in (straight, split))
    assert a["env_steps"] == b["env_steps"] == 640
    for name, tensor in a["net"].items():
        assert torch.equal(tensor, b["net"][name]), name


def test_resume_removes_temporary_files_of_a_killed_save(tmp_path):
    run = tmp_path / "run"
    assert main(["train", CARTPOLE, "--run-dir", str(run), "--steps", "300",
                 *SMALL_CARTPOLE]) == 0
    stale = run / "checkpoints" / ".last.pt.k1ll3d9x.tmp"  # what kill -9 mid-save leaves
    stale.write_bytes(b"half a checkpoint")
    assert main(["train", "--resume", str(run), "--steps", "320"]) == 0
    assert not stale.exists()
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["best.pt", "last.pt"]


def test_nproc_ctrl_c_checkpoints_and_exits_130_without_launcher_traceback(tmp_path):
    """Ctrl-C in a terminal signals the whole foreground process group (here: a new session, so
    that os.killpg can play the terminal): rlkit, the torchrun launcher and, through it, the
    ranks. The launcher's SignalException traceback must not reach the user."""
    run = tmp_path / "run"
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(name, None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "agents.cli", "train", CARTPOLE, "--nproc", "2",
         "--run-dir", str(run), "--steps", "10000000", *SMALL_CARTPOLE,
         "--set", "train.eval_every=0", "--set", "train.threads=1", "--set", "train.device=cpu"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
        start_new_session=True,
    )
    try:
        deadline = time.time() + 120
        while not (run / "checkpoints" / "last.pt").exists() and time.time() < deadline:
            time.sleep(0.2)
        os.killpg(proc.pid, signal.SIGINT)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 130, err
    assert "SIGINT at step" in out and f"rlkit train --resume {run}" in out
    assert "Traceback" not in err and "SignalException" not in err, err
    assert load_checkpoint(run / "checkpoints" / "last.pt")["world_size"] == 2


def test_every_tensorboard_curve_uses_agent_steps(tmp_path):
    """update/*, activations/* (logged by UpdateStep, which counts updates) share the x-axis of
    train/* and game/*: agent steps. 600 steps with 2 updates per 4 steps after step 100 make
    about 250 updates, so an update-count axis would end near 250."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run = tmp_path / "run"
    assert main(["train", CARTPOLE, "--run-dir", str(run), "--steps", "600", *SMALL_CARTPOLE,
                 "--set", "train.eval_every=0"]) == 0
    events = EventAccumulator(str(run)).Reload()
    tags = events.Tags()["scalars"]
    steps = {tag: [e.step for e in events.Scalars(tag)] for tag in tags}
    families = {tag.split("/")[0] for tag in tags}
    assert {"train", "game", "update", "grad_norm", "update_ratio", "activations"} <= families
    for tag, xs in steps.items():
        assert max(xs) <= 600, tag
        if tag.split("/")[0] in ("update", "grad_norm", "update_ratio", "activations"):
            assert min(xs) > 100 and max(xs) > 500, (tag, xs)  # updates start at step 100


# --------------------------------------------------------------------------- confirmation

CONFIRMED = [
    [500.0, 500.0, 500.0, 20.0],   # mean 380: the lucky 500 screen is refuted
    [500.0, 500.0, 500.0, 460.0],  # mean 490 (new best.pt) but 490 - 3 * 17.3 / 2 < 475
    [500.0, 500.0, 500.0, 500.0],  # mean 500: solved
]
CONFIRMING = [*SMALL_CARTPOLE, "--set", "train.target_score=475", "--set",
              "train.confirm_episodes=4", "--set", "checkpoint.every=300"]


@pytest.fixture
def scripted_games(monkeypatch):
    """Evaluations score by script instead of playing: every periodic evaluation (seed + 10000)
    plays 500s, and the k-th confirmation (by its seed) plays ``CONFIRMED[k - 1]``. Returns the
    seeds played, in order."""
    from agents import runner
    from agents.evaluate import EvalResult

    seeds = []
    confirmations = {runner.confirmation_seed(0, k): games for k, games in
                     enumerate(CONFIRMED, start=1)}

    def play(act, envs, episodes, *, seed=None, video=None):
        seeds.append(seed)
        returns = [500.0] * episodes if seed == 10_000 else confirmations[seed]
        assert len(returns) == episodes
        return EvalResult(returns, [int(r) for r in returns])

    monkeypatch.setattr(runner, "play_games", play)
    return seeds


def test_confirmations_not_screens_choose_best_pt_and_stop_training(tmp_path, capsys,
                                                                     scripted_games):
    """Screens of 500 at steps 300, 600, 900 each trigger a confirmation on fresh seeds; best.pt
    follows the confirmed means (380, 490, 500), never the screens, and training stops at 900,
    where the confirmation's mean less three standard errors first reaches the target."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from agents.runner import confirmation_seed

    run = tmp_path / "run"
    assert main(["train", CARTPOLE, "--run-dir", str(run), "--steps", "3000", "--seed", "0",
                 *CONFIRMING]) == 0
    assert scripted_games == [10_000, confirmation_seed(0, 1), 10_000, confirmation_seed(0, 2),
                              10_000, confirmation_seed(0, 3)]
    assert len(set(scripted_games)) == 4  # every confirmation plays games of its own
    last = load_checkpoint(run / "checkpoints" / "last.pt")
    assert last["learner"]["env_steps"] == 900
    assert last["runner"]["solved_at"] == 900 and last["runner"]["confirmations"] == 3
    best = load_checkpoint(run / "checkpoints" / "best.pt")
    assert best["runner"]["best_score"] == 500.0 and best["learner"]["env_steps"] == 900
    assert ("rlkit: train.target_score=475 reached at step 900 (mean 500.0 over 4 confirmation "
            "games, at least 3 standard errors above the target); stopped early (last.pt holds "
            "that policy)") in capsys.readouterr().out
    events = EventAccumulator(str(run)).Reload()
    confirmed = [(e.step, e.value) for e in events.Scalars("confirm/mean")]
    assert confirmed == [(300, 380.0), (600, 490.0), (900, 500.0)]
    bounds = [e.value for e in events.Scalars("confirm/lower_bound")]
    assert bounds[1] == pytest.approx(490 - 3 * 17.3205 / 2, abs=1e-3) and bounds[2] == 500.0
    assert [e.value for e in events.Scalars("eval/mean")] == [500.0] * 3


def test_a_refuted_screen_leaves_best_pt_at_the_confirmed_score(tmp_path, scripted_games):
    run = tmp_path / "run"
    assert main(["train", CARTPOLE, "--run-dir", str(run), "--steps", "600", "--seed", "0",
                 *CONFIRMING]) == 0  # the budget ends before the target is confirmed
    last = load_checkpoint(run / "checkpoints" / "last.pt")
    assert last["runner"]["solved_at"] is None and last["runner"]["best_score"] == 490.0
    assert load_checkpoint(run / "checkpoints" / "best.pt")["learner"]["env_steps"] == 600


def test_resume_keeps_the_confirmation_state_and_refuses_a_solved_run(tmp_path, capsys,
                                                                      scripted_games):
    """Stopped at 600 and resumed, the run plays the third confirmation (not the first again)
    at 900 and stops there, as the uninterrupted run did; a solved run is not resumed."""
    run = tmp_path / "run"
    assert main(["train", CARTPOLE, "--run-dir", str(run), "--steps", "600", "--seed", "0",
                 *CONFIRMING]) == 0
    assert main(["train", "--resume", str(run), "--steps", "3000"]) == 0
    last = load_checkpoint(run / "checkpoints" / "last.pt")
    assert last["learner"]["env_steps"] == 900 and last["runner"]["solved_at"] == 900
    capsys.readouterr()
    assert main(["train", "--resume", str(run), "--steps", "6000"]) == 1
    assert capsys.readouterr().err.strip() == (
        "rlkit: error: the run stopped when train.target_score=475 reached at step 900 (mean "
        "500.0 over 4 confirmation games, at least 3 standard errors above the target); nothing "
        "to resume (to train past the target, start a new run with --set "
        "train.target_score=null)")


def test_evaluations_do_not_change_training(tmp_path):
    """Periodic evaluations and their 100-game confirmations play their own envs and draw from
    the evaluation generator: the trained network is the same as without any evaluation."""
    runs = {}
    for name, every in (("evaluated", "300"), ("not_evaluated", "0")):
        runs[name] = tmp_path / name
        assert main(["train", CARTPOLE, "--run-dir", str(runs[name]), "--steps", "800",
                     *SMALL_CARTPOLE, "--set", "train.eval_every=" + every]) == 0
    evaluated = load_checkpoint(runs["evaluated"] / "checkpoints" / "last.pt")
    assert evaluated["runner"]["confirmations"] >= 1  # the config's target: 100-game confirmations
    plain = params(runs["not_evaluated"] / "checkpoints" / "last.pt")
    for name, tensor in evaluated["learner"]["q"].items():
        assert torch.equal(tensor, plain[name]), name


def test_confirmation_games_default_to_100_with_a_target_only():
    from agents.config import ConfigError

    default = "train.confirm_episodes=null"
    assert load_config(CARTPOLE, [default]).train.confirmation_games == 100
    assert load_config(CARTPOLE, [default, "train.target_score=null"]).train.confirmation_games == 0
    assert load_config(CARTPOLE, ["train.confirm_episodes=7"]).train.confirmation_games == 7
    with pytest.raises(ConfigError, match=r"^train.confirm_episodes must be >= 0 or null, got -1$"):
        load_config(CARTPOLE, ["train.confirm_episodes=-1"])

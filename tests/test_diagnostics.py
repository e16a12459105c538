"""In-run diagnostics: the end-of-run summary (per-layer update/weight ratio range, dead units,
NaN-guard events), EMA weights for evaluation, and the reduce-on-plateau LR schedule, each
surviving --resume exactly."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch
from cli_helpers import CARTPOLE, SMALL_CARTPOLE
from torch import nn

from agents.cli import main
from agents.config import load_config
from agents.policy import build_policy, policy_only
from rlkit.checkpoint import load_checkpoint
from rlkit.monitors import NonFiniteError
from rlkit.schedules import ReduceOnPlateau
from rlkit.update import UpdateStep

SMALL = [*SMALL_CARTPOLE, "--set", "train.target_score=null"]
EMA_PLATEAU = ["--set", "train.eval_ema=0.9", "--set", "optim.lr_schedule=plateau",
               "--set", "optim.lr_plateau_patience=0", "--set", "optim.lr_final=1e-5"]


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 8), nn.ReLU(), nn.Linear(8, 1))


def test_a_nan_loss_is_skipped_counted_and_named_in_the_summary():
    model = _model()
    step = UpdateStep(model, torch.optim.SGD(model.parameters(), lr=0.1), monitor_every=1,
                      max_nan_skips=2)
    x = torch.randn(16, 3)
    for factor in (1.0, float("nan"), 1.0):
        before = [p.detach().clone() for p in model.parameters()]
        with step.capture_activations():
            loss = model(x).pow(2).mean() * factor
        stats = step.update(loss)
        moved = any(not torch.equal(a, b) for a, b in zip(before, model.parameters(),
                                                          strict=True))
        assert stats.skipped == (factor != 1.0) and moved == (factor == 1.0)
    diag = step.diagnostics
    assert diag.nan_count == 1
    assert diag.nan_events == [{"update": 2, "what": "loss", "action": "skipped the update"}]
    assert set(diag.ratio_range) == {"0.weight", "2.weight"}  # weight tensors, not biases
    lo, hi = diag.ratio_range["0.weight"]
    assert 0 < lo <= hi
    assert set(diag.dead) == {"1"}
    text = "\n".join(diag.lines())
    assert "0.weight: " in text and "1: " in text and "update 2: non-finite loss, skipped" in text
    assert "1 NaN-guard event(s)" in diag.problems()


def test_more_nan_updates_in_a_row_than_allowed_stop_training():
    model = _model()
    step = UpdateStep(model, torch.optim.SGD(model.parameters(), lr=0.1), max_nan_skips=1)
    nan_loss = model(torch.ones(2, 3)).sum() * float("nan")
    step.update(nan_loss)
    with pytest.raises(NonFiniteError, match="2 updates in a row had a non-finite loss"):
        step.update(model(torch.ones(2, 3)).sum() * float("nan"))
    assert [e["action"] for e in step.diagnostics.nan_events] == ["skipped the update",
                                                                 "stopped training"]


@pytest.fixture
def nan_at_third_update(monkeypatch):
    """The DQN learner's third TD loss is NaN."""
    from agents import dqn

    calls = {"n": 0}
    real = dqn.td_loss

    def planted(*args, **kwargs):
        out = real(*args, **kwargs)
        calls["n"] += 1
        return out._replace(loss=out.loss * float("nan")) if calls["n"] == 3 else out

    monkeypatch.setattr(dqn, "td_loss", planted)


def test_train_summary_lists_ratios_dead_units_and_the_planted_nan(tmp_path, capsys,
                                                                    nan_at_third_update):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run = tmp_path / "run"
    assert main(["train", CARTPOLE, "--run-dir", str(run), "--steps", "600", *SMALL,
                 "--set", "optim.nan_skips=3"]) == 0
    captured = capsys.readouterr()
    out = captured.out
    assert "rlkit: run summary after" in out
    assert "update/weight ratio per weight tensor, min..max over the run" in out
    assert "encoder.body.1.weight: " in out and "head.weight: " in out
    assert "dead units per activation, latest (max over the run):" in out
    assert "NaN guard: 1 event(s)" in out
    assert "update 3: non-finite loss, skipped the update" in out
    assert "rlkit: flagged: " in out and "1 NaN-guard event(s)" in out
    pointers = [line for line in captured.err.splitlines() if "rlkit check" in line]
    assert len(pointers) == 1  # one pointer per run, whichever monitor flagged first
    assert "diagnostics/summary/text_summary" in EventAccumulator(str(run)).Reload().Tags()[
        "tensors"]
    # the summary covers the whole run after a resume too
    assert main(["train", "--resume", str(run), "--steps", "900"]) == 0
    assert "NaN guard: 1 event(s)" in capsys.readouterr().out


def test_a_nan_without_skips_stops_with_one_line_and_the_summary(tmp_path, capsys,
                                                                 nan_at_third_update):
    assert main(["train", CARTPOLE, "--run-dir", str(tmp_path / "run"), "--steps", "600",
                 *SMALL]) == 1
    captured = capsys.readouterr()
    assert "update 3: non-finite loss, stopped training" in captured.out
    errors = [line for line in captured.err.splitlines() if line.startswith("rlkit: error")]
    assert errors == ["rlkit: error: training stopped: loss is nan at update 3; lower the "
                      "learning rate, set max_grad_norm, or check the inputs and rewards"]


def test_ema_weights_differ_from_the_trained_ones_and_are_what_evaluation_plays(tmp_path):
    run = tmp_path / "run"
    assert main(["train", CARTPOLE, "--run-dir", str(run), "--steps", "600", *SMALL,
                 "--set", "train.eval_ema=0.9"]) == 0
    for name in ("last.pt", "best.pt"):
        ckpt = load_checkpoint(run / "checkpoints" / name)
        learner = ckpt["learner"]
        ema = learner["update"]["ema"]["module"]
        assert learner["update"]["ema"]["updates"] > 0
        assert any(not torch.equal(ema[k], learner["q"][k]) for k in ema)
        cfg = load_config(run / "config.yaml")
        space = gym.spaces.Box(-np.inf, np.inf, (4,), np.float32)
        policy = build_policy(cfg, learner, space, gym.spaces.Discrete(2), torch.device("cpu"))
        for k, tensor in policy.q_net.state_dict().items():  # type: ignore[attr-defined]
            assert torch.equal(tensor, ema[k]), k
        exported = policy_only(ckpt)["learner"]["q"]  # rlkit export writes the EMA weights
        assert all(torch.equal(exported[k], ema[k]) for k in ema)


def test_the_runner_evaluates_with_the_ema_network(tmp_path):
    from agents.runner import start_run

    runner = start_run(CARTPOLE, [s for s in SMALL if s != "--set"]
                       + ["train.eval_ema=0.9", "train.steps=400"], tmp_path / "run")
    runner.run()
    learner = runner.learner
    assert learner.acting_net is learner.update.ema.module  # type: ignore[attr-defined]
    obs = np.random.default_rng(0).normal(size=(64, 4)).astype(np.float32)
    with torch.no_grad():
        ema_greedy = learner.update.ema.module(torch.as_tensor(obs)).argmax(1).numpy()
        raw_greedy = learner.q(torch.as_tensor(obs)).argmax(1).numpy()  # type: ignore
    assert np.array_equal(learner.act(obs, greedy=True), ema_greedy)
    assert not np.array_equal(ema_greedy, raw_greedy)  # the test tells the two apart


def test_ema_and_plateau_states_survive_resume_exactly(tmp_path):
    straight, split = tmp_path / "straight", tmp_path / "split"
    assert main(["train", CARTPOLE, "--run-dir", str(straight), "--steps", "1500", *SMALL,
                 *EMA_PLATEAU]) == 0
    assert main(["train", CARTPOLE, "--run-dir", str(split), "--steps", "750", *SMALL,
                 *EMA_PLATEAU]) == 0
    assert main(["train", "--resume", str(split), "--steps", "1500"]) == 0
    a, b = (load_checkpoint(d / "checkpoints" / "last.pt")["learner"] for d in (straight, split))
    ua, ub = a["update"], b["update"]
    assert ua["ema"]["updates"] == ub["ema"]["updates"] > 0
    for name, tensor in ua["ema"]["module"].items():
        assert torch.equal(tensor, ub["ema"]["module"][name]), name
    for name, tensor in a["q"].items():
        assert torch.equal(tensor, b["q"][name]), name
    assert ua["lr_schedule"] == ub["lr_schedule"]
    assert ua["lr_schedule"]["kind"] == "ReduceOnPlateau"
    assert ua["lr_schedule"]["tracker"]["best"] is not None
    assert ua["lr_schedule"]["reductions"] >= 1  # the resumed run reduced where the other did
    assert ua["optimizer"]["param_groups"][0]["lr"] == ub["optimizer"]["param_groups"][0]["lr"]
    assert ua["diagnostics"] == ub["diagnostics"]


def test_plateau_reduces_the_lr_after_patience_non_improving_evaluations():
    cfg = load_config(CARTPOLE, ["optim.lr_schedule=plateau", "optim.lr=0.01",
                                 "optim.lr_plateau_patience=2", "optim.lr_plateau_factor=0.5",
                                 "optim.lr_final=0.004"])
    schedule = cfg.optim.lr_schedule_over(1000)
    assert isinstance(schedule, ReduceOnPlateau)
    model = _model()
    step = UpdateStep(model, torch.optim.SGD(model.parameters(), lr=1.0), lr_schedule=schedule)
    lrs = []
    for score in (100, 150, 150, 120, 140, 140, 130, 160, 100, 100, 100, 100, 100, 100):
        assert step.observe_score(score)
        lrs.append(step.lr)
    # best 150 at the 2nd; 3 non-improving (patience 2 + 1) -> 0.005 at the 5th; 3 more would
    # reduce again, but 160 improves first; then the floor (lr_final) holds the rate at 0.004
    assert lrs[:5] == [0.01] * 4 + [0.005]
    assert lrs[5:8] == [0.005] * 3
    assert lrs[8:11] == [0.005, 0.005, 0.004] and lrs[-1] == 0.004
    assert schedule.reductions == 2
    constant = UpdateStep(model, torch.optim.SGD(model.parameters(), lr=1.0))
    assert not constant.observe_score(1.0)  # other schedules ignore scores


@pytest.mark.parametrize(("override", "message"), [
    ("train.eval_ema=1.5", "train.eval_ema must be in (0, 1), e.g. 0.999, or null, got 1.5"),
    ("optim.lr_plateau_factor=2", "optim.lr_plateau_factor must be in (0, 1), e.g. 0.5, got 2.0"),
    ("optim.nan_skips=-1", "optim.nan_skips must be >= 0, got -1"),
    ("optim.lr_schedule=plateu", "optim.lr_schedule: expected one of 'constant', 'linear', "
     "'cosine', 'plateau', got 'plateu'; did you mean 'plateau'?"),
])
def test_config_mistakes_are_one_line(tmp_path, capsys, override, message):
    assert main(["train", CARTPOLE, "--run-dir", str(tmp_path / "r"), "--set", override]) == 1
    assert capsys.readouterr().err.strip() == f"rlkit: error: {message}"


def test_plateau_needs_periodic_evaluations(tmp_path, capsys):
    assert main(["train", CARTPOLE, "--run-dir", str(tmp_path / "r"), "--set",
                 "optim.lr_schedule=plateau", "--set", "train.eval_every=0"]) == 1
    assert capsys.readouterr().err.strip() == (
        "rlkit: error: optim.lr_schedule=plateau is driven by periodic evaluations; set "
        "train.eval_every > 0")

"""``rlkit check CONFIG``: the checks pass on the published configs and flag planted bugs.

Each planted bug is one a real run would hide for hours: a learning rate 1e-7 (nothing moves),
10x too high (the update/weight ratio leaves its band) and a PAAC loss whose advantage is not
detached (the critic also learns through the policy term; its finite differences still agree
with autograd, so only the semi-gradient check can see it).
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import agents.paac
from agents.check import FAIL, PASS, WARN, CheckReport, run_checks
from agents.cli import main
from agents.config import load_config
from rlkit.sanity import overfit_tiny_batch

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
FAST = ("train.threads=1",)  # the results do not depend on it; the time on a busy box does


def check(config: str, *overrides: str) -> CheckReport:
    return run_checks(load_config(CONFIGS / config, [*FAST, *overrides]), config)


def status(report: CheckReport, name: str) -> str:
    return next(r.status for r in report.results if r.name == name)


@pytest.mark.parametrize("config", ["cartpole_dqn.yaml", "cartpole_paac.yaml"])
def test_published_cartpole_configs_pass_every_check(config):
    report = check(config)
    assert [r.status for r in report.results] == [PASS] * len(report.results), report.table()


def test_a_published_atari_config_passes():
    """The original PAAC on Pong: real emulator, NIPS network, TF1 RMSProp whose accumulators
    start at 1 (the ratio is measured after the optimizer's warm-up)."""
    report = check("pong_paac.yaml")
    assert not report.failed, report.table()
    ratio = next(r for r in report.results if r.name == "update/weight ratio")
    assert ratio.data["warmup_steps"] > 100


def test_learning_rate_1e_7_fails_the_update_ratio(capsys, tmp_path):
    out = tmp_path / "report.json"
    code = main(
        [
            "check",
            str(CONFIGS / "cartpole_paac.yaml"),
            "--set",
            "optim.lr=1e-7",
            "--set",  # the config's linear schedule would climb from 1e-7 to its lr_final 1e-4
            "optim.lr_schedule=constant",
            "--set",
            FAST[0],
            "--json",
            str(out),
        ]
    )
    table = capsys.readouterr().out
    assert code == 3, table
    saved = json.loads(out.read_text())
    assert saved["failed"] is True
    ratio = next(r for r in saved["results"] if r["name"] == "update/weight ratio")
    assert ratio["status"] == FAIL and "raise optim.lr" in ratio["advice"]
    assert ["update/weight", "ratio", "FAIL"] in [line.split()[:3] for line in table.splitlines()]


@pytest.mark.parametrize(
    ("config", "lr"), [("cartpole_dqn.yaml", 0.01), ("cartpole_paac.yaml", 0.02)]
)
def test_learning_rate_10x_too_high_is_flagged(config, lr):
    report = check(config, f"optim.lr={lr}")
    ratio = next(r for r in report.results if r.name == "update/weight ratio")
    assert ratio.status in (WARN, FAIL), report.table()
    assert "lower optim.lr" in ratio.advice


def undetached_paac_loss(
    logits, values, actions, returns, *, entropy_coef, value_coef, mask=None, advantages=None
):
    """PAAC's loss with the bug: the advantage R - V keeps its graph, so the policy term also
    trains the critic (towards making the sampled actions' advantages large)."""
    weight = torch.ones_like(values) if mask is None else mask.to(values.dtype)
    log_probs = F.log_softmax(logits, dim=-1)
    chosen = log_probs.gather(-1, actions.long().unsqueeze(-1)).squeeze(-1)
    entropy = -(log_probs.exp() * log_probs).sum(-1)
    advantage = returns - values if advantages is None else advantages
    n_envs = values.shape[1]
    policy = (weight * (-chosen * advantage - entropy_coef * entropy)).sum() / n_envs
    value = (weight * (returns - values).pow(2)).sum() / n_envs
    return agents.paac.PAACLoss(
        policy + value_coef * value, policy.detach(), value.detach(), entropy.mean().detach()
    )


def test_an_undetached_advantage_fails(monkeypatch):
    monkeypatch.setattr(agents.paac, "paac_loss", undetached_paac_loss)
    report = check("cartpole_paac.yaml")
    assert report.failed
    result = next(r for r in report.results if r.name == "actor-critic gradient")
    assert result.status == FAIL and "detach the advantage" in result.advice
    assert result.data["critic"] > 1e-3 and result.data["actor"] < 1e-9
    # Autograd is right about the buggy loss: finite differences cannot catch this bug.
    assert status(report, "gradient check") == PASS


def test_rlkit_train_points_to_rlkit_check_when_the_ratio_warns(capsys, tmp_path):
    run, shown = tmp_path / "run", warnings.showwarning
    code = main(
        [
            "train",
            str(CONFIGS / "cartpole_paac.yaml"),
            "--run-dir",
            str(run),
            "--steps",
            "3200",
            "--set",
            "optim.lr=1.0",
            "--set",
            "train.log_every=320",
            "--set",
            "train.eval_every=0",
            "--set",
            "train.progress=false",
        ]
    )
    assert code == 0
    lines = capsys.readouterr().err.splitlines()
    pointers = [line for line in lines if "rlkit check" in line]
    assert pointers == [
        f"rlkit: to diagnose it before a run: rlkit check {run / 'config.yaml'} "
        "(the update/weight ratio per layer, gradients, dead units, what to "
        "change)"
    ]
    assert warnings.showwarning is shown  # the hook ends with the run


def test_overfit_tiny_batch_stops_before_a_step_past_the_target():
    """Adam's second step from w = 0.9 overshoots to w ~ 1.57 (loss 0.32); the batch was fitted
    (loss 0.01 < 0.05) before it, and that is what the result must say."""
    model = nn.Linear(1, 1, bias=False)
    nn.init.zeros_(model.weight)

    def loss(m, _batch):
        return (m.weight.sum() - 1.0) ** 2

    result = overfit_tiny_batch(
        model, loss, None, steps=10, lr=0.9, target=0.05, raise_on_failure=False
    )
    assert result.passed and result.steps == 1
    assert result.final_loss == pytest.approx(0.01, rel=1e-3)

"""The PAAC learner end to end: rollout bookkeeping under autoreset, exact resume through the
CLI, the evaluation policy and an Atari smoke run (solving CartPole:
tests/test_cartpole_learning.py)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from agents.cli import main
from agents.config import load_config
from agents.paac import PAACLearner, build_policy
from rlkit.checkpoint import load_checkpoint
from rlkit.logger import Logger

ROOT = Path(__file__).resolve().parents[1]
CARTPOLE = str(ROOT / "configs" / "cartpole_paac.yaml")
PONG = str(ROOT / "configs" / "pong_paac.yaml")
QUIET = ["--set", "train.progress=false"]


def _cartpole_learner(**overrides: object) -> PAACLearner:
    sets = [f"{k}={v}" for k, v in {"env.num_envs": 4, "agent.t_max": 8, **overrides}.items()]
    cfg = load_config(CARTPOLE, sets)
    return PAACLearner(cfg, torch.device("cpu"), Logger(None))


def test_rollouts_mask_exactly_the_autoreset_steps() -> None:
    """Each step after an episode end (in the same rollout or the previous one) is masked,
    has reward 0, and nothing else is masked; env_steps counts every vector step."""
    learner = _cartpole_learner()
    previous_done = np.zeros(4, dtype=bool)
    ends = 0
    for _ in range(30):  # 960 steps: dozens of CartPole episodes end under a random-ish policy
        rollout = learner.collect()
        done = (rollout.terminated | rollout.truncated).numpy()
        mask = rollout.mask.numpy()
        expected = ~np.vstack([previous_done[None], done[:-1]])
        np.testing.assert_array_equal(mask, expected)
        assert (rollout.rewards.numpy()[~mask] == 0).all()
        assert rollout.logits.requires_grad and not rollout.bootstrap.requires_grad
        previous_done = done[-1]
        ends += int(done.sum())
        learner.learn(rollout)
    assert ends > 10
    assert learner.env_steps == 30 * 8 * 4
    assert learner.update.updates == 30
    learner.close()


def test_scalars_only_at_log_boundaries() -> None:
    learner = _cartpole_learner(**{"train.log_every": 64})  # 2 iterations of 32 steps
    first, second = learner.train_iteration(), learner.train_iteration()
    assert first == {}
    assert {"train/loss", "train/policy_loss", "train/value_loss", "train/entropy",
            "train/grad_norm", "train/lr", "train/updates"} <= set(second)
    assert second["train/updates"] == 2.0
    learner.close()


def test_policy_from_checkpoint_state_samples_or_takes_argmax() -> None:
    learner = _cartpole_learner()
    learner.train_iteration()
    state = learner.state_dict()
    policy = build_policy(learner.cfg, state, learner.envs.single_observation_space,
                          learner.envs.single_action_space, torch.device("cpu"), seed=3)
    obs = np.random.default_rng(0).normal(size=(256, 4)).astype(np.float32)
    with torch.no_grad():
        logits, _ = learner.net(torch.from_numpy(obs))
    np.testing.assert_array_equal(policy.act(obs, greedy=True), logits.argmax(-1).numpy())
    # Sampling follows softmax(logits): with 1 step a batch of identical rows, the action
    # frequencies match the probabilities within sampling error.
    row = np.repeat(obs[:1], 20_000, axis=0)
    freq = np.bincount(policy.act(row), minlength=2) / len(row)
    np.testing.assert_allclose(freq, torch.softmax(logits[0], -1).numpy(), atol=0.015)
    again = build_policy(learner.cfg, state, learner.envs.single_observation_space,
                         learner.envs.single_action_space, torch.device("cpu"), seed=3)
    np.testing.assert_array_equal(again.act(obs), build_policy(
        learner.cfg, state, learner.envs.single_observation_space,
        learner.envs.single_action_space, torch.device("cpu"), seed=3).act(obs))
    learner.close()


def test_resume_is_exact(tmp_path: Path) -> None:
    """N steps straight == N/2, then ``--resume`` to N: identical parameters, optimizer state,
    counters and LR (the LR horizon is pinned so that --steps does not move it)."""
    small = [*QUIET, "--set", "env.num_envs=8", "--set", "optim.lr_decay_steps=4000",
             "--set", "train.log_every=320", "--set", "train.eval_every=0",
             "--set", "checkpoint.every=0"]
    straight, split = tmp_path / "straight", tmp_path / "split"
    assert main(["train", CARTPOLE, "--run-dir", str(straight), "--steps", "1600", *small]) == 0
    assert main(["train", CARTPOLE, "--run-dir", str(split), "--steps", "800", *small]) == 0
    assert load_checkpoint(split / "checkpoints" / "last.pt")["learner"]["env_steps"] == 800
    assert main(["train", "--resume", str(split), "--steps", "1600"]) == 0
    a, b = (load_checkpoint(d / "checkpoints" / "last.pt")["learner"] for d in (straight, split))
    assert a["env_steps"] == b["env_steps"] == 1600
    assert a["update"]["updates"] == b["update"]["updates"] == 40
    for name, tensor in a["net"].items():
        assert torch.equal(tensor, b["net"][name]), name
    opt_a, opt_b = a["update"]["optimizer"]["state"], b["update"]["optimizer"]["state"]
    for key in opt_a:
        for field, value in opt_a[key].items():
            assert torch.equal(torch.as_tensor(value), torch.as_tensor(opt_b[key][field]))
    assert torch.equal(a["generator"], b["generator"])


def test_pong_smoke_train_resume_evaluate(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """Pixels end to end: uint8 frames through the NIPS network, resume, one capped game."""
    run = tmp_path / "pong"
    tiny = [*QUIET, "--set", "env.num_envs=4", "--set", "env.backend=sync",
            "--set", "env.max_episode_frames=2000", "--set", "train.log_every=200",
            "--set", "train.eval_every=0", "--set", "checkpoint.every=0",
            "--set", "train.threads=1"]
    assert main(["train", PONG, "--run-dir", str(run), "--steps", "200", *tiny]) == 0
    first = load_checkpoint(run / "checkpoints" / "last.pt")["learner"]
    assert first["env_steps"] == 200 and first["update"]["updates"] == 10
    assert first["net"]["encoder.convs.0.weight"].shape == (16, 4, 8, 8)
    assert main(["train", "--resume", str(run), "--steps", "400"]) == 0
    assert load_checkpoint(run / "checkpoints" / "last.pt")["learner"]["update"]["updates"] == 20
    capsys.readouterr()
    out = tmp_path / "eval.json"
    assert main(["evaluate", str(run / "checkpoints" / "last.pt"), "--episodes", "1",
                 "--json", str(out)]) == 0
    summary = json.loads(out.read_text())
    assert summary["episodes"] == 1 and -21 <= summary["mean"] <= 21

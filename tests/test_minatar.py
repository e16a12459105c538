"""MinAtar (Young & Tian 2019) through ``make_env`` / ``make_vector_env``, its errors, the
network ``auto`` picks for its 10x10 observations, and one learner update of DQN and PAAC."""

from __future__ import annotations

import builtins
import importlib.util
import json
import sys
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from gymnasium.utils.env_checker import check_env

import envs
from agents.cli import main
from agents.config import load_config
from agents.dqn import DQNLearner, QNetwork
from agents.networks import DSiLU, PixelEncoder, auto_encoder, build_encoder
from agents.paac import ActorCritic, PAACLearner
from envs.minatar import MINATAR_GAMES, MissingExtraError
from rlkit.logger import Logger

pytest.importorskip("minatar")

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "configs"
CHANNELS = {"Asterix": 4, "Breakout": 4, "Freeway": 7, "Seaquest": 10, "SpaceInvaders": 6}
MINIMAL_ACTIONS = {"Asterix": 5, "Breakout": 3, "Freeway": 3, "Seaquest": 6, "SpaceInvaders": 4}


def play(env: gym.Env, steps: int, seed: int) -> list[tuple[bytes, float, bool]]:
    obs, _ = env.reset(seed=seed)
    rng = np.random.default_rng(0)
    out = [(obs.tobytes(), 0.0, False)]
    for _ in range(steps):
        obs, reward, terminated, truncated, _ = env.step(int(rng.integers(env.action_space.n)))
        out.append((obs.tobytes(), float(reward), terminated))
        if terminated or truncated:
            obs, _ = env.reset()
    return out


@pytest.mark.parametrize("game", MINATAR_GAMES)
def test_every_game_is_channels_first_uint8_with_six_or_minimal_actions(game):
    full = envs.make_env(f"MinAtar/{game}-v0", seed=0)
    minimal = envs.make_env(f"MinAtar/{game}-v1", seed=0)
    try:
        shape = (CHANNELS[game], 10, 10)
        assert full.observation_space == gym.spaces.Box(0, 1, shape, np.uint8)
        obs, _ = full.reset()
        assert obs.shape == shape and obs.dtype == np.uint8 and obs.flags.c_contiguous
        assert set(np.unique(obs)) <= {0, 1} and obs.any()
        assert full.action_space == gym.spaces.Discrete(6)
        assert minimal.action_space == gym.spaces.Discrete(MINIMAL_ACTIONS[game])
    finally:
        full.close()
        minimal.close()


def test_observation_is_minatar_state_transposed():
    env = envs.make_env("MinAtar/Seaquest-v0", seed=1)
    obs, _ = env.reset()
    state = env.unwrapped.game.state()  # MinAtar's own (10, 10, C) bool state
    assert np.array_equal(obs, state.transpose(2, 0, 1).astype(np.uint8))
    env.close()


def test_same_seed_same_game_and_seeded_reset_replays_it():
    a = envs.make_env("MinAtar/Asterix-v0", seed=7)
    b = envs.make_env("MinAtar/Asterix-v0", seed=7)
    c = envs.make_env("MinAtar/Asterix-v0", seed=8)
    first = play(a, 300, seed=7)
    assert first == play(b, 300, seed=7)
    assert first != play(c, 300, seed=8)
    assert play(a, 300, seed=7) == first  # a used env, reset with the seed, plays the same again
    for env in (a, b, c):
        env.close()


@pytest.mark.parametrize("backend", ["sync", "async"])
def test_vector_env_batches_and_seeds_env_i_with_seed_plus_i(backend):
    vec = envs.make_vector_env("MinAtar/Breakout-v1", 3, backend=backend, seed=5)
    try:
        assert vec.backend == backend
        obs, _ = vec.reset(seed=5)
        assert obs.shape == (3, 4, 10, 10) and obs.dtype == np.uint8
        assert vec.single_action_space == gym.spaces.Discrete(3)
        for i in range(3):
            single = envs.make_env("MinAtar/Breakout-v1", seed=5 + i)
            assert np.array_equal(obs[i], single.reset(seed=5 + i)[0])
            single.close()
        obs, rewards, terminated, truncated, _ = vec.step(np.array([0, 1, 2]))
        assert obs.shape == (3, 4, 10, 10) and rewards.shape == (3,)
    finally:
        vec.close()


def test_auto_backend_is_sync_and_ale_refuses_minatar():
    vec = envs.make_vector_env("MinAtar/Freeway-v0", 2, seed=0)
    assert vec.backend == "sync"
    vec.close()
    with pytest.raises(ValueError, match="backend 'ale' runs Atari games only.*'sync'"):
        envs.make_vector_env("MinAtar/Freeway-v0", 2, backend="ale")


def test_freeway_game_is_2500_time_steps():
    env = envs.make_env("MinAtar/Freeway-v0", seed=0)
    env.reset()
    steps, terminated = 0, False
    while not terminated:
        _, _, terminated, truncated, _ = env.step(0)
        steps += 1
        assert not truncated
    assert steps == 2501  # the 2,501st step reports the end of the 2,500-step game
    env.close()


@pytest.mark.filterwarnings("ignore:.*the `seed` function is dropped")  # MinAtar defines one
@pytest.mark.filterwarnings("ignore:.*different from the unwrapped version")  # ours, on purpose
def test_gymnasium_check_env_passes():
    for env_id in ("MinAtar/Breakout-v0", "MinAtar/SpaceInvaders-v1"):
        env = envs.make_env(env_id)
        check_env(env, skip_render_check=True)
        env.close()


@pytest.mark.parametrize("bad", ["MinAtar/Pong-v0", "MinAtar/Breakout-v2"])
def test_unknown_minatar_ids_are_one_line_value_errors(bad):
    for make in (envs.make_env, lambda i: envs.make_vector_env(i, 2)):
        with pytest.raises(ValueError, match="unknown MinAtar id") as info:
            make(bad)
        assert "\n" not in str(info.value) and "Breakout" in str(info.value)


def test_misspelled_namespace_suggests_the_minatar_id():
    with pytest.raises(ValueError, match="did you mean 'MinAtar/Breakout-v0'"):
        envs.make_env("minatar/breakout-v0")


def test_atari_options_are_refused():
    with pytest.raises(ValueError, match="frame_stack apply only to Atari ids"):
        envs.make_env("MinAtar/Breakout-v0", frame_stack=4)


@pytest.fixture
def without_minatar(monkeypatch):
    """Make ``import minatar`` fail as if the package were not installed."""
    monkeypatch.delitem(gym.registry, "MinAtar/Breakout-v0", raising=False)
    for name in [m for m in sys.modules if m == "minatar" or m.startswith("minatar.")]:
        monkeypatch.delitem(sys.modules, name)
    real_import = builtins.__import__

    def fake_import(name, *args, **kwargs):
        if name == "minatar" or name.startswith("minatar."):
            raise ModuleNotFoundError(f"No module named {name!r}")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", fake_import)


def test_missing_package_names_the_extra(without_minatar):
    for make in (envs.make_env, lambda i: envs.make_vector_env(i, 2)):
        with pytest.raises(MissingExtraError, match=r"pip install -e '\.\[minatar\]'"):
            make("MinAtar/Breakout-v0")
    with pytest.raises(ValueError, match="unknown MinAtar id"):  # the id is checked first
        envs.make_env("MinAtar/Pong-v0")


def test_cli_reports_missing_package_and_unknown_id_in_one_line(without_minatar, capsys, tmp_path):
    for env_id, expected in (("MinAtar/Breakout-v0", "pip install -e '.[minatar]'"),
                             ("MinAtar/Pong-v0", "unknown MinAtar id")):
        code = main(["train", str(CONFIGS / "minatar_dqn.yaml"), "--set", f"env.id={env_id}",
                     "--run-dir", str(tmp_path / "run")])
        err = capsys.readouterr().err.strip()
        assert code == 1 and len(err.splitlines()) == 1, err
        assert err.startswith("rlkit: error: env.id: ") and expected in err


def test_auto_encoder_picks_minatar_net_for_10x10_and_keeps_atari_nets():
    assert auto_encoder((4, 10, 10)) == auto_encoder((4, 10, 10), "nips") == "minatar"
    assert auto_encoder((4, 84, 84)) == "nature" and auto_encoder((4, 84, 84), "nips") == "nips"
    assert auto_encoder((4,)) == "mlp"
    net = build_encoder((7, 10, 10))
    assert isinstance(net, PixelEncoder) and net.out_features == 128
    conv, fc = net.convs[0], net.fc[0]
    assert (conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding) == (
        7, 16, (3, 3), (1, 1), (0, 0))
    assert (fc.in_features, fc.out_features) == (16 * 8 * 8, 128)
    assert ActorCritic((4, 84, 84), 6).encoder.convs[0].kernel_size == (8, 8)  # PAAC: NIPS
    assert ActorCritic((4, 10, 10), 6).encoder.convs[0].kernel_size == (3, 3)
    with pytest.raises(ValueError, match="use encoder 'minatar'"):
        build_encoder((4, 10, 10), "nature")


def test_minatar_net_takes_its_0_1_channels_unscaled():
    net = QNetwork((4, 10, 10), 6, encoder="minatar")
    obs = torch.randint(0, 2, (3, 4, 10, 10), dtype=torch.uint8)
    assert torch.equal(net(obs), net(obs.float()))


def test_dsilu_is_the_derivative_of_silu():
    x = torch.linspace(-6.0, 6.0, 49, dtype=torch.float64, requires_grad=True)
    (grad,) = torch.autograd.grad(F.silu(x).sum(), x)
    assert torch.allclose(DSiLU()(x.detach()), grad)


def test_minatar_ac_net_is_the_minatar_net_with_the_papers_ac_activations():
    relu, smooth = build_encoder((4, 10, 10), "minatar"), build_encoder((4, 10, 10), "minatar_ac")
    shapes = [tuple(p.shape) for p in relu.parameters()]
    assert [tuple(p.shape) for p in smooth.parameters()] == shapes
    assert isinstance(smooth.convs[1], torch.nn.SiLU) and isinstance(smooth.fc[1], DSiLU)
    assert isinstance(relu.convs[1], torch.nn.ReLU) and isinstance(relu.fc[1], torch.nn.ReLU)
    obs = torch.randint(0, 2, (3, 4, 10, 10), dtype=torch.uint8)
    assert torch.equal(smooth(obs), smooth(obs.float()))  # 0/1 channels, unscaled
    features = smooth(obs.float())  # dSiLU's range: no unit is clamped at 0 as a ReLU's can be
    assert bool((features > -0.11).all() and (features < 1.11).all())


@pytest.mark.parametrize("config", ["minatar_dqn.yaml", "minatar_paac.yaml"])
def test_config_key_selects_the_network(config):
    for encoder in ("auto", "minatar", "minatar_ac"):
        cfg = load_config(CONFIGS / config, [f"agent.encoder={encoder}"])
        assert cfg.agent.encoder == encoder and cfg.env.id == "MinAtar/Breakout-v0"
        net = QNetwork((4, 10, 10), 6, encoder=encoder) if "dqn" in config else ActorCritic(
            (4, 10, 10), 6, encoder=encoder)
        assert tuple(net.encoder.convs[0].weight.shape) == (16, 4, 3, 3)


def _tiny(config: str, *sets: str):
    return load_config(CONFIGS / config, ["env.num_envs=2", "train.threads=1", *sets])


def test_dqn_learner_updates_on_minatar():
    cfg = _tiny("minatar_dqn.yaml", "env.id=MinAtar/SpaceInvaders-v1", "agent.learning_starts=32",
                "agent.train_freq=2", "agent.batch_size=8")
    learner = DQNLearner(cfg, torch.device("cpu"), Logger(None))
    try:
        assert learner.envs.single_observation_space.shape == (6, 10, 10)
        assert learner.q.encoder.convs[0].kernel_size == (3, 3)
        before = [p.detach().clone() for p in learner.q.parameters()]
        while learner.update.updates < 3:
            learner.train_iteration()
        assert any(not torch.equal(a, b) for a, b in zip(before, learner.q.parameters(),
                                                         strict=True))
        assert learner.replay.sample(4).obs.shape == (4, 6, 10, 10)
    finally:
        learner.close()


def test_paac_learner_updates_on_minatar():
    learner = PAACLearner(_tiny("minatar_paac.yaml", "env.id=MinAtar/Seaquest-v0"),
                          torch.device("cpu"), Logger(None))
    try:
        assert learner.net.encoder.convs[0].weight.shape == (16, 10, 3, 3)
        before = [p.detach().clone() for p in learner.net.parameters()]
        learner.train_iteration()
        assert learner.update.updates == 1 and learner.env_steps == 2 * 5
        assert all(torch.isfinite(p).all() for p in learner.net.parameters())
        assert any(not torch.equal(a, b) for a, b in zip(before, learner.net.parameters(),
                                                         strict=True))
    finally:
        learner.close()


@pytest.mark.parametrize("config", ["minatar_dqn.yaml", "minatar_paac.yaml"])
def test_train_evaluate_export_round_trip(config, tmp_path, capsys):
    run = tmp_path / "run"
    sets = ["env.num_envs=2", "train.threads=1", "train.progress=false", "train.log_every=100",
            "train.eval_every=0", "checkpoint.every=0", "agent.learning_starts=50"]
    if "paac" in config:
        sets.remove("agent.learning_starts=50")
    argv = ["train", str(CONFIGS / config), "--run-dir", str(run), "--steps", "200"]
    assert main([*argv, *[a for s in sets for a in ("--set", s)]]) == 0
    last = run / "checkpoints" / "last.pt"
    small = tmp_path / "policy.pt"
    assert main(["export", str(last), str(small)]) == 0
    for checkpoint in (last, small):
        out = tmp_path / f"{checkpoint.stem}.json"
        assert main(["evaluate", str(checkpoint), "--episodes", "2", "--json", str(out)]) == 0
        summary = json.loads(out.read_text())
        assert summary["episodes"] == 2 and summary["env_id"] == "MinAtar/Breakout-v0"
        assert summary["human_normalized"] is None
        assert summary["protocol"]["repeat_action_probability"] == 0.1  # MinAtar's own
    capsys.readouterr()


def _script(name: str):
    """A module of ``scripts/`` (not a package), loaded by path."""
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_minatar_behaviour_reads_the_game_state_and_refuses_other_games(tmp_path, capsys):
    behaviour = _script("minatar_behaviour")
    runs = {}
    for game, config in (("Seaquest", "minatar_paac.yaml"), ("Breakout", "minatar_dqn.yaml"),
                         ("Freeway", "minatar_paac.yaml")):
        run = runs[game] = tmp_path / game
        sets = ["env.num_envs=2", "train.threads=1", "train.progress=false", "train.eval_every=0",
                "checkpoint.every=0", f"env.id=MinAtar/{game}-v0"]
        argv = ["train", str(CONFIGS / config), "--run-dir", str(run), "--steps", "40"]
        assert main([*argv, *[a for s in sets for a in ("--set", s)]]) == 0
    capsys.readouterr()
    seaquest = str(runs["Seaquest"] / "checkpoints" / "last.pt")
    assert behaviour.main([seaquest, "--games", "2", "--seed", "3"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["env_id"] == "MinAtar/Seaquest-v0" and len(report["scores"]) == 2
    assert len(report["surfacings"]) == len(report["oxygen_at_end"]) == 2
    assert report["games_out_of_oxygen"] == sum(o < 0 for o in report["oxygen_at_end"])
    assert report["mean_score"] == sum(report["scores"]) / 2
    breakout = str(runs["Breakout"] / "checkpoints" / "last.pt")
    assert behaviour.main([breakout, "--games", "3", "--epsilon", "1.0"]) == 0  # random play
    report = json.loads(capsys.readouterr().out)
    moves = report["falling_ball_elsewhere"]
    assert report["falling_ball_elsewhere_steps"] > 0 and abs(sum(moves.values()) - 1) < 1e-3
    # Uniform over 6 actions: 1 of 6 moves towards the ball, 1 away, 4 leave the paddle still.
    assert moves["still"] > max(moves["towards"], moves["away"])
    assert len(report["columns_from_ball_when_lost"]) == 3
    assert 0 <= report["paddle_in_centre_columns"] <= 1
    freeway = str(runs["Freeway"] / "checkpoints" / "last.pt")
    assert behaviour.main([freeway]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "MinAtar Breakout and Seaquest only" in err

"""``rlkit evaluate``: games played side by side, human-normalised scores (Nature DQN table), the
protocol in the JSON, and the sticky-action protocol of Machado et al. 2018."""

from __future__ import annotations

import json
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest

from agents.cli import main
from agents.config import EnvConfig
from agents.environments import PARALLEL_GAMES, make_eval_env, open_eval_envs
from agents.evaluate import STICKY_ACTIONS, eval_env_config, play_games, read_checkpoint
from envs.atari_scores import RANDOM_AND_HUMAN, game_name, human_normalized
from envs.registry import canonical_atari_id

ROOT = Path(__file__).resolve().parents[1]
CARTPOLE = str(ROOT / "configs" / "cartpole_dqn.yaml")
PONG = str(ROOT / "configs" / "pong_dqn.yaml")


@pytest.fixture(scope="module")
def cartpole_ckpt(tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("cartpole") / "run"
    tiny = (
        "--steps 200 --set train.progress=false --set train.eval_every=0 "
        "--set agent.learning_starts=100 --set agent.mlp_hidden=[8]"
    )
    assert main(["train", CARTPOLE, "--run-dir", str(run), *tiny.split()]) == 0
    return run / "checkpoints" / "last.pt"


@pytest.fixture(scope="module")
def pong_ckpt(tmp_path_factory) -> Path:
    """An untrained Pong DQN (no update yet) whose games stop after 400 frames."""
    run = tmp_path_factory.mktemp("pong") / "run"
    tiny = (
        "--steps 16 --set train.progress=false --set train.eval_every=0 --set env.num_envs=1 "
        "--set env.backend=sync --set agent.buffer_size=64 --set agent.learning_starts=1000 "
        "--set env.max_episode_frames=400 --set train.threads=1 --set checkpoint.save_replay=false"
    )
    assert main(["train", PONG, "--run-dir", str(run), *tiny.split()]) == 0
    return run / "checkpoints" / "last.pt"


def evaluate(capsys, ckpt: Path, tmp_path: Path, *extra: str) -> tuple[dict, str]:
    out_json = tmp_path / "eval.json"
    assert main(["evaluate", str(ckpt), "--episodes", "1", "--json", str(out_json), *extra]) == 0
    return json.loads(out_json.read_text()), capsys.readouterr().out


# ----------------------------------------------------------------------------- games side by side


class FixedLengthGame(gym.Env):
    """Games of ``length`` steps, 1 point per step: a game's score is its length."""

    observation_space = gym.spaces.Box(0.0, 1.0, (2,))
    action_space = gym.spaces.Discrete(2)

    def __init__(self, length: int) -> None:
        self.length = length
        self.t = 0
        self.seeds: list[int | None] = []

    def reset(self, *, seed=None, options=None):
        self.seeds.append(seed)
        self.t = 0
        return np.zeros(2, dtype=np.float32), {}

    def step(self, action):
        self.t += 1
        return np.zeros(2, dtype=np.float32), 1.0, self.t >= self.length, False, {}


def test_each_env_plays_its_share_so_short_games_are_not_favoured():
    """The first 5 games to finish would be 5 one-step games; each env plays its share instead
    (3 and 2), so the long games count as often as they were dealt."""
    envs = [FixedLengthGame(1), FixedLengthGame(5)]
    result = play_games(lambda obs: np.zeros(len(obs), dtype=np.int64), envs, 5, seed=0)
    assert result.returns == [1.0, 1.0, 1.0, 5.0, 5.0]
    assert result.lengths == [1, 1, 1, 5, 5]


def test_one_act_call_per_step_serves_every_env_still_playing():
    batches: list[int] = []

    def act(obs: np.ndarray) -> np.ndarray:
        batches.append(len(obs))
        return np.zeros(len(obs), dtype=np.int64)

    envs = [FixedLengthGame(2), FixedLengthGame(4), FixedLengthGame(4)]
    result = play_games(act, envs, 3, seed=0)
    assert sorted(result.returns) == [2.0, 4.0, 4.0]
    assert batches == [3, 3, 2, 2]  # the 2-step game ends after the second step


def test_envs_beyond_the_games_are_left_idle_and_seeds_differ_per_env():
    envs = [FixedLengthGame(3) for _ in range(4)]
    result = play_games(lambda obs: np.zeros(len(obs), dtype=np.int64), envs, 2, seed=7)
    assert result.returns == [3.0, 3.0]
    assert envs[2].seeds == envs[3].seeds == []  # never reset: no game for them
    first = [env.seeds[0] for env in envs[:2]]
    assert None not in first and len(set(first)) == 2


def test_cartpole_evaluation_is_reproducible_and_seeded():
    """Same seed, same games; another seed, other games (a random policy on CartPole)."""
    def scores(seed: int) -> list[float]:
        rng = np.random.default_rng(0)
        with open_eval_envs(EnvConfig(id="CartPole-v1"), 20) as envs:
            return play_games(lambda obs: rng.integers(2, size=len(obs)), envs, 20,
                              seed=seed).returns

    assert scores(3) == scores(3)
    assert scores(3) != scores(4)
    with open_eval_envs(EnvConfig(id="CartPole-v1"), 1000) as many:
        assert len(many) == PARALLEL_GAMES


def test_evaluation_runs_on_the_threads_training_ran_on(cartpole_ckpt, tmp_path, capsys):
    """The CartPole config trains on one thread; evaluating it on torch's default of one per core
    would make every small forward pass wait for a busy core."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        evaluate(capsys, cartpole_ckpt, tmp_path)
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


def test_bench_evaluate_times_both_ways_on_the_same_games_count(cartpole_ckpt, capsys):
    import importlib.util

    spec = importlib.util.spec_from_file_location("bench_evaluate",
                                                  ROOT / "scripts" / "bench_evaluate.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    assert bench.main([str(cartpole_ckpt), "--games", "3", "--repeats", "2"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["parallel_games"] == 3
    for runs in report["runs"].values():
        assert len(runs) == 2 and all(run["agent_steps"] >= 3 for run in runs)
    rates = report["median_steps_per_s"]
    assert report["ratio_side_by_side"] == rates["side_by_side"] / rates["one_at_a_time"]


# ----------------------------------------------------------------------------- reference scores


@pytest.mark.parametrize(
    ("game", "dqn_score", "published_percent"),
    # Nature DQN's own scores and the normalised percentages printed next to them
    [
        ("Breakout", 401.2, 1327.2),
        ("Pong", 18.9, 132.0),
        ("Boxing", 71.8, 1707.1),
        ("VideoPinball", 42684.0, 2538.6),
        ("SpaceInvaders", 1976.0, 121.5),
        ("Seaquest", 5286.0, 25.9),
        ("MontezumaRevenge", 0.0, 0.0),
        ("Tennis", -2.5, 143.0),
    ],
)
def test_human_normalized_reproduces_the_nature_table(game, dqn_score, published_percent):
    assert human_normalized(game, dqn_score) == pytest.approx(published_percent, abs=0.1)


def test_table_covers_the_49_games_and_every_id_spelling():
    assert len(RANDOM_AND_HUMAN) == 49
    for game in RANDOM_AND_HUMAN:  # every name is a game ale-py knows, spelt as gymnasium does
        assert canonical_atari_id(f"ALE/{game}-v5") == f"ALE/{game}-v5", game
    random_score, human_score = RANDOM_AND_HUMAN["Pong"]
    for env_id in ("ALE/Pong-v5", "PongNoFrameskip-v4", "Pong", "pong", "PongDeterministic-v4"):
        assert game_name(env_id) == "Pong"
        assert human_normalized(env_id, random_score) == 0.0
        assert human_normalized(env_id, human_score) == pytest.approx(100.0)
    for unknown in ("CartPole-v1", "ALE/Tetris-v5", "Pongg", ""):
        assert human_normalized(unknown, 1.0) is None


# ----------------------------------------------------------------------------- rlkit evaluate


def test_json_names_env_protocol_and_a_null_score_for_non_atari(capsys, cartpole_ckpt, tmp_path):
    summary, printed = evaluate(capsys, cartpole_ckpt, tmp_path)
    assert summary["env_id"] == "CartPole-v1"
    assert summary["human_normalized"] is None  # no reference scores for CartPole
    assert summary["protocol"] == {
        "policy": "epsilon-greedy",
        "epsilon": 0.05,
        "noop_max": None,
        "repeat_action_probability": 0.0,
        "max_episode_frames": None,
    }
    assert "protocol: epsilon-greedy (0.05), no sticky actions" in printed
    assert "human-normalised" not in printed
    summary, printed = evaluate(capsys, cartpole_ckpt, tmp_path, "--greedy")
    assert summary["protocol"]["policy"] == "greedy" and summary["protocol"]["epsilon"] is None
    assert "protocol: greedy, no sticky actions" in printed


def test_sticky_action_mistakes_are_one_line_before_any_game(capsys, cartpole_ckpt):
    for argv, code, message in (
        (
            ["--sticky-actions"],
            1,
            "rlkit: error: sticky actions apply to Atari games only, not "
            "'CartPole-v1'; drop --sticky-actions / "
            "--repeat-action-probability",
        ),
        (
            ["--repeat-action-probability", "1.5"],
            1,
            "rlkit: error: --repeat-action-probability must be in [0, 1], got 1.5",
        ),
        (
            ["--sticky-actions", "--repeat-action-probability", "0.1"],
            2,
            "rlkit: error: argument --repeat-action-probability: not allowed with argument "
            "--sticky-actions",
        ),
    ):
        try:
            got = main(["evaluate", str(cartpole_ckpt), *argv])
        except SystemExit as exc:  # argparse usage errors
            got = exc.code
        out, err = capsys.readouterr()
        assert got == code
        assert out == "" and err.strip().startswith(message), err
        assert len(err.strip().splitlines()) == 1


def test_pong_with_sticky_actions_reports_protocol_and_human_normalized(
    capsys, pong_ckpt, tmp_path
):
    summary, printed = evaluate(capsys, pong_ckpt, tmp_path, "--sticky-actions")
    assert summary["env_id"] == "ALE/Pong-v5"
    assert summary["protocol"] == {
        "policy": "epsilon-greedy",
        "epsilon": 0.05,
        "noop_max": 30,
        "repeat_action_probability": 0.25,
        "max_episode_frames": 400,
    }
    assert summary["human_normalized"] == pytest.approx(
        100 * (summary["mean"] + 20.7) / (9.3 + 20.7)
    )
    assert "sticky actions p=0.25" in printed and "up to 30 no-op starts" in printed
    assert f"(human-normalised {summary['human_normalized']:.1f}%)" in printed
    summary, _ = evaluate(capsys, pong_ckpt, tmp_path, "--repeat-action-probability", "0.1")
    assert summary["protocol"]["repeat_action_probability"] == 0.1
    summary, _ = evaluate(capsys, pong_ckpt, tmp_path)  # the training config's: none
    assert summary["protocol"]["repeat_action_probability"] == 0.0


def test_sticky_probability_reaches_the_emulator(pong_ckpt):
    _, cfg = read_checkpoint(pong_ckpt)
    for p, expected in ((STICKY_ACTIONS, 0.25), (None, cfg.env.repeat_action_probability)):
        env = make_eval_env(eval_env_config(cfg, p).env, seed=0)
        try:
            assert env.unwrapped.ale.getFloat("repeat_action_probability") == expected
        finally:
            env.close()


def test_protocol_names_a_stochastic_policy_sampled(cartpole_ckpt):
    from agents.evaluate import eval_protocol
    from agents.paac import PAACPolicy

    _, cfg = read_checkpoint(cartpole_ckpt)
    assert PAACPolicy.explores_with_epsilon is False  # PAAC ignores --epsilon
    protocol = eval_protocol(cfg, greedy=False, epsilon=0.05, uses_epsilon=False)
    assert (protocol.policy, protocol.epsilon) == ("sampled", None)
    assert protocol.line() == "protocol: sampled, no sticky actions"

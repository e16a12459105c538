"""agents.config: YAML -> typed dataclasses, overrides, validation messages, round trip."""

from __future__ import annotations

import dataclasses
import typing
from pathlib import Path

import pytest
import torch

from agents.algo_configs import DQNConfig
from agents.config import (
    ALGO_CONFIGS,
    SECTIONS,
    Config,
    ConfigError,
    change_budget,
    config_from_dict,
    dump_config,
    load_config,
    parse_override,
)

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "c.yaml"
    path.write_text(text)
    return path


MINIMAL = "env: {id: CartPole-v1}\nagent: {algo: dqn}\n"


def test_minimal_config_gets_documented_defaults(tmp_path):
    cfg = load_config(write(tmp_path, MINIMAL))
    assert isinstance(cfg, Config)
    assert isinstance(cfg.agent, DQNConfig)
    assert cfg.env.id == "CartPole-v1" and cfg.env.num_envs == 1
    assert cfg.agent.double is False  # "dqn" is never Double DQN
    assert cfg.agent.prioritized is False and cfg.agent.learning_starts == 50_000
    assert cfg.optim.name == "adam" and cfg.train.device == "auto"
    assert cfg.checkpoint.save_replay is None


def test_double_dqn_flag_follows_algo(tmp_path):
    cfg = load_config(write(tmp_path, MINIMAL), ["agent.algo=double_dqn"])
    assert cfg.agent.algo == "double_dqn" and cfg.agent.double is True


def test_overrides_are_yaml_scalars_and_type_checked(tmp_path):
    cfg = load_config(
        write(tmp_path, MINIMAL),
        ["agent.gamma=0.5", "optim.lr=1e-3", "agent.mlp_hidden=[8, 16]", "optim.max_grad_norm=null",
         "train.steps=1e6", "agent.prioritized=true", "optim.betas=[0.5, 0.9]"],
    )
    assert cfg.agent.gamma == 0.5
    assert cfg.optim.lr == pytest.approx(1e-3) and isinstance(cfg.optim.lr, float)
    assert cfg.agent.mlp_hidden == [8, 16]
    assert cfg.optim.max_grad_norm is None
    assert cfg.train.steps == 1_000_000 and isinstance(cfg.train.steps, int)
    assert cfg.agent.prioritized is True
    assert cfg.optim.betas == (0.5, 0.9)


def test_yaml_exponent_without_dot_is_a_float(tmp_path):
    cfg = load_config(write(tmp_path, MINIMAL + "optim: {lr: 2.5e-4, eps: 1e-2}\n"))
    assert cfg.optim.lr == pytest.approx(2.5e-4) and cfg.optim.eps == pytest.approx(0.01)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("agent.gama=0.9", "unknown config key 'agent.gama'; did you mean agent.gamma?"),
        ("trian.steps=3", "unknown config key 'trian'; did you mean train?"),
        ("train.steps=abc", "train.steps: expected int, got 'abc'"),
        ("train.steps=1.5", "train.steps: expected int, got 1.5"),
        ("agent.dueling=3", "agent.dueling: expected bool, got 3"),
        ("optim.lr=true", "optim.lr: expected float, got True"),
        ("agent.loss=hubr", "agent.loss: expected one of 'huber', 'mse', got 'hubr'; "
                            "did you mean 'huber'?"),
        ("agent.algo=a2c", "agent.algo: unknown algorithm 'a2c'; use one of dqn, double_dqn"),
        ("agent.mlp_hidden=[8, x]", "agent.mlp_hidden[1]: expected int, got 'x'"),
        ("agent.n_step=0", "agent.n_step must be >= 1, got 0"),
        ("gamma", "bad override 'gamma'; write --set section.key=value"),
        ("optim.betas=[0.9]", "optim.betas: expected tuple[float, float], got [0.9]"),
    ],
)
def test_bad_values_raise_one_line_naming_key(tmp_path, override, message):
    if message.startswith("agent.algo") and "paac" in ALGO_CONFIGS:
        message = message.replace("dqn, double_dqn", ", ".join(ALGO_CONFIGS))
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, MINIMAL), [override])
    text = str(info.value)
    assert "\n" not in text
    assert text.startswith(message)


def test_unknown_key_in_file_and_missing_sections(tmp_path):
    with pytest.raises(ConfigError, match=r"unknown config key 'env.num_env'; did you mean "
                                          r"env.num_envs\?"):
        load_config(write(tmp_path, "env: {id: X, num_env: 2}\nagent: {algo: dqn}\n"))
    with pytest.raises(ConfigError, match="missing required section 'agent'"):
        load_config(write(tmp_path, "env: {id: X}\n"))
    with pytest.raises(ConfigError, match="missing required key env.id"):
        load_config(write(tmp_path, "env: {}\nagent: {algo: dqn}\n"))
    with pytest.raises(ConfigError, match="missing required key agent.algo"):
        load_config(write(tmp_path, "env: {id: X}\nagent: {gamma: 0.9}\n"))


def test_missing_and_malformed_files(tmp_path):
    with pytest.raises(ConfigError, match="config file '.*nope.yaml' not found"):
        load_config(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match=r"is not valid YAML \(line \d+\); fix the syntax"):
        load_config(write(tmp_path, "env: {id: X}\nagent: [algo: dqn\n"))


def test_dump_then_load_round_trips(tmp_path):
    cfg = load_config(write(tmp_path, MINIMAL), ["optim.betas=[0.5, 0.9]", "agent.n_step=3"])
    out = tmp_path / "run" / "config.yaml"
    dump_config(cfg, out)
    assert load_config(out) == cfg
    assert "n_step: 3" in out.read_text()


def test_every_field_has_a_docstring():
    """A docstring per field: each annotated field in the source is followed by a string."""
    import ast
    import inspect

    for cls in [*SECTIONS.values(), *set(ALGO_CONFIGS.values()), Config]:
        tree = ast.parse(inspect.getsource(cls))
        body = tree.body[0].body
        for i, node in enumerate(body):
            if isinstance(node, ast.AnnAssign):
                nxt = body[i + 1] if i + 1 < len(body) else None
                assert isinstance(nxt, ast.Expr) and isinstance(nxt.value, ast.Constant), (
                    f"{cls.__name__}.{node.target.id} has no docstring"
                )


def test_config_from_dict_rejects_non_mapping():
    with pytest.raises(ConfigError, match="must be a mapping"):
        config_from_dict([1, 2])


def test_parse_override_splits_key_and_value():
    assert parse_override("env.id=ALE/Pong-v5") == (["env", "id"], "ALE/Pong-v5")
    assert parse_override("agent.n_step = 3") == (["agent", "n_step"], 3)


@pytest.mark.parametrize("path", sorted(CONFIGS.glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_configs_load(path):
    cfg = load_config(path)
    hints = typing.get_type_hints(type(cfg.agent))
    assert "algo" in hints
    assert dataclasses.is_dataclass(cfg.agent)


def test_change_budget_pins_the_horizons_that_follow_train_steps(tmp_path):
    path = write(tmp_path, MINIMAL)
    cfg = load_config(path, ["train.steps=1000", "optim.lr_schedule=linear",
                             "agent.prioritized=true"])
    assert change_budget(cfg, 5000) == ["optim.lr_decay_steps", "agent.per_beta_steps"]
    assert (cfg.train.steps, cfg.optim.lr_decay_steps, cfg.agent.per_beta_steps) == (
        5000, 1000, 1000)
    # explicit horizons, a constant LR and uniform replay follow nothing: nothing to pin
    cfg = load_config(path, ["train.steps=1000", "optim.lr_schedule=cosine",
                             "optim.lr_decay_steps=300"])
    assert change_budget(cfg, 5000) == []
    assert (cfg.optim.lr_decay_steps, cfg.agent.per_beta_steps) == (300, None)


def test_prioritized_beta_anneals_over_its_own_horizon(tmp_path):
    from agents.dqn import DQNLearner
    from rlkit.logger import Logger

    cfg = load_config(write(tmp_path, MINIMAL), [
        "train.steps=1000", "agent.prioritized=true", "agent.per_beta_steps=400",
        "agent.buffer_size=100", "agent.mlp_hidden=[4]"])
    learner = DQNLearner(cfg, torch.device("cpu"), Logger(None))
    try:
        assert learner.beta(200) == pytest.approx(0.7) and learner.beta(400) == 1.0
    finally:
        learner.close()


def test_resolved_config_of_a_non_atari_env_lists_no_atari_keys(tmp_path):
    import yaml

    out = tmp_path / "config.yaml"
    cartpole = load_config(write(tmp_path, MINIMAL))
    dump_config(cartpole, out)
    assert set(yaml.safe_load(out.read_text())["env"]) == {"id", "num_envs", "backend"}
    assert load_config(out) == cartpole
    pong = load_config(write(tmp_path, "env: {id: ALE/Pong-v5}\nagent: {algo: dqn}\n"))
    dump_config(pong, out)
    assert {"frame_skip", "noop_max", "max_episode_frames"} <= set(
        yaml.safe_load(out.read_text())["env"])


def test_unknown_section_lists_each_section_once(tmp_path):
    for load in (lambda: load_config(write(tmp_path, MINIMAL), ["nosection.lr=0.1"]),
                 lambda: load_config(write(tmp_path, MINIMAL + "nosection: {}\n"))):
        with pytest.raises(ConfigError) as info:
            load()
        assert str(info.value).endswith("valid keys: env, agent, optim, train, checkpoint")


def test_optimizer_fields_are_the_training_cores_and_checked_at_load(tmp_path):
    from rlkit.optim_config import OptimizerConfig

    cfg = load_config(write(tmp_path, MINIMAL))
    assert isinstance(cfg.optim, OptimizerConfig) and cfg.optim.lr == OptimizerConfig().lr
    with pytest.raises(ConfigError, match=r"^optim.momentum must be in \[0, 1\), got 1.5$"):
        load_config(write(tmp_path, MINIMAL), ["optim.momentum=1.5"])

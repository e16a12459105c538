"""Training configuration: YAML -> typed, validated dataclasses (and back).

A config file has five sections, each a dataclass below: ``env`` (EnvConfig), ``agent`` (the
algorithm's dataclass, picked by ``agent.algo`` in ``agents.algorithms``), ``optim``
(OptimConfig), ``train`` (TrainConfig) and ``checkpoint`` (CheckpointConfig). Every field has a
docstring; every key is type-checked against the field's annotation, so a typo or a wrong type
fails at load time with one line naming the key and the fix, never minutes into a run.

Units: on Atari one *agent step* is 4 *frames*. Step counts are agent steps summed over all envs
(the unit of ``rlkit train --steps``) unless a docstring says otherwise.
"""

from __future__ import annotations

import dataclasses
import difflib
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from agents.algorithms import ALGORITHMS
from envs import ATARI_OPTION_NAMES, AtariOptions, is_atari
from rlkit.atomic import write_text
from rlkit.optim_config import OptimizerConfig

ALGO_CONFIGS: dict[str, type] = {name: algo.config for name, algo in ALGORITHMS.items()}
"""``agent.algo`` -> the dataclass of the ``agent:`` section (read off ``agents.algorithms``)."""


class ConfigError(ValueError):
    """A config file or ``--set`` override is invalid; the message is one line naming the fix."""


MAX_SEED = 2**32 - 1
"""Largest seed: numpy's global generator (``np.random.seed``) takes seeds in 0 .. 2**32 - 1."""


def seed_problem(seed: int, key: str) -> str | None:
    """Why ``seed`` (named ``key`` for the user) cannot seed a run, or None if it can."""
    if not 0 <= seed <= MAX_SEED:
        return (f"{key} must be in 0..{MAX_SEED} (numpy's seed range), got {seed}; "
                "pass a seed in that range")
    return None


@dataclass
class EnvSelection:
    """Which environment ``EnvConfig`` trains on, and how many copies."""

    id: str
    """Any id ``envs.make_env`` accepts: ``ALE/Pong-v5``, ``PongNoFrameskip-v4``, ``Pong``,
    ``MinAtar/Breakout-v0`` (the ``minatar`` extra), ``CartPole-v1``, ..."""
    num_envs: int = 1
    """Parallel environments feeding the learner."""
    backend: Literal["auto", "sync", "async", "ale"] = "auto"
    """Vector-env backend (``envs.make_vector_env``)."""


@dataclass
class EnvConfig(AtariOptions, EnvSelection):
    """The ``env`` section: ``EnvSelection``'s keys first, then the Atari preprocessing options,
    inherited from ``envs.AtariOptions`` (their one definition: defaults, meanings, ranges).

    The Atari options are ignored for non-Atari ids (e.g. ``CartPole-v1``).
    """

    def validate(self) -> list[str]:
        problems = [f"env.{p}" for p in self.problems()]
        if self.num_envs < 1:
            problems.append(f"env.num_envs must be >= 1, got {self.num_envs}")
        return problems


@dataclass
class OptimConfig(OptimizerConfig):
    """The ``optim`` section: the optimizer (``rlkit.optim_config.OptimizerConfig``'s fields,
    defaults and ranges, inherited), gradient clipping, learning-rate schedule and NaN guard."""

    max_grad_norm: float | None = None
    """Clip the global gradient norm to this value; null = no clipping."""
    lr_schedule: Literal["constant", "linear", "cosine", "plateau"] = "constant"
    """How the learning rate moves from ``lr`` to ``lr_final`` over ``lr_decay_steps``; or
    ``plateau``: reduce on plateau, driven by the periodic evaluation's mean score (needs
    ``train.eval_every`` > 0): after more than ``lr_plateau_patience`` evaluations in a row that
    do not beat the best score, multiply the rate by ``lr_plateau_factor``, never below
    ``lr_final``. Its state (rate, best score, count) is checkpointed, so resume is exact."""
    lr_final: float = 0.0
    """Learning rate at the end of the schedule (ignored by ``constant``); ``plateau``'s floor."""
    lr_plateau_factor: float = 0.5
    """``plateau``: factor applied to the rate at each reduction, in (0, 1)."""
    lr_plateau_patience: int = 3
    """``plateau``: non-improving evaluations tolerated; the next one reduces the rate."""
    lr_decay_steps: int | None = None
    """Agent steps (summed over envs) of the LR schedule; null = the whole run (train.steps)."""
    nan_skips: int = 0
    """NaN guard: 0 = stop training at the first non-finite loss, gradient or parameter; k > 0 =
    skip an update whose loss or gradient is non-finite (no optimizer step) and stop only after
    more than k in a row. Skipping reads one flag back per update (free on the CPU, a device
    sync per update on a GPU). Every event is listed in the run's summary."""

    def lr_schedule_over(self, updates: int) -> Any:
        """The LR schedule as an ``rlkit.schedules.Schedule`` indexed by optimizer update.

        ``updates`` is how many optimizer updates the learner makes over ``lr_decay_steps`` agent
        steps (each learner knows its own steps-per-update ratio).
        """
        from rlkit.schedules import Constant, Cosine, Linear, ReduceOnPlateau

        if self.lr_schedule == "plateau":
            return ReduceOnPlateau(self.lr, self.lr_plateau_factor, self.lr_plateau_patience,
                                   min_value=0.0, mode="max", floor=self.lr_final)
        updates = max(1, int(updates))
        if self.lr_schedule == "linear":
            return Linear(self.lr, self.lr_final, updates)
        if self.lr_schedule == "cosine":
            return Cosine(self.lr, self.lr_final, updates)
        return Constant(self.lr)

    def validate(self) -> list[str]:
        """The schedule's problems (the optimizer's raise at construction, as ``ConfigError``)."""
        problems = []
        if self.max_grad_norm is not None and self.max_grad_norm <= 0:
            problems.append(f"optim.max_grad_norm must be > 0 or null, got {self.max_grad_norm}")
        if self.lr_decay_steps is not None and self.lr_decay_steps < 1:
            problems.append(f"optim.lr_decay_steps must be >= 1 or null, got {self.lr_decay_steps}")
        if not 0.0 < self.lr_plateau_factor < 1.0:
            problems.append(f"optim.lr_plateau_factor must be in (0, 1), e.g. 0.5, got "
                            f"{self.lr_plateau_factor}")
        if self.lr_plateau_patience < 0:
            problems.append(f"optim.lr_plateau_patience must be >= 0, got "
                            f"{self.lr_plateau_patience}")
        if self.lr_schedule == "plateau" and not 0.0 <= self.lr_final <= self.lr:
            problems.append(f"optim.lr_final is plateau's floor and must be in [0, optim.lr], "
                            f"got {self.lr_final}")
        if self.nan_skips < 0:
            problems.append(f"optim.nan_skips must be >= 0, got {self.nan_skips}")
        return problems


@dataclass
class TrainConfig:
    """Budget, reproducibility, logging and periodic evaluation."""

    steps: int = 10_000_000
    """Training budget in agent steps summed over all envs (``--steps``); Atari: x4 frames."""
    seed: int = 0
    """Seeds envs, replay sampling, network init and exploration (``--seed``)."""
    device: str = "auto"
    """``auto`` (CUDA when available), ``cpu``, ``cuda`` or ``cuda:N`` (``--device``)."""
    threads: int | None = None
    """``torch.set_num_threads`` for CPU training; null = torch's default."""
    log_every: int = 10_000
    """Agent steps between TensorBoard scalar writes (the only host syncs of the hot loop)."""
    eval_every: int = 0
    """Agent steps between periodic evaluations (the screen for ``best.pt`` and early stopping);
    0 = no periodic evaluation."""
    eval_episodes: int = 10
    """Full games per periodic evaluation. They always start from the same states, so that
    successive evaluations compare policies rather than start states."""
    eval_epsilon: float = 0.05
    """Exploration epsilon of evaluations (value-based agents; DQN protocol: 0.05)."""
    eval_greedy: bool = False
    """Evaluate the argmax policy (``rlkit evaluate --greedy``) instead of the protocol's
    epsilon-greedy or sampled one, for configs whose score is measured greedily."""
    target_score: float | None = None
    """Stop early once the policy's mean score reaches this; null = train the full budget. Only
    evaluations check it (``eval_every`` > 0). With confirmation (``confirm_episodes`` > 0) the
    target must hold on the confirmation games, not on the periodic evaluation that triggered
    them."""
    confirm_episodes: int | None = None
    """Games of a confirmation evaluation; null = 100 with a ``target_score``, else 0.

    A few games are a noisy score, and the best of many noisy scores is biased upwards: a policy
    that played 500 in 10 CartPole games averaged 417 over the next 100. So a periodic evaluation
    only screens: one that reaches ``target_score`` or beats the best confirmed mean so far is
    confirmed on this many games from fresh start states (seeded from ``seed`` and the
    confirmation's index; no training env or periodic evaluation plays them). ``best.pt`` keeps
    the policy with the best confirmation mean, and training stops once a confirmation's mean,
    less three standard errors, reaches ``target_score``: Gym's CartPole-v1 criterion (a mean of
    475 over 100 episodes) with a margin, so that the stopped policy also scores 475 on other
    games, not just half the time. 0 = no confirmation: periodic means alone choose
    ``best.pt`` and stop training, as cheap as it is optimistic."""
    eval_ema: float | None = None
    """Evaluate an exponential moving average of the weights (Polyak averaging) with this decay,
    e.g. 0.999; null = evaluate the trained weights. The average is updated after every
    optimizer step (with warm-up: decay ``min(eval_ema, (1 + n) / (10 + n))`` after n updates)
    and plays every periodic evaluation and confirmation; checkpoints hold it next to the
    trained weights, and ``rlkit evaluate`` / ``rlkit export`` use it. Training (acting,
    targets, updates) always uses the trained weights."""
    progress: bool = True
    """Show a tqdm progress bar (steps, SPS, recent game score, ETA)."""
    expectation: str | None = None
    """What the score curve should do and when, printed as training starts, so that a flat
    start that is normal (Pong's first millions of frames) is not mistaken for a bug."""

    @property
    def confirmation_games(self) -> int:
        """``confirm_episodes`` resolved: its null default is 100 with a target score, else 0."""
        if self.confirm_episodes is not None:
            return self.confirm_episodes
        return 100 if self.target_score is not None else 0

    def validate(self) -> list[str]:
        problems = []
        if self.steps < 1:
            problems.append(f"train.steps must be >= 1, got {self.steps}")
        for name in ("log_every", "eval_episodes"):
            if getattr(self, name) < 1:
                problems.append(f"train.{name} must be >= 1, got {getattr(self, name)}")
        if self.eval_every < 0:
            problems.append(f"train.eval_every must be >= 0, got {self.eval_every}")
        if self.confirm_episodes is not None and self.confirm_episodes < 0:
            problems.append(f"train.confirm_episodes must be >= 0 or null, got "
                            f"{self.confirm_episodes}")
        if self.threads is not None and self.threads < 1:
            problems.append(f"train.threads must be >= 1 or null, got {self.threads}")
        if not 0.0 <= self.eval_epsilon <= 1.0:
            problems.append(f"train.eval_epsilon must be in [0, 1], got {self.eval_epsilon}")
        if self.eval_ema is not None and not 0.0 < self.eval_ema < 1.0:
            problems.append(f"train.eval_ema must be in (0, 1), e.g. 0.999, or null, got "
                            f"{self.eval_ema}")
        seed = seed_problem(self.seed, "train.seed")
        if seed is not None:
            problems.append(seed)
        return problems


@dataclass
class CheckpointConfig:
    """When ``checkpoints/last.pt`` is written and what it holds."""

    every: int = 1_000_000
    """Agent steps between periodic checkpoints (also written at the end, on Ctrl-C/SIGTERM)."""
    save_replay: bool | None = None
    """Store the replay buffer in checkpoints (exact resume); null = only when under 2 GB."""

    def validate(self) -> list[str]:
        if self.every < 0:
            return [f"checkpoint.every must be >= 0 (0 = only at the end), got {self.every}"]
        return []


@dataclass
class Config:
    """A whole training run."""

    env: EnvConfig
    """Environment section."""
    agent: Any
    """Algorithm section: an instance of ``ALGO_CONFIGS[agent.algo]``."""
    optim: OptimConfig = field(default_factory=OptimConfig)
    """Optimizer section."""
    train: TrainConfig = field(default_factory=TrainConfig)
    """Budget / logging / evaluation section."""
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    """Checkpointing section."""

    @property
    def algo(self) -> str:
        """The algorithm name (``agent.algo``)."""
        return self.agent.algo


SECTIONS: dict[str, type] = {
    "env": EnvConfig,
    "optim": OptimConfig,
    "train": TrainConfig,
    "checkpoint": CheckpointConfig,
}
"""The sections with a fixed dataclass (``agent``'s depends on ``agent.algo``)."""

SECTION_NAMES: tuple[str, ...] = ("env", "agent", *(s for s in SECTIONS if s != "env"))
"""Every top-level key, once each, in the order of a config file."""


# --------------------------------------------------------------------------- YAML loading


class _Loader(yaml.SafeLoader):
    """SafeLoader that also reads ``1e-3`` as a float (YAML 1.1 insists on ``1.0e-3``)."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(
        r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
        |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
        |\.[0-9_]+(?:[eE][-+][0-9]+)?
        |[-+]?\.(?:inf|Inf|INF)
        |\.(?:nan|NaN|NAN))$""",
        re.X,
    ),
    list("-+0123456789."),
)


def _parse_scalar(text: str) -> Any:
    """A ``--set`` value as a YAML scalar: ``3`` int, ``1e-3`` float, ``null``, ``[1, 2]``."""
    try:
        return yaml.load(text, Loader=_Loader)  # noqa: S506 - _Loader is a SafeLoader
    except yaml.YAMLError:
        return text


def _type_name(hint: Any) -> str:
    origin = typing.get_origin(hint)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(hint))
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(hint))
    if origin in (list, tuple):
        return str(hint).replace("typing.", "")
    if hint is type(None):
        return "null"
    return getattr(hint, "__name__", str(hint))


def _coerce(value: Any, hint: Any, key: str) -> Any:
    """Check ``value`` against the annotation ``hint``; return it converted (int -> float etc.)."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)

    def bad() -> ConfigError:
        return ConfigError(f"{key}: expected {_type_name(hint)}, got {value!r}")

    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        for arg in (a for a in args if a is not type(None)):
            try:
                return _coerce(value, arg, key)
            except ConfigError:
                continue
        raise bad()
    if origin is Literal:
        if value in args and not isinstance(value, bool):
            return value
        close = difflib.get_close_matches(str(value), [str(a) for a in args], n=1)
        hint_text = f"; did you mean {close[0]!r}?" if close else ""
        raise ConfigError(f"{key}: expected {_type_name(hint)}, got {value!r}{hint_text}")
    if origin is list:
        if not isinstance(value, list | tuple):
            raise bad()
        return [_coerce(v, args[0], f"{key}[{i}]") for i, v in enumerate(value)]
    if origin is tuple:
        if not isinstance(value, list | tuple) or len(value) != len(args):
            raise bad()
        pairs = enumerate(zip(value, args, strict=True))
        return tuple(_coerce(v, a, f"{key}[{i}]") for i, (v, a) in pairs)
    if hint is bool:
        if isinstance(value, bool):
            return value
        raise bad()
    if hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
            return int(value)  # ``1e6`` in YAML is a float; a step count of 1e6 is meant as int
        raise bad()
    if hint is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        raise bad()
    if hint is str:
        if isinstance(value, str):
            return value
        raise bad()
    raise ConfigError(f"{key}: unsupported field type {hint!r}")  # a bug in a dataclass


def _build(cls: type, raw: Any, prefix: str) -> Any:
    """Instantiate dataclass ``cls`` from mapping ``raw``, checking every key and type."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{prefix}: expected a mapping of keys, got {raw!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for key in raw:
        if key not in fields:
            raise unknown_key_error(f"{prefix}.{key}", [f"{prefix}.{name}" for name in fields])
    kwargs = {}
    for name, f in fields.items():
        if name in raw:
            kwargs[name] = _coerce(raw[name], hints[name], f"{prefix}.{name}")
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise ConfigError(f"missing required key {prefix}.{name}; add it to the config")
    try:
        return cls(**kwargs)
    except ValueError as e:  # a range check of a section shared with the library (OptimConfig)
        raise ConfigError(str(e)) from None


def unknown_key_error(key: str, valid: list[str]) -> ConfigError:
    """``ConfigError`` for an unknown ``key``, suggesting the closest valid keys."""
    # Compare the last components: a shared "agent." prefix would make every key look close.
    leaves = {v.rsplit(".", 1)[-1]: v for v in valid}
    close = difflib.get_close_matches(key.rsplit(".", 1)[-1], list(leaves), n=3, cutoff=0.6)
    close = [leaves[c] for c in close]
    suggestion = f"did you mean {', '.join(close)}?" if close else f"valid keys: {', '.join(valid)}"
    return ConfigError(f"unknown config key {key!r}; {suggestion}")


def config_from_dict(raw: Any) -> Config:
    """Build and validate a ``Config`` from a parsed YAML mapping."""
    if not isinstance(raw, dict):
        raise ConfigError(f"a config must be a mapping with sections env, agent, ...; got {raw!r}")
    for key in raw:
        if key not in SECTION_NAMES:
            raise unknown_key_error(str(key), list(SECTION_NAMES))
    for required in ("env", "agent"):
        if required not in raw:
            raise ConfigError(f"missing required section {required!r}; add it to the config")
    agent_raw = raw["agent"]
    if not isinstance(agent_raw, dict) or "algo" not in agent_raw:
        raise ConfigError(f"missing required key agent.algo; use one of {', '.join(ALGO_CONFIGS)}")
    algo = agent_raw["algo"]
    if algo not in ALGO_CONFIGS:
        raise ConfigError(f"agent.algo: unknown algorithm {algo!r}; use one of "
                          f"{', '.join(ALGO_CONFIGS)}")
    sections = {name: _build(cls, raw.get(name), name) for name, cls in SECTIONS.items()}
    cfg = Config(agent=_build(ALGO_CONFIGS[algo], agent_raw, "agent"), **sections)
    problems = [p for part in (cfg.env, cfg.agent, cfg.optim, cfg.train, cfg.checkpoint)
                for p in part.validate()]
    if cfg.optim.lr_schedule == "plateau" and cfg.train.eval_every < 1:
        problems.append("optim.lr_schedule=plateau is driven by periodic evaluations; set "
                        "train.eval_every > 0")
    if problems:
        raise ConfigError(problems[0])
    return cfg


def parse_override(text: str) -> tuple[list[str], Any]:
    """``"agent.gamma=0.98"`` -> ``(["agent", "gamma"], 0.98)``; the value is a YAML scalar."""
    key, sep, value = text.partition("=")
    parts = key.strip().split(".")
    if not sep or len(parts) != 2 or not all(parts):
        raise ConfigError(f"bad override {text!r}; write --set section.key=value, "
                          "e.g. --set agent.gamma=0.98")
    return parts, _parse_scalar(value.strip())


def apply_overrides(raw: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``--set section.key=value`` overrides to a raw mapping (validation comes after)."""
    for text in overrides:
        (section, key), value = parse_override(text)
        if section not in SECTION_NAMES:
            raise unknown_key_error(section, list(SECTION_NAMES))
        current = raw.get(section)
        raw[section] = dict(current) if isinstance(current, dict) else {}
        raw[section][key] = value
    return raw


def read_yaml(path: str | Path) -> Any:
    """Parse a YAML file, turning I/O and syntax problems into one-line ``ConfigError``s."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {str(path)!r} not found; pass the path of a YAML config "
                          "such as configs/cartpole_dqn.yaml")
    try:
        return yaml.load(path.read_text(), Loader=_Loader)  # noqa: S506 - a SafeLoader
    except yaml.YAMLError as exc:
        where = getattr(exc, "problem_mark", None)
        line = f" (line {where.line + 1})" if where is not None else ""
        raise ConfigError(
            f"config file {str(path)!r} is not valid YAML{line}; fix the syntax"
        ) from None


def load_config(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> Config:
    """Read a YAML config, apply ``--set`` overrides, and return the validated ``Config``."""
    raw = read_yaml(path)
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"config file {str(path)!r} must be a mapping of sections env, agent")
    return config_from_dict(apply_overrides(raw, list(overrides)))


def change_budget(cfg: Config, steps: int) -> list[str]:
    """Set ``cfg.train.steps`` to ``steps`` without changing anything else about the run.

    A schedule whose horizon key is null follows ``train.steps`` (the learners' LR annealing,
    PPO's clip-range annealing, prioritised replay's beta annealing); a new budget on resume
    would silently stretch it. Each such horizon in use is pinned to the old budget first;
    returns the keys pinned.
    """
    pinned = []
    # PPO's clip-range annealing follows the LR's horizon (agents.algo_configs.PPOConfig).
    clip_annealed = getattr(cfg.agent, "clip_range_final", None) is not None
    lr_annealed = cfg.optim.lr_schedule in ("linear", "cosine")
    if (lr_annealed or clip_annealed) and cfg.optim.lr_decay_steps is None:
        cfg.optim.lr_decay_steps = cfg.train.steps
        pinned.append("optim.lr_decay_steps")
    if getattr(cfg.agent, "prioritized", False) and cfg.agent.per_beta_steps is None:
        cfg.agent.per_beta_steps = cfg.train.steps
        pinned.append("agent.per_beta_steps")
    cfg.train.steps = steps
    problems = cfg.train.validate()
    if problems:
        raise ConfigError(problems[0])
    return pinned


def config_to_dict(cfg: Config) -> dict[str, Any]:
    """Plain nested dict (lists, no tuples) that ``config_from_dict`` turns back into ``cfg``."""

    def plain(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [plain(v) for v in value]
        return value

    return plain(dataclasses.asdict(cfg))


def dump_config(cfg: Config, path: str | Path) -> None:
    """Write the resolved config (every field, defaults included) atomically as YAML.

    A non-Atari env leaves out the Atari-only ``env`` keys: they do not apply to it, and a
    ``frame_skip: 4`` in a CartPole run's config would suggest they do (loading the file back
    fills in the same defaults).
    """
    raw = config_to_dict(cfg)
    if not is_atari(cfg.env.id):
        raw["env"] = {k: v for k, v in raw["env"].items() if k not in ATARI_OPTION_NAMES}
    write_text(path, yaml.safe_dump(raw, sort_keys=False, default_flow_style=None))

"""Per-algorithm config dataclasses (the ``agent:`` section), kept free of torch imports.

They live apart from the algorithm modules so that the algorithm table (``agents.algorithms``)
and ``agents.config`` can map ``agent.algo`` to a dataclass without importing torch or the
learners (and without an import cycle: the learners import ``agents.config``, never the other
way round). ``agents.dqn`` re-exports ``DQNConfig``.

Units: on Atari one *agent step* is 4 *frames* (frame skip 4). Every step count below is in agent
steps summed over all envs (the unit of ``rlkit train --steps``) unless its docstring says
"updates" (optimizer steps).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from rlkit.replay import ProportionalSampler, Sampler, UniformSampler

EncoderName = Literal["auto", "nature", "nips", "minatar", "minatar_ac", "mlp"]
"""The observation encoders of ``agents.networks`` (``ENCODERS``), by the name a config uses."""


@dataclass
class DQNConfig:
    """DQN (Mnih et al. 2015) and Double DQN (van Hasselt et al. 2015); defaults are Nature DQN."""

    algo: Literal["dqn", "double_dqn"] = "dqn"
    """``dqn`` bootstraps from max_a Q_target; ``double_dqn`` from Q_target(argmax_a Q_online)."""
    encoder: EncoderName = "auto"
    """Observation encoder (``agents.networks``): ``auto`` = Nature CNN for Atari images, MinAtar's
    net (conv 16 3x3/1, fc 128) for images too small for it (MinAtar's 10x10), MLP for vectors."""
    mlp_hidden: list[int] = field(default_factory=lambda: [64, 64])
    """Hidden layer widths of the MLP encoder (vector observations only)."""
    dueling: bool = False
    """Dueling head (Wang et al. 2016): Q = V + A - mean(A)."""
    gamma: float = 0.99
    """Discount factor."""
    n_step: int = 1
    """Multi-step returns: bootstrap after n rewards (computed by the replay buffer)."""
    buffer_size: int = 1_000_000
    """Replay capacity in transitions, over all envs together."""
    batch_size: int = 32
    """Minibatch size of one gradient update."""
    learning_starts: int = 50_000
    """Agent steps (summed over envs) collected with the initial policy before the first update."""
    train_freq: int = 4
    """Agent steps (summed over envs) between two rounds of updates (Nature: 4)."""
    gradient_steps: int = 1
    """Optimizer updates per round."""
    target_update_steps: int = 10_000
    """Agent steps (summed over envs) between target-network syncs. DeepMind's DQN code and
    Dopamine count this period in agent steps: the Nature paper's "10,000" is 10k agent steps
    (2,500 updates at ``train_freq`` 4)."""
    tau: float = 1.0
    """Target sync: 1.0 = hard copy; < 1 = Polyak averaging theta' <- tau*theta + (1-tau)*theta'."""
    loss: Literal["huber", "mse"] = "huber"
    """TD loss: Huber (= the Nature paper's TD-error clipping to [-1, 1]) or squared error."""
    huber_delta: float = 1.0
    """Huber threshold (the |TD error| beyond which the loss is linear)."""
    epsilon_start: float = 1.0
    """Exploration epsilon at step 0."""
    epsilon_final: float = 0.1
    """Exploration epsilon after ``epsilon_decay_steps``."""
    epsilon_decay_steps: int = 1_000_000
    """Agent steps of linear epsilon annealing, counted from ``learning_starts`` (as in DeepMind's
    DQN code and Dopamine: the Nature paper's "1M frames" is 1M agent steps after replay start)."""
    prioritized: bool = False
    """Proportional prioritised replay (Schaul et al. 2016)."""
    per_alpha: float = 0.6
    """Priority exponent alpha of prioritised replay."""
    per_beta_start: float = 0.4
    """Importance-sampling exponent at step 0, annealed linearly to ``per_beta_final``."""
    per_beta_final: float = 1.0
    """Importance-sampling exponent after ``per_beta_steps``."""
    per_beta_steps: int | None = None
    """Agent steps of the linear beta annealing; null = the whole run (``train.steps``)."""
    per_eps: float = 1e-6
    """Added to |TD error| so that no transition has zero priority."""
    redo_every: int = 0
    """Recycle dormant units every this many updates (ReDo, Sokar et al. 2023, "The Dormant
    Neuron Phenomenon in Deep Reinforcement Learning"; ``rlkit.dormant``); 0 = never."""
    redo_threshold: float = 0.0
    """A unit is dormant when its mean |activation| over the scoring batch is at most this
    fraction of its layer's average; 0 recycles only the units silent on the whole batch, the
    dead units the run summary counts."""
    redo_batch_size: int = 256
    """Replay transitions the units are scored on (256, as Dopamine's ReDo code scores them)."""

    def replay_sampler(self, seed: int | None) -> Sampler:
        """How replay batches are drawn: proportional prioritisation with ``prioritized``, else
        uniformly; ``per_beta_start`` is the default exponent (the learner anneals it)."""
        if self.prioritized:
            return ProportionalSampler(alpha=self.per_alpha, beta=self.per_beta_start,
                                       eps=self.per_eps, seed=seed)
        return UniformSampler(seed)

    @property
    def double(self) -> bool:
        """Whether the target uses Double DQN action selection (only for ``algo: double_dqn``)."""
        return self.algo == "double_dqn"

    def validate(self) -> list[str]:
        """Cross-field problems, as ``(key, message)`` lines for ``ConfigError``."""
        problems = []
        positive = ("n_step", "buffer_size", "batch_size", "train_freq", "gradient_steps",
                    "target_update_steps")
        for name in positive:
            if getattr(self, name) < 1:
                problems.append(f"agent.{name} must be >= 1, got {getattr(self, name)}")
        if not 0.0 < self.tau <= 1.0:
            problems.append(f"agent.tau must be in (0, 1], got {self.tau}")
        if not 0.0 <= self.gamma <= 1.0:
            problems.append(f"agent.gamma must be in [0, 1], got {self.gamma}")
        for name in ("epsilon_start", "epsilon_final"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                problems.append(f"agent.{name} must be in [0, 1], got {getattr(self, name)}")
        if self.per_beta_steps is not None and self.per_beta_steps < 1:
            problems.append(f"agent.per_beta_steps must be >= 1 or null, got {self.per_beta_steps}")
        if self.learning_starts < 0 or self.epsilon_decay_steps < 0:
            problems.append("agent.learning_starts and agent.epsilon_decay_steps must be >= 0")
        if self.redo_every < 0 or self.redo_batch_size < 1 or not 0.0 <= self.redo_threshold < 1.0:
            problems.append("agent.redo_every must be >= 0, agent.redo_batch_size >= 1 and "
                            f"agent.redo_threshold in [0, 1), got {self.redo_every}, "
                            f"{self.redo_batch_size}, {self.redo_threshold}")
        if any(width < 1 for width in self.mlp_hidden):
            problems.append(f"agent.mlp_hidden widths must be >= 1, got {self.mlp_hidden}")
        return problems


@dataclass
class PAACConfig:
    """PAAC (Clemente et al. 2017); defaults are the original implementation's.

    The optimizer, gradient clip and LR annealing live in the ``optim`` section; the original's
    are ``name: rmsprop_tf, lr: 0.0224 (0.0007 x 32 envs), alpha: 0.99, eps: 0.1,
    max_grad_norm: 3.0, lr_schedule: linear, lr_final: 0``. The paper's own variant clips the
    gradient norm at 40 and uses ``entropy_coef: 0.01``:
    ``--set optim.max_grad_norm=40 --set agent.entropy_coef=0.01``.
    """

    algo: Literal["paac"] = "paac"
    """Parallel advantage actor-critic (synchronous, on-policy, no replay)."""
    encoder: EncoderName = "auto"
    """Observation encoder (``agents.networks``): ``auto`` = ``nips`` (the original's default)
    for Atari images, ``minatar`` (conv 16 3x3/1, fc 128) for images too small for it (MinAtar's
    10x10), ``mlp`` for vectors; or name one: ``nature``, ``nips``, ``minatar``, ``minatar_ac``
    (MinAtar's net with the paper's actor-critic activations, SiLU and dSiLU), ``mlp``."""
    mlp_hidden: list[int] = field(default_factory=lambda: [64, 64])
    """Hidden layer widths of the MLP encoder (vector observations only)."""
    t_max: int = 5
    """Rollout length: steps per env between two updates (n of the n-step returns)."""
    gamma: float = 0.99
    """Discount factor."""
    entropy_coef: float = 0.02
    """Entropy bonus beta (original code: 0.02; paper: 0.01)."""
    value_coef: float = 0.25
    """Weight of the squared value error (R - V)^2 in the loss (original: 0.25)."""
    clip_rewards: bool = True
    """Clip rewards to [-1, 1] in the learner, as the original did (identity after the Atari
    wrapper's sign clipping; turn off for envs whose reward scale matters)."""

    def validate(self) -> list[str]:
        """Cross-field problems, one line each, for ``ConfigError``."""
        return _range_problems(self, counts=("t_max",), fractions=("gamma",),
                               nonnegative=("entropy_coef", "value_coef"))


@dataclass
class PPOConfig:
    """PPO with the clipped surrogate objective (Schulman et al. 2017) and generalised advantage
    estimation (Schulman et al. 2016); defaults are CleanRL's ``ppo_atari.py`` (the paper's
    Atari settings, its Table 5, have 3 epochs, value coefficient 1 and the clip range annealed
    to 0 with the learning rate).

    The optimizer, gradient clip and LR annealing live in the ``optim`` section; CleanRL's are
    ``name: adam, lr: 2.5e-4, eps: 1e-5, max_grad_norm: 0.5, lr_schedule: linear, lr_final: 0``.
    """

    algo: Literal["ppo"] = "ppo"
    """Proximal policy optimisation (on-policy, several epochs over each rollout)."""
    encoder: EncoderName = "auto"
    """Observation encoder (``agents.networks``): ``auto`` = ``nature`` (the PPO paper's and
    CleanRL's Atari network) for Atari images, ``minatar`` (conv 16 3x3/1, fc 128) for images too
    small for it (MinAtar's 10x10), ``mlp`` for vectors; or name one (``minatar_ac``: MinAtar's
    net with the paper's actor-critic activations, SiLU and dSiLU)."""
    mlp_hidden: list[int] = field(default_factory=lambda: [64, 64])
    """Hidden layer widths of the MLP encoder (vector observations only)."""
    n_steps: int = 128
    """Rollout length: steps per env between two rounds of updates."""
    n_epochs: int = 4
    """Passes over each rollout, each in freshly shuffled minibatches."""
    num_minibatches: int = 4
    """Minibatches per epoch: the rollout's ``n_steps x num_envs`` transitions split evenly
    (autoreset steps, which are not transitions, left out)."""
    gamma: float = 0.99
    """Discount factor."""
    gae_lambda: float = 0.95
    """GAE's lambda: 0 = one-step TD advantages, 1 = Monte Carlo returns to the rollout's end."""
    clip_range: float = 0.1
    """epsilon of the clipped surrogate: the probability ratio counts only within 1 +- epsilon."""
    clip_range_final: float | None = None
    """Anneal ``clip_range`` linearly to this over the learning rate's horizon
    (``optim.lr_decay_steps``, or ``train.steps``), as OpenAI Baselines' Atari PPO and rl-zoo3's
    ``lin_0.1`` do (to 0); null = constant."""
    value_clip_range: float | None = None
    """Clip the value update like the policy's: ``V`` may move at most this far from the
    rollout's value estimate before the loss stops rewarding it (the elementwise max of the
    clipped and unclipped squared errors, OpenAI Baselines' PPO2); null = plain squared error.
    CleanRL's ``clip_vloss`` uses the policy's ``clip_range``."""
    entropy_coef: float = 0.01
    """Entropy bonus c2."""
    value_coef: float = 0.5
    """Weight c1 of the value loss ``0.5 * mean((V - R)^2)`` (the 0.5 is CleanRL's)."""
    normalize_advantages: bool = True
    """Standardise the advantages within each minibatch (mean 0, std 1)."""

    def validate(self) -> list[str]:
        """Cross-field problems, one line each, for ``ConfigError``."""
        problems = _range_problems(self, counts=("n_steps", "n_epochs", "num_minibatches"),
                                   fractions=("gamma", "gae_lambda"),
                                   nonnegative=("entropy_coef", "value_coef"))
        if self.clip_range <= 0:
            problems.append(f"agent.clip_range must be > 0, e.g. 0.1 or 0.2, got {self.clip_range}")
        final = self.clip_range_final
        if final is not None and not 0.0 <= final <= self.clip_range:
            problems.append(f"agent.clip_range_final must be in [0, agent.clip_range] or null, "
                            f"got {final}")
        if self.value_clip_range is not None and self.value_clip_range <= 0:
            problems.append(f"agent.value_clip_range must be > 0 or null, got "
                            f"{self.value_clip_range}")
        return problems


def _range_problems(config: PAACConfig | PPOConfig, *, counts: tuple[str, ...],
                    fractions: tuple[str, ...], nonnegative: tuple[str, ...]) -> list[str]:
    """One line per field of an actor-critic config out of its range: ``counts`` >= 1,
    ``fractions`` in [0, 1], ``nonnegative`` >= 0, and every ``mlp_hidden`` width >= 1."""
    problems = []
    for name in counts:
        if getattr(config, name) < 1:
            problems.append(f"agent.{name} must be >= 1, got {getattr(config, name)}")
    for name in fractions:
        if not 0.0 <= getattr(config, name) <= 1.0:
            problems.append(f"agent.{name} must be in [0, 1], got {getattr(config, name)}")
    for name in nonnegative:
        if getattr(config, name) < 0:
            problems.append(f"agent.{name} must be >= 0, got {getattr(config, name)}")
    if any(width < 1 for width in config.mlp_hidden):
        problems.append(f"agent.mlp_hidden widths must be >= 1, got {config.mlp_hidden}")
    return problems

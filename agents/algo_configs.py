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


@dataclass
class DQNConfig:
    """DQN (Mnih et al. 2015) and Double DQN (van Hasselt et al. 2015); defaults are Nature DQN."""

    algo: Literal["dqn", "double_dqn"] = "dqn"
    """``dqn`` bootstraps from max_a Q_target; ``double_dqn`` from Q_target(argmax_a Q_online)."""
    encoder: Literal["auto", "nature", "nips", "minatar", "mlp"] = "auto"
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
    encoder: Literal["auto", "nature", "nips", "minatar", "mlp"] = "auto"
    """Observation encoder (``agents.networks``): ``auto`` = ``nips`` (the original's default)
    for Atari images, ``minatar`` (conv 16 3x3/1, fc 128) for images too small for it (MinAtar's
    10x10), ``mlp`` for vectors; or name one: ``nature``, ``nips``, ``minatar``, ``mlp``."""
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
        problems = []
        if self.t_max < 1:
            problems.append(f"agent.t_max must be >= 1, got {self.t_max}")
        if not 0.0 <= self.gamma <= 1.0:
            problems.append(f"agent.gamma must be in [0, 1], got {self.gamma}")
        for name in ("entropy_coef", "value_coef"):
            if getattr(self, name) < 0:
                problems.append(f"agent.{name} must be >= 0, got {getattr(self, name)}")
        if any(width < 1 for width in self.mlp_hidden):
            problems.append(f"agent.mlp_hidden widths must be >= 1, got {self.mlp_hidden}")
        return problems

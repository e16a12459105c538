"""Per-algorithm config dataclasses (the ``agent:`` section), kept free of torch imports.

They live apart from the algorithm modules so that ``agents.config`` can map ``agent.algo`` to a
dataclass without importing torch or the learners (and without an import cycle: the learners
import ``agents.config``, never the other way round). ``agents.dqn`` re-exports ``DQNConfig``.

Units: on Atari one *agent step* is 4 *frames* (frame skip 4). Every step count below is in agent
steps summed over all envs (the unit of ``rlkit train --steps``) unless its docstring says
"updates" (optimizer steps).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal


@dataclass
class DQNConfig:
    """DQN (Mnih et al. 2015) and Double DQN (van Hasselt et al. 2015); defaults are Nature DQN."""

    algo: Literal["dqn", "double_dqn"] = "dqn"
    """``dqn`` bootstraps from max_a Q_target; ``double_dqn`` from Q_target(argmax_a Q_online)."""
    encoder: Literal["auto", "nature", "nips", "mlp"] = "auto"
    """Observation encoder: ``auto`` = Nature CNN for images, MLP for vectors."""
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
    target_update_interval: int = 10_000
    """Optimizer *updates* between target-network syncs (Nature: 10,000 updates = 40k steps)."""
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
    epsilon_decay_steps: int = 250_000
    """Agent steps of linear epsilon annealing (Nature: 1M frames = 250k agent steps)."""
    prioritized: bool = False
    """Proportional prioritised replay (Schaul et al. 2016)."""
    per_alpha: float = 0.6
    """Priority exponent alpha of prioritised replay."""
    per_beta_start: float = 0.4
    """Importance-sampling exponent at step 0, annealed linearly to ``per_beta_final``."""
    per_beta_final: float = 1.0
    """Importance-sampling exponent at the end of training (``train.steps``)."""
    per_eps: float = 1e-6
    """Added to |TD error| so that no transition has zero priority."""

    @property
    def double(self) -> bool:
        """Whether the target uses Double DQN action selection (only for ``algo: double_dqn``)."""
        return self.algo == "double_dqn"

    def validate(self) -> list[str]:
        """Cross-field problems, as ``(key, message)`` lines for ``ConfigError``."""
        problems = []
        positive = ("n_step", "buffer_size", "batch_size", "train_freq", "gradient_steps",
                    "target_update_interval")
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
        if self.learning_starts < 0 or self.epsilon_decay_steps < 0:
            problems.append("agent.learning_starts and agent.epsilon_decay_steps must be >= 0")
        if any(width < 1 for width in self.mlp_hidden):
            problems.append(f"agent.mlp_hidden widths must be >= 1, got {self.mlp_hidden}")
        return problems

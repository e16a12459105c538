"""``OptimizerConfig``: which optimizer and its hyperparameters, checked (torch-free).

It lives apart from ``rlkit.optim`` (which builds the optimizers and imports torch) so that a
training config can hold it without importing torch: the ``optim`` section of ``rlkit train``'s
config (``agents.config.OptimConfig``) extends this class, so every field, default and range
below is the one definition.
"""

from __future__ import annotations

import typing
from dataclasses import dataclass
from typing import Literal

OptimizerName = Literal["sgd", "rmsprop", "rmsprop_tf", "adam", "adamw"]
OPTIMIZERS: tuple[str, ...] = typing.get_args(OptimizerName)


@dataclass
class OptimizerConfig:
    """Which optimizer and its hyperparameters; ``ValueError`` (one line naming the field, as
    ``optim.<field>``) when a value is out of range."""

    name: OptimizerName = "adam"
    """Optimizer; ``rmsprop_tf`` is TensorFlow-1 RMSProp (eps inside the root) as DQN/PAAC used."""
    lr: float = 1e-3
    """Initial learning rate (default: PyTorch's Adam default; every published config sets it)."""
    momentum: float = 0.0
    """Momentum (sgd, rmsprop, rmsprop_tf)."""
    nesterov: bool = False
    """Nesterov momentum (sgd)."""
    alpha: float = 0.99
    """Squared-gradient decay (rmsprop, rmsprop_tf)."""
    eps: float = 1e-8
    """Numerical-stability epsilon (all but sgd)."""
    betas: tuple[float, float] = (0.9, 0.999)
    """Adam moment decays."""
    weight_decay: float = 0.0
    """L2 / decoupled weight decay (never applied to biases and norm layers)."""
    centered: bool = False
    """Centred RMSProp (divide by the gradient's variance, not its second moment)."""
    initial_accumulator: float = 1.0
    """rmsprop_tf: starting value of the squared-gradient average (TF1's ``RMSPropOptimizer``:
    1; DeepMind's Lua DQN: 0)."""

    def __post_init__(self) -> None:
        self.betas = (float(self.betas[0]), float(self.betas[1]))
        problems = self.problems()
        if problems:
            raise ValueError(problems[0])

    def problems(self) -> list[str]:
        """One line per out-of-range field, naming it and the fix."""
        checks = [
            (self.name in OPTIMIZERS,
             f"unknown optimizer {self.name!r}; use one of {', '.join(OPTIMIZERS)}"),
            (self.lr > 0, f"optim.lr must be > 0, got {self.lr}"),
            (0 <= self.momentum < 1, f"optim.momentum must be in [0, 1), got {self.momentum}"),
            (not self.nesterov or (self.name == "sgd" and self.momentum != 0),
             "optim.nesterov needs name 'sgd' and momentum > 0; set momentum=0.9"),
            (0 <= self.alpha < 1, f"optim.alpha must be in [0, 1), got {self.alpha}"),
            (self.eps >= 0, f"optim.eps must be >= 0, got {self.eps}"),
            (all(0 <= b < 1 for b in self.betas),
             f"optim.betas must both be in [0, 1), got {self.betas}"),
            (self.weight_decay >= 0, f"optim.weight_decay must be >= 0, got {self.weight_decay}"),
            (self.initial_accumulator >= 0,
             f"optim.initial_accumulator must be >= 0, got {self.initial_accumulator}"),
        ]
        return [message for ok, message in checks if not ok]

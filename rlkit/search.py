"""Random hyperparameter search with log-uniform sampling (the CS231n notes; Bergstra & Bengio
2012): random search beats grid search when only a few hyperparameters matter, and scale
parameters (learning rate, regularisation) are searched on a log scale, e.g.
``lr = 10 ** uniform(-6, 1)``. A best value near the border of its range means the range was
wrong, so ``SearchResult.on_border`` names such parameters.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from rlkit.monitors import NonFiniteError


@dataclass(frozen=True)
class LogUniform:
    low: float
    high: float

    def __post_init__(self) -> None:
        if not 0 < self.low < self.high:
            raise ValueError(f"LogUniform needs 0 < low < high, got {self.low}, {self.high}")

    def sample(self, rng: np.random.Generator) -> float:
        return float(math.exp(rng.uniform(math.log(self.low), math.log(self.high))))

    def position(self, value: float) -> float:
        """Where ``value`` lies in the range on the sampling scale: 0 = low, 1 = high."""
        return (math.log(value) - math.log(self.low)) / (math.log(self.high) - math.log(self.low))


@dataclass(frozen=True)
class Uniform:
    low: float
    high: float

    def __post_init__(self) -> None:
        if not self.low < self.high:
            raise ValueError(f"Uniform needs low < high, got {self.low}, {self.high}")

    def sample(self, rng: np.random.Generator) -> float:
        return float(rng.uniform(self.low, self.high))

    def position(self, value: float) -> float:
        return (value - self.low) / (self.high - self.low)


@dataclass(frozen=True)
class Choice:
    options: Sequence[Any]

    def __post_init__(self) -> None:
        if not self.options:
            raise ValueError("Choice needs at least one option")

    def sample(self, rng: np.random.Generator) -> Any:
        return self.options[int(rng.integers(len(self.options)))]

    def position(self, value: Any) -> float:
        return 0.5  # categorical: no border


Distribution = LogUniform | Uniform | Choice


def sample_params(space: Mapping[str, Distribution], rng: np.random.Generator) -> dict[str, Any]:
    return {name: dist.sample(rng) for name, dist in space.items()}


def sample_trials(space: Mapping[str, Distribution], trials: int, seed: int = 0
                  ) -> list[dict[str, Any]]:
    """The parameters of trials ``0 .. trials - 1`` of a search seeded with ``seed``.

    Trial ``i`` gets the same values whatever ``trials`` is, so a search run again with more
    trials keeps the trials it already ran and only adds new ones.
    """
    if trials < 1:
        raise ValueError(f"trials must be >= 1, got {trials}")
    rng = np.random.default_rng(seed)
    return [sample_params(space, rng) for _ in range(trials)]


@dataclass
class SearchResult:
    space: Mapping[str, Distribution]
    maximize: bool
    trials: list[tuple[dict[str, Any], float]] = field(default_factory=list)

    @property
    def best(self) -> tuple[dict[str, Any], float]:
        finite = [t for t in self.trials if math.isfinite(t[1])]
        if not finite:
            raise ValueError("no trial produced a finite score")
        pick = max if self.maximize else min
        return pick(finite, key=lambda t: t[1])

    def on_border(self, margin: float = 0.1) -> list[str]:
        """Parameters whose best value lies within ``margin`` of either end of its range."""
        params, _ = self.best
        return [
            name for name, dist in self.space.items()
            if not margin <= dist.position(params[name]) <= 1 - margin
        ]


def random_search(
    objective: Callable[[dict[str, Any]], float],
    space: Mapping[str, Distribution],
    trials: int,
    *,
    seed: int = 0,
    maximize: bool = True,
) -> SearchResult:
    """Evaluate ``objective`` on ``trials`` random samples from ``space``.

    A trial that diverges (raises ``NonFiniteError`` or ``FloatingPointError``, or returns NaN)
    scores ``-inf`` (``inf`` when minimising) and the search goes on; other errors propagate.
    """
    result = SearchResult(space, maximize)
    worst = -math.inf if maximize else math.inf
    for params in sample_trials(space, trials, seed):
        try:
            score = float(objective(params))
        except (NonFiniteError, FloatingPointError):
            score = worst
        result.trials.append((params, worst if math.isnan(score) else score))
    return result

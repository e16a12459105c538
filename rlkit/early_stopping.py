"""Early stopping on a validation metric, and the "did it improve?" rule it shares with
``ReduceOnPlateau``.

Sutskever's advice: use a held-out validation set to decide when to lower the learning rate and
when to stop; stop when the validation error starts to rise. ``EarlyStopping`` also tells the
caller when the metric improved, which is when to save the "best" checkpoint.
"""

from __future__ import annotations

import math
from typing import Any


class BestTracker:
    """Best value of a metric so far, and how many observations in a row failed to beat it.

    An observation improves when it beats the best by more than ``threshold * |best|``
    (``relative=True``) or by more than ``threshold`` (``relative=False``).
    """

    def __init__(self, mode: str = "min", threshold: float = 0.0, relative: bool = True) -> None:
        if mode not in ("min", "max"):
            raise ValueError(f"mode must be 'min' (losses) or 'max' (accuracies), got {mode!r}")
        if threshold < 0:
            raise ValueError(f"threshold must be >= 0, got {threshold}")
        self.mode, self.threshold, self.relative = mode, float(threshold), relative
        self.best: float | None = None
        self.bad = 0

    def observe(self, metric: float) -> bool:
        """Record ``metric``; return whether it improved on the best."""
        metric = float(metric)
        if math.isnan(metric):
            raise ValueError("validation metric is NaN; check the validation loss")
        if self.best is None:
            improved = True
        else:
            margin = self.threshold * abs(self.best) if self.relative else self.threshold
            if self.mode == "min":
                improved = metric < self.best - margin
            else:
                improved = metric > self.best + margin
        if improved:
            self.best, self.bad = metric, 0
        else:
            self.bad += 1
        return improved

    def state_dict(self) -> dict[str, Any]:
        return {"best": self.best, "bad": self.bad}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best = None if state["best"] is None else float(state["best"])
        self.bad = int(state["bad"])


class EarlyStopping:
    """Stop after ``patience`` consecutive validations without improvement.

    ``step(metric)`` returns ``True`` when training should stop; after each call ``improved``
    says whether this metric is the best so far (save the best model then).
    """

    def __init__(
        self, patience: int = 10, *, mode: str = "min", min_delta: float = 0.0
    ) -> None:
        if patience < 1:
            raise ValueError(f"EarlyStopping patience must be >= 1, got {patience}")
        self.patience = int(patience)
        self.tracker = BestTracker(mode, min_delta, relative=False)
        self.improved = False
        self.best_step: int | None = None
        self._calls = 0

    @property
    def best(self) -> float | None:
        return self.tracker.best

    def step(self, metric: float) -> bool:
        self.improved = self.tracker.observe(metric)
        if self.improved:
            self.best_step = self._calls
        self._calls += 1
        return self.should_stop

    @property
    def should_stop(self) -> bool:
        return self.tracker.bad >= self.patience

    def state_dict(self) -> dict[str, Any]:
        return {"tracker": self.tracker.state_dict(), "best_step": self.best_step,
                "calls": self._calls}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.tracker.load_state_dict(state["tracker"])
        self.best_step = state["best_step"]
        self._calls = int(state["calls"])

"""Learning-rate (and epsilon, beta, ...) schedules: pure functions of the step.

Every schedule is ``value(step) -> float`` with no hidden counter, so resuming a run at step N
gives exactly the value it would have had; ``state_dict`` captures whatever state exists (only
``ReduceOnPlateau`` has any, because it is driven by validation metrics rather than the step).

Forms follow the CS231n notes: step decay, exponential ``a0 * rate**(t/every)``,
``1/t`` decay ``a0 / (1 + k t)``; plus linear annealing (DQN's epsilon, PAAC's LR), cosine
(Loshchilov & Hutter 2017, without restarts) and piecewise-linear. ``ReduceOnPlateau`` is
Sutskever's advice: when the validation metric stalls, divide the LR by 2-5; stop when
it becomes tiny.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from torch.optim import Optimizer

from rlkit.early_stopping import BestTracker


class Schedule:
    """Base class: ``value(step)``; calling the schedule is the same as ``value``."""

    def value(self, step: int) -> float:
        raise NotImplementedError

    def __call__(self, step: int) -> float:
        return self.value(step)

    def _state(self) -> dict[str, Any]:
        return {}

    def _load_state(self, state: dict[str, Any]) -> None:
        del state

    def state_dict(self) -> dict[str, Any]:
        """Schedule kind plus its mutable state (empty for the pure schedules)."""
        return {"kind": type(self).__name__, **self._state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        kind = state.get("kind")
        if kind != type(self).__name__:
            raise ValueError(
                f"cannot load a {kind} schedule state into {type(self).__name__}; "
                "use the same schedule as the run that saved it"
            )
        self._load_state({k: v for k, v in state.items() if k != "kind"})


def _check_step(step: int) -> int:
    if step < 0:
        raise ValueError(f"schedule step must be >= 0, got {step}")
    return step


class Constant(Schedule):
    def __init__(self, value: float) -> None:
        self.v = float(value)

    def value(self, step: int) -> float:
        _check_step(step)
        return self.v

    def __repr__(self) -> str:
        return f"Constant({self.v})"


class Linear(Schedule):
    """``start`` until ``begin``, linearly to ``end`` over ``duration`` steps, then ``end``."""

    def __init__(self, start: float, end: float, duration: int, begin: int = 0) -> None:
        if duration <= 0:
            raise ValueError(f"Linear schedule duration must be > 0, got {duration}")
        if begin < 0:
            raise ValueError(f"Linear schedule begin must be >= 0, got {begin}")
        self.start, self.end = float(start), float(end)
        self.duration, self.begin = int(duration), int(begin)

    def value(self, step: int) -> float:
        frac = min(max((_check_step(step) - self.begin) / self.duration, 0.0), 1.0)
        return (1.0 - frac) * self.start + frac * self.end  # exact at both ends

    def __repr__(self) -> str:
        return f"Linear({self.start}, {self.end}, duration={self.duration}, begin={self.begin})"


class StepDecay(Schedule):
    """``initial * factor ** (step // every)``: multiply by ``factor`` every ``every`` steps."""

    def __init__(self, initial: float, factor: float, every: int) -> None:
        if every <= 0:
            raise ValueError(f"StepDecay every must be > 0, got {every}")
        if factor <= 0:
            raise ValueError(f"StepDecay factor must be > 0, got {factor}")
        self.initial, self.factor, self.every = float(initial), float(factor), int(every)

    def value(self, step: int) -> float:
        return self.initial * self.factor ** (_check_step(step) // self.every)


class Exponential(Schedule):
    """``initial * rate ** (step / every)``: smooth decay by ``rate`` per ``every`` steps.

    Equivalent to the notes' ``a0 * exp(-k t)`` with ``k = -ln(rate) / every``.
    """

    def __init__(self, initial: float, rate: float, every: int = 1) -> None:
        if not rate > 0:
            raise ValueError(f"Exponential rate must be > 0, got {rate}")
        if every <= 0:
            raise ValueError(f"Exponential every must be > 0, got {every}")
        self.initial, self.rate, self.every = float(initial), float(rate), int(every)

    def value(self, step: int) -> float:
        return self.initial * self.rate ** (_check_step(step) / self.every)


class InverseTime(Schedule):
    """``initial / (1 + k * step)`` (the notes' 1/t decay)."""

    def __init__(self, initial: float, k: float) -> None:
        if k < 0:
            raise ValueError(f"InverseTime k must be >= 0, got {k}")
        self.initial, self.k = float(initial), float(k)

    def value(self, step: int) -> float:
        return self.initial / (1.0 + self.k * _check_step(step))


class Cosine(Schedule):
    """Half-cosine from ``initial`` to ``final`` over ``duration`` steps, then ``final``."""

    def __init__(self, initial: float, final: float, duration: int) -> None:
        if duration <= 0:
            raise ValueError(f"Cosine duration must be > 0, got {duration}")
        self.initial, self.final, self.duration = float(initial), float(final), int(duration)

    def value(self, step: int) -> float:
        frac = min(_check_step(step), self.duration) / self.duration
        return self.final + 0.5 * (self.initial - self.final) * (1.0 + math.cos(math.pi * frac))


class Piecewise(Schedule):
    """Linear interpolation between ``(step, value)`` points; constant before/after the ends."""

    def __init__(self, points: Sequence[tuple[int, float]]) -> None:
        if not points:
            raise ValueError("Piecewise needs at least one (step, value) point")
        steps = [int(s) for s, _ in points]
        if any(b <= a for a, b in zip(steps, steps[1:], strict=False)):
            raise ValueError(f"Piecewise steps must be strictly increasing, got {steps}")
        self.points = [(int(s), float(v)) for s, v in points]

    def value(self, step: int) -> float:
        _check_step(step)
        if step <= self.points[0][0]:
            return self.points[0][1]
        for (s0, v0), (s1, v1) in zip(self.points, self.points[1:], strict=False):
            if step <= s1:
                frac = (step - s0) / (s1 - s0)
                return (1.0 - frac) * v0 + frac * v1
        return self.points[-1][1]


class ReduceOnPlateau(Schedule):
    """Divide the value by ``1/factor`` when a validation metric stops improving.

    Call ``observe(metric)`` once per validation; it returns ``True`` when training should stop
    because the value has fallen below ``min_value``. ``patience`` is the number of consecutive
    non-improving observations tolerated: the ``patience + 1``-th one triggers a reduction.
    An observation improves when it beats the best so far by more than ``threshold`` (relative).
    ``mode="min"`` for losses, ``"max"`` for accuracies. ``value(step)`` ignores the step.
    ``floor`` is the smallest value a reduction goes to (0: no floor); a value held at the
    floor is not reduced again, so a long run's rate does not vanish.
    """

    def __init__(
        self,
        initial: float,
        factor: float = 0.5,
        patience: int = 3,
        min_value: float = 1e-6,
        *,
        mode: str = "min",
        threshold: float = 1e-4,
        floor: float = 0.0,
    ) -> None:
        if not 0 < factor < 1:
            raise ValueError(f"ReduceOnPlateau factor must be in (0, 1) (0.2-0.5), got {factor}")
        if patience < 0:
            raise ValueError(f"ReduceOnPlateau patience must be >= 0, got {patience}")
        self.initial, self.factor, self.patience = float(initial), float(factor), int(patience)
        self.min_value = float(min_value)
        if not 0.0 <= floor <= initial:
            raise ValueError(f"ReduceOnPlateau floor must be in [0, initial], got {floor}")
        self.floor = float(floor)
        self.tracker = BestTracker(mode, threshold, relative=True)
        self.current = self.initial
        self.reductions = 0

    @property
    def best(self) -> float | None:
        return self.tracker.best

    def observe(self, metric: float) -> bool:
        """Record one validation metric; returns whether training should stop."""
        if not self.tracker.observe(metric) and self.tracker.bad > self.patience:
            if self.current > self.floor:
                self.current = max(self.current * self.factor, self.floor)
                self.reductions += 1
            self.tracker.bad = 0
        return self.should_stop

    @property
    def should_stop(self) -> bool:
        return self.current < self.min_value

    def value(self, step: int) -> float:
        _check_step(step)
        return self.current

    def _state(self) -> dict[str, Any]:
        return {"current": self.current, "reductions": self.reductions,
                "tracker": self.tracker.state_dict()}

    def _load_state(self, state: dict[str, Any]) -> None:
        self.current = float(state["current"])
        self.reductions = int(state["reductions"])
        self.tracker.load_state_dict(state["tracker"])


def set_lr(optimizer: Optimizer, lr: float) -> None:
    """Set the learning rate of every parameter group."""
    for group in optimizer.param_groups:
        group["lr"] = lr

"""The one gradient update that DQN, PAAC and PPO share.

``update(loss)``: ``zero_grad(set_to_none)`` -> ``backward`` -> (data-parallel runs: gradient
all-reduce, ``grad_sync``) -> value clip -> global-norm clip ->
``optimizer.step`` -> learning-rate schedule -> (every ``monitor_every`` updates) monitors.

Nothing on the per-update path reads a value back from the GPU: the gradient norm is returned as
a device tensor, the NaN guard records the loss on the device, and everything that needs a host
sync (update/weight ratios, per-tensor gradient norms, activation statistics, the NaN check of
gradients and parameters, TensorBoard) runs only on monitor updates. Two options trade that for
something else: ``max_nan_skips > 0`` reads one flag per update to skip non-finite updates (free
on the CPU, one sync per update on a GPU), and ``ema_decay`` keeps an EMA copy of the weights.

What the monitors saw accumulates in ``diagnostics`` (``rlkit.monitors.RunDiagnostics``): the
per-layer ratio range, dead units and NaN-guard events that ``rlkit train`` prints at the end.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.optim import Optimizer

from rlkit.averaging import EMA
from rlkit.grads import clip_grad_norm_, clip_grad_value_, global_grad_norm
from rlkit.logger import Logger
from rlkit.monitors import (
    ActivationMonitor,
    NaNGuard,
    NonFiniteError,
    RunDiagnostics,
    UpdateRatioMonitor,
    filter_image,
    first_conv,
    grad_norms,
)
from rlkit.schedules import ReduceOnPlateau, Schedule, set_lr


@dataclass
class UpdateStats:
    """What one update reports. Tensors stay on the device; convert them only when logging."""

    loss: torch.Tensor
    grad_norm: torch.Tensor
    """Global gradient norm after value clipping and before norm clipping."""
    lr: float
    """Learning rate used by this update."""
    updates: int
    """Updates done so far, this one included."""
    monitored: bool = False
    skipped: bool = False
    """The NaN guard skipped this update (non-finite loss or gradient): no optimizer step."""


class UpdateStep:
    """Owns the optimizer step, clipping, LR schedule and monitors for one model.

    ``lr_schedule`` is evaluated at the number of updates done (``schedule(0)`` for the first);
    a ``ReduceOnPlateau`` schedule works too (its value changes when you call ``observe``).
    ``state_dict`` holds the update counter, the optimizer state and the schedule state, so a
    learner that saves it need not save the optimizer separately.

    ``grad_sync(params)`` runs right after ``backward`` and before clipping (data-parallel
    training passes ``rlkit.distributed.DistributedContext.average_gradients``), so clipping and
    the step see the gradient averaged over ranks and every rank takes the same step.

    NaN guard: with ``max_nan_skips = 0`` (the default) the first non-finite loss, gradient or
    parameter stops training with ``NonFiniteError`` (on a GPU the loss is checked without a
    sync, so it is caught at the next monitor update). With ``max_nan_skips = k > 0`` an update
    whose loss or global gradient norm is non-finite is skipped (no optimizer step, no EMA
    update; it still counts in ``updates``) and training stops only when more than ``k``
    updates in a row are skipped. Every event goes to ``diagnostics``. (Data-parallel ranks
    decide on the all-reduced gradient, so they skip together.)

    ``ema_decay``: keep ``self.ema`` (``rlkit.averaging.EMA`` with warm-up, updated after every
    optimizer step) for evaluation; its state is part of ``state_dict``. A ``ReduceOnPlateau``
    LR schedule is driven by ``observe_score`` (e.g. the periodic evaluation's mean score).
    """

    def __init__(
        self,
        model: nn.Module,
        optimizer: Optimizer,
        *,
        max_grad_norm: float | None = None,
        clip_value: float | None = None,
        lr_schedule: Schedule | None = None,
        monitor_every: int = 100,
        logger: Logger | None = None,
        nan_guard: bool = True,
        image_every: int | None = None,
        grad_sync: Callable[[Sequence[torch.Tensor]], None] | None = None,
        max_nan_skips: int = 0,
        ema_decay: float | None = None,
    ) -> None:
        if max_grad_norm is not None and not max_grad_norm > 0:
            raise ValueError(f"max_grad_norm must be > 0 or None, got {max_grad_norm}")
        if clip_value is not None and not clip_value > 0:
            raise ValueError(f"clip_value must be > 0 or None, got {clip_value}")
        if monitor_every < 1:
            raise ValueError(f"monitor_every must be >= 1, got {monitor_every}")
        if max_nan_skips < 0:
            raise ValueError(f"max_nan_skips must be >= 0, got {max_nan_skips}")
        self.model = model
        self.optimizer = optimizer
        self.max_grad_norm = max_grad_norm
        self.clip_value = clip_value
        self.lr_schedule = lr_schedule
        self.monitor_every = int(monitor_every)
        self.image_every = int(image_every or 10 * monitor_every)
        self.logger = logger or Logger(None)
        self.nan_guard = NaNGuard() if nan_guard else None
        self.grad_sync = grad_sync
        self.named_params = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
        self.params = [p for _, p in self.named_params]
        if not self.params:
            raise ValueError("UpdateStep: the model has no trainable parameters")
        self.ratio_monitor = UpdateRatioMonitor(self.named_params)
        self.activation_monitor = ActivationMonitor(model)
        self._weight_names = {n for n, p in self.named_params if p.ndim >= 2}
        self.diagnostics = RunDiagnostics(self.ratio_monitor.target)
        self.max_nan_skips = int(max_nan_skips)
        self._skipped_in_a_row = 0
        self.ema = None if ema_decay is None else EMA(model, ema_decay, warmup=True)
        self._captured = False
        self.updates = 0
        self._apply_schedule()

    def _apply_schedule(self) -> None:
        if self.lr_schedule is not None:
            set_lr(self.optimizer, self.lr_schedule(self.updates))

    @property
    def lr(self) -> float:
        return float(self.optimizer.param_groups[0]["lr"])

    @property
    def monitoring_next(self) -> bool:
        """Whether the next ``update`` call runs the monitors."""
        return (self.updates + 1) % self.monitor_every == 0

    def capture_activations(self) -> contextlib.AbstractContextManager[Any]:
        """Wrap the forward pass with this; hooks are attached only before a monitor update."""
        if self.monitoring_next and self.activation_monitor.modules:
            return self._capture()
        return contextlib.nullcontext()

    @contextlib.contextmanager
    def _capture(self) -> Iterator[None]:
        with self.activation_monitor.capture():
            yield
        self._captured = True

    def update(self, loss: torch.Tensor) -> UpdateStats:
        if loss.ndim != 0:
            raise ValueError(
                f"UpdateStep.update needs a scalar loss, got shape {tuple(loss.shape)}; "
                "reduce it with rlkit.grads.batch_mean"
            )
        step = self.updates + 1
        monitoring = step % self.monitor_every == 0
        skipping = self.nan_guard is not None and self.max_nan_skips > 0
        # Data-parallel ranks must all take or all skip a step: they decide on the averaged
        # gradient below (a NaN loss on one rank makes every rank's averaged gradient NaN).
        if skipping and self.grad_sync is None and not bool(torch.isfinite(loss.detach())):
            return self._skip(loss, torch.full((), float("nan")), step, "loss")
        if self.nan_guard is not None and not skipping:
            with self._recording_stop():
                self.nan_guard.record_loss(loss, step)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.grad_sync is not None:
            self.grad_sync(self.params)
        if self.clip_value is not None:
            clip_grad_value_(self.params, self.clip_value)
        if self.max_grad_norm is not None:
            grad_norm = clip_grad_norm_(self.params, self.max_grad_norm)
        else:
            grad_norm = global_grad_norm(self.params)
        if skipping and not bool(torch.isfinite(grad_norm)):
            return self._skip(loss, grad_norm, step, "gradient")
        self._skipped_in_a_row = 0
        lr = self.lr
        before = None
        if monitoring:
            if self.nan_guard is not None:
                with self._recording_stop():
                    self.nan_guard.check()
                    self.nan_guard.check_tensors(
                        ((n, p.grad) for n, p in self.named_params if p.grad is not None),
                        step,
                        "gradient",
                    )
            before = self.ratio_monitor.snapshot()
        self.optimizer.step()
        if self.ema is not None:
            self.ema.update()
        self.updates = step
        if monitoring:
            self._monitor(step, loss, grad_norm, lr, before)
        self._apply_schedule()
        return UpdateStats(loss.detach(), grad_norm, lr, step, monitoring)

    @contextlib.contextmanager
    def _recording_stop(self) -> Iterator[None]:
        """Record a ``NonFiniteError`` raised inside as a NaN-guard event, then re-raise it."""
        try:
            yield
        except NonFiniteError as exc:
            update = self.updates + 1 if exc.update is None else exc.update
            self.diagnostics.record_nan(update, exc.what, "stopped training")
            raise

    def _skip(self, loss: torch.Tensor, grad_norm: torch.Tensor, step: int, what: str
              ) -> UpdateStats:
        """Skip update ``step`` (non-finite ``what``): no optimizer step, gradients dropped."""
        self.optimizer.zero_grad(set_to_none=True)
        self.updates = step
        self._skipped_in_a_row += 1
        self._captured = False
        if self._skipped_in_a_row > self.max_nan_skips:
            self.diagnostics.record_nan(step, what, "stopped training")
            raise NonFiniteError(
                f"{self._skipped_in_a_row} updates in a row had a non-finite {what} (the last at "
                f"update {step}; max_nan_skips={self.max_nan_skips}); lower the learning rate, "
                "set max_grad_norm, or check the inputs and rewards", what=what, update=step)
        self.diagnostics.record_nan(step, what, "skipped the update")
        lr = self.lr
        self._apply_schedule()
        return UpdateStats(loss.detach(), grad_norm, lr, step, False, skipped=True)

    def observe_score(self, score: float) -> bool:
        """Feed an evaluation score to a ``ReduceOnPlateau`` LR schedule (``mode="max"``) and
        apply the new rate; returns whether there is one (other schedules ignore scores)."""
        if not isinstance(self.lr_schedule, ReduceOnPlateau):
            return False
        self.lr_schedule.observe(score)
        self._apply_schedule()
        return True

    def _monitor(
        self,
        step: int,
        loss: torch.Tensor,
        grad_norm: torch.Tensor,
        lr: float,
        before: list[torch.Tensor] | None,
    ) -> None:
        if self.nan_guard is not None:
            self.nan_guard.check_tensors(self.named_params, step, "parameter")
        ratios = self.ratio_monitor.measure(before or [])
        self.diagnostics.observe_ratios({n: r for n, r in ratios.items()
                                         if n in self._weight_names})
        activations = self.activation_monitor.stats() if self._captured else {}
        self._captured = False
        self.diagnostics.observe_activations(activations)
        log = self.logger
        if not log.enabled:
            return
        log.scalars({"loss": loss, "grad_norm": grad_norm, "lr": lr}, step, prefix="update/")
        log.scalars(ratios, step, prefix="update_ratio/")
        log.scalars(grad_norms(self.named_params), step, prefix="grad_norm/")
        if activations:
            log.scalars(activations, step, prefix="activations/")
        conv = first_conv(self.model)
        if conv is not None and step % self.image_every == 0:
            log.image("filters/first_layer", filter_image(conv.weight), step)

    def state_dict(self) -> dict[str, Any]:
        return {
            "updates": self.updates,
            "optimizer": self.optimizer.state_dict(),
            "lr_schedule": None if self.lr_schedule is None else self.lr_schedule.state_dict(),
            "ema": None if self.ema is None else self.ema.state_dict(),
            "diagnostics": self.diagnostics.state_dict(),
            "skipped_in_a_row": self._skipped_in_a_row,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.updates = int(state["updates"])
        self.optimizer.load_state_dict(state["optimizer"])
        if self.lr_schedule is not None and state.get("lr_schedule") is not None:
            self.lr_schedule.load_state_dict(state["lr_schedule"])
        if self.ema is not None:
            if state.get("ema") is not None:
                self.ema.load_state_dict(state["ema"])
            else:  # saved without an EMA: start the average from the loaded weights
                self.ema.module.load_state_dict(self.model.state_dict())
                self.ema.updates = 0
        if state.get("diagnostics") is not None:
            self.diagnostics.load_state_dict(state["diagnostics"])
        self._skipped_in_a_row = int(state.get("skipped_in_a_row", 0))
        self._apply_schedule()

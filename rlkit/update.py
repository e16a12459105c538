"""The one gradient update that DQN and PAAC share.

``update(loss)``: ``zero_grad(set_to_none)`` -> ``backward`` -> (data-parallel runs: gradient
all-reduce, ``grad_sync``) -> value clip -> global-norm clip ->
``optimizer.step`` -> learning-rate schedule -> (every ``monitor_every`` updates) monitors.

Nothing on the per-update path reads a value back from the GPU: the gradient norm is returned as
a device tensor, the NaN guard records the loss on the device, and everything that needs a host
sync (update/weight ratios, per-tensor gradient norms, activation statistics, the NaN check of
gradients and parameters, TensorBoard) runs only on monitor updates.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.optim import Optimizer

from rlkit.grads import clip_grad_norm_, clip_grad_value_, global_grad_norm
from rlkit.logger import Logger
from rlkit.monitors import (
    ActivationMonitor,
    NaNGuard,
    UpdateRatioMonitor,
    filter_image,
    first_conv,
    grad_norms,
)
from rlkit.schedules import Schedule, set_lr


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


class UpdateStep:
    """Owns the optimizer step, clipping, LR schedule and monitors for one model.

    ``lr_schedule`` is evaluated at the number of updates done (``schedule(0)`` for the first);
    a ``ReduceOnPlateau`` schedule works too (its value changes when you call ``observe``).
    ``state_dict`` holds the update counter, the optimizer state and the schedule state, so a
    learner that saves it need not save the optimizer separately.

    ``grad_sync(params)`` runs right after ``backward`` and before clipping (data-parallel
    training passes ``rlkit.distributed.DistributedContext.average_gradients``), so clipping and
    the step see the gradient averaged over ranks and every rank takes the same step.
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
    ) -> None:
        if max_grad_norm is not None and not max_grad_norm > 0:
            raise ValueError(f"max_grad_norm must be > 0 or None, got {max_grad_norm}")
        if clip_value is not None and not clip_value > 0:
            raise ValueError(f"clip_value must be > 0 or None, got {clip_value}")
        if monitor_every < 1:
            raise ValueError(f"monitor_every must be >= 1, got {monitor_every}")
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
        if self.nan_guard is not None:
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
        lr = self.lr
        before = None
        if monitoring:
            if self.nan_guard is not None:
                self.nan_guard.check()
                self.nan_guard.check_tensors(
                    ((n, p.grad) for n, p in self.named_params if p.grad is not None),
                    step,
                    "gradient",
                )
            before = self.ratio_monitor.snapshot()
        self.optimizer.step()
        self.updates = step
        if monitoring:
            self._monitor(step, loss, grad_norm, lr, before)
        self._apply_schedule()
        return UpdateStats(loss.detach(), grad_norm, lr, step, monitoring)

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
        log = self.logger
        if not log.enabled:
            self._captured = False
            return
        log.scalars({"loss": loss, "grad_norm": grad_norm, "lr": lr}, step, prefix="update/")
        log.scalars(ratios, step, prefix="update_ratio/")
        log.scalars(grad_norms(self.named_params), step, prefix="grad_norm/")
        if self._captured:
            log.scalars(self.activation_monitor.stats(), step, prefix="activations/")
            self._captured = False
        conv = first_conv(self.model)
        if conv is not None and step % self.image_every == 0:
            log.image("filters/first_layer", filter_image(conv.weight), step)

    def state_dict(self) -> dict[str, Any]:
        return {
            "updates": self.updates,
            "optimizer": self.optimizer.state_dict(),
            "lr_schedule": None if self.lr_schedule is None else self.lr_schedule.state_dict(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.updates = int(state["updates"])
        self.optimizer.load_state_dict(state["optimizer"])
        if self.lr_schedule is not None and state.get("lr_schedule") is not None:
            self.lr_schedule.load_state_dict(state["lr_schedule"])
        self._apply_schedule()

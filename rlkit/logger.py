"""One logger for every curve: a thin wrapper over TensorBoard's ``SummaryWriter``.

``Logger(None)`` is a no-op with the same methods, so library code logs unconditionally and tests
or evaluation runs simply pass ``None``. Values may be Python numbers or tensors; converting a
tensor forces a device sync, which is why callers log every k steps, not every step.

One run, one x-axis: ``logger.with_x_axis(lambda: learner.env_steps)`` hands a component that
counts its own steps (``UpdateStep`` counts optimizer updates) a view that logs at the run's
agent step instead, so every curve of a run lines up with every other.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch


def _to_float(value: Any) -> float:
    if isinstance(value, torch.Tensor):
        return float(value.detach().float().cpu())
    return float(value)


def _to_numpy(values: Any) -> np.ndarray:
    if isinstance(values, torch.Tensor):
        return values.detach().float().cpu().numpy()
    return np.asarray(values)


class Logger:
    """TensorBoard scalars, images and histograms under ``log_dir`` (``None``: log nothing)."""

    def __init__(self, log_dir: str | Path | None) -> None:
        self.log_dir = None if log_dir is None else Path(log_dir)
        self._writer = None
        self._root: Logger = self  # the logger owning the writer (a view's parent)
        self._x_axis: Callable[[], int] | None = None
        if self.log_dir is not None:
            # Imported lazily: tensorboard takes about a second to import and is unneeded
            # for Logger(None).
            from torch.utils.tensorboard import SummaryWriter

            self.log_dir.mkdir(parents=True, exist_ok=True)
            self._writer = SummaryWriter(log_dir=str(self.log_dir))

    def with_x_axis(self, steps: Callable[[], int]) -> Logger:
        """A view of this logger whose writes all land at ``steps()`` (e.g. the agent step),
        whatever step its caller passes. It shares the writer; closing it closes nothing."""
        view = Logger(None)
        view.log_dir, view._root, view._x_axis = self.log_dir, self._root, steps
        return view

    def _x(self, step: int) -> int:
        return int(step if self._x_axis is None else self._x_axis())

    @property
    def _out(self) -> Any:
        """The TensorBoard writer (the owner's, for a view); None when logging nothing."""
        return self._root._writer

    @property
    def enabled(self) -> bool:
        return self._out is not None

    def scalar(self, tag: str, value: Any, step: int) -> None:
        if self._out is not None:
            self._out.add_scalar(tag, _to_float(value), self._x(step))

    def scalars(self, mapping: Mapping[str, Any], step: int, prefix: str = "") -> None:
        """Log each ``name: value`` as scalar ``prefix + name`` (e.g. ``prefix="train/"``)."""
        for name, value in mapping.items():
            self.scalar(f"{prefix}{name}", value, step)

    def image(self, tag: str, img: Any, step: int) -> None:
        """Log an image: ``(H, W)`` or ``(C, H, W)`` with C in {1, 3}, values in [0, 1]."""
        if self._out is None:
            return
        arr = _to_numpy(img)
        if arr.ndim == 2:
            arr = arr[None]
        if arr.ndim != 3 or arr.shape[0] not in (1, 3):
            raise ValueError(
                f"Logger.image wants (H, W) or (C, H, W) with C in 1 or 3, got {arr.shape}"
            )
        self._out.add_image(tag, arr, self._x(step), dataformats="CHW")

    def histogram(self, tag: str, values: Any, step: int) -> None:
        if self._out is not None:
            self._out.add_histogram(tag, _to_numpy(values), self._x(step))

    def text(self, tag: str, text: str, step: int = 0) -> None:
        if self._out is not None:
            self._out.add_text(tag, text, self._x(step))

    def flush(self) -> None:
        if self._out is not None:
            self._out.flush()

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def __enter__(self) -> Logger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

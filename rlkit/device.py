"""The one place that decides which torch device to use, and how many CPU threads.

Every other module takes a ``torch.device`` and moves tensors with ``.to(device)``; nothing else
calls ``.cuda()``, so CPU and GPU runs execute the same code.
"""

from __future__ import annotations

import re

import torch


class DeviceError(ValueError):
    """A device string is malformed, or names a device this machine cannot provide."""


def resolve_device(name: str | torch.device = "auto") -> torch.device:
    """Map ``"auto" | "cpu" | "cuda" | "cuda:N"`` to a usable ``torch.device``.

    ``auto`` picks CUDA when available. Asking for CUDA on a machine without it raises
    ``DeviceError`` with a one-line fix instead of failing later inside a kernel launch.
    """
    if isinstance(name, torch.device):
        name = str(name)
    name = name.strip().lower()
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cpu":
        return torch.device("cpu")
    if name == "cuda" or name.startswith("cuda:"):
        if not re.fullmatch(r"cuda(:\d+)?", name):
            raise DeviceError(
                f"malformed device {name!r}; use auto, cpu, cuda or cuda:N with N a GPU index, "
                "e.g. cuda:0"
            )
        if not torch.cuda.is_available():
            raise DeviceError(
                f"device {name!r} requested but no CUDA GPU is available; use --device cpu or auto"
            )
        device = torch.device(name)
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise DeviceError(
                f"device {name!r} requested but only {torch.cuda.device_count()} GPU(s) exist; "
                "use cuda:0 .. cuda:N-1"
            )
        return device
    raise DeviceError(f"unknown device {name!r}; use one of auto, cpu, cuda, cuda:N")


def set_cpu_threads(threads: int | None) -> None:
    """``torch.set_num_threads(threads)`` for the CPU work of a run or an evaluation (the config's
    ``train.threads``); None keeps torch's default of one thread per core.

    Small networks want one thread: their ops are too short to split, and a split op waits for
    its slowest thread, so when the other cores are busy every forward pass waits for a
    descheduled thread (playing MinAtar Breakout one game at a time, 82 agent steps/s with 2
    threads on 2 busy cores against 5,300 with 1).
    """
    if threads is not None:
        torch.set_num_threads(threads)

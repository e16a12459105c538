"""Atomic checkpoints and the complete random-number-generator state.

A checkpoint is any nested dict that ``torch.save`` can pickle (model, optimizer, schedules,
step counters, RNG states, replay buffers). ``save_checkpoint`` writes through
``rlkit.atomic.atomic_write`` (temporary file, fsync, rename): a crash or Ctrl-C mid-write leaves
the previous checkpoint intact, never a truncated one, and a temporary file left by a save that
was killed outright is removed by the next save.

Resuming identically needs every RNG, not just torch's: ``rng_state()`` captures Python's
``random``, numpy's global generator, torch's CPU generator and every CUDA device's generator.

Checkpoints are pickles: load only files you (or your own runs) wrote.
"""

from __future__ import annotations

import pickle
import random
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from rlkit.atomic import atomic_write


class CheckpointError(RuntimeError):
    """A checkpoint file is missing, unreadable, or not an rlkit checkpoint."""


def save_checkpoint(path: str | Path, obj: dict[str, Any]) -> Path:
    """Write ``obj`` to ``path`` atomically (``rlkit.atomic.atomic_write``); returns the path."""
    with atomic_write(path) as handle:
        torch.save(obj, handle)
    return Path(path)


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint dict; raise ``CheckpointError`` with a one-line message on failure."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(
            f"no checkpoint at {path}; pass the path of a .pt written by rlkit train"
        )
    if path.is_dir():
        raise CheckpointError(
            f"{path} is a directory, not a checkpoint; "
            f"pass a file such as {path / 'checkpoints' / 'last.pt'}"
        )
    try:
        obj = torch.load(path, map_location=map_location, weights_only=False)
    except (
        RuntimeError, EOFError, pickle.UnpicklingError, zipfile.BadZipFile, ValueError,
        AttributeError, ImportError, IndexError, KeyError, TypeError, OSError,
    ) as exc:
        # torch's reader text ("PytorchStreamReader failed ... central directory") names its zip
        # internals, not the problem; it stays on the exception chain for debugging.
        raise CheckpointError(
            f"{path} is not a valid checkpoint (truncated, corrupt, or not written by torch.save); "
            "pass a last.pt or best.pt written by rlkit train"
        ) from exc
    if not isinstance(obj, dict):
        raise CheckpointError(
            f"{path} is not an rlkit checkpoint: expected a dict, found {type(obj).__name__}; "
            "pass a last.pt or best.pt written by rlkit train"
        )
    return obj


def rng_state() -> dict[str, Any]:
    """Snapshot of every global RNG: Python, numpy, torch CPU and (if present) all CUDA devices."""
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore a snapshot from ``rng_state()``.

    CUDA states are restored when this machine has the same number of GPUs; resuming a GPU run on
    the CPU (or vice versa) restores everything else and leaves CUDA generators as they are.
    """
    if "python" in state:
        random.setstate(state["python"])
    if "numpy" in state:
        np.random.set_state(state["numpy"])
    if "torch" in state:
        torch.set_rng_state(state["torch"].cpu())
    cuda = state.get("cuda")
    if cuda is not None and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all([s.cpu() for s in cuda])

"""The interface between one algorithm (DQN, PAAC) and the shared training runner.

The runner (run directory, progress bar, TensorBoard, checkpoints, Ctrl-C, resume, periodic
evaluation) is algorithm-agnostic; each algorithm module implements this protocol once.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from agents.episodes import Episode

if TYPE_CHECKING:
    import torch

    from agents.config import Config
    from rlkit.distributed import DistributedContext
    from rlkit.logger import Logger


class Learner(Protocol):
    env_steps: int
    """Environment steps taken so far, summed over all envs (the unit of ``--steps``)."""

    def train_iteration(self) -> dict[str, float]:
        """Collect experience and update (if due). Returns scalars to log: empty except when
        ``env_steps`` crosses a multiple of ``train.log_every`` (one host sync per log)."""
        ...

    def pop_episodes(self) -> list[Episode]:
        """Full games (unclipped score) finished since the last call."""
        ...

    def act(self, obs: np.ndarray, *, greedy: bool = False, epsilon: float = 0.0) -> np.ndarray:
        """Actions for a batch of observations, for evaluation."""
        ...

    def state_dict(self, *, include_replay: bool = True) -> dict[str, Any]:
        """Everything needed to continue exactly (the replay buffer only if ``include_replay``)."""
        ...

    def replay_nbytes(self) -> int:
        """Bytes of replay storage (0 without replay); decides ``checkpoint.save_replay: null``."""
        ...

    def load_state_dict(self, state: dict[str, Any]) -> None:
        ...

    def close(self) -> None:
        ...


class LearnerFactory(Protocol):
    """How the runner builds an algorithm's learner (its class): one rank of ``dist`` if given."""

    def __call__(
        self,
        cfg: Config,
        device: torch.device,
        logger: Logger,
        dist: DistributedContext | None = None,
    ) -> Learner: ...

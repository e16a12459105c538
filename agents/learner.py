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
    from rlkit.update import UpdateStep


def acting_weights(learner_state: dict[str, Any], key: str) -> dict[str, Any]:
    """The weights a checkpoint's policy plays with: the EMA of the trained weights when the run
    kept one (``train.eval_ema``; stored in the update state), else the trained ``key`` ones."""
    ema = (learner_state.get("update") or {}).get("ema")
    return ema["module"] if ema is not None else learner_state[key]


class Learner(Protocol):
    env_steps: int
    """Environment steps taken so far, summed over all envs (the unit of ``--steps``)."""
    update: UpdateStep
    acting_net: torch.nn.Module
    """The network evaluations play: the EMA copy with ``train.eval_ema``, else the trained one."""
    """The learner's optimizer step: its ``diagnostics`` feed the run summary, its
    ``observe_score`` a reduce-on-plateau LR schedule."""

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

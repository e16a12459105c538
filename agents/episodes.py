"""Game-score bookkeeping over vectorised envs.

Training envs may end an *episode* at every lost life and clip rewards; users care about the
score of a whole *game*. The Atari wrappers put the unclipped reward in ``info["raw_reward"]`` and
whether the real game ended in ``info["game_over"]``; envs without them (CartPole) fall back to the
step reward and ``terminated | truncated``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Episode:
    """One finished game: its unclipped score and its length in agent steps."""

    score: float
    length: int


def _info_array(infos: dict[str, Any], key: str, default: np.ndarray) -> np.ndarray:
    """Read a per-env value from gymnasium's vector ``infos`` (dict of arrays + ``_key`` masks)."""
    if key not in infos:
        return default
    values = np.asarray(infos[key])
    mask = np.asarray(infos.get(f"_{key}", np.ones_like(default, dtype=bool)), dtype=bool)
    return np.where(mask, values, default).astype(default.dtype)


class EpisodeTracker:
    """Accumulates per-env game scores from vector-env steps; ``pop()`` returns finished games."""

    def __init__(self, num_envs: int) -> None:
        self.scores = np.zeros(num_envs, dtype=np.float64)
        self.lengths = np.zeros(num_envs, dtype=np.int64)
        self._finished: list[Episode] = []

    def update(
        self,
        rewards: np.ndarray,
        terminated: np.ndarray,
        truncated: np.ndarray,
        infos: dict[str, Any],
        autoreset: np.ndarray | None = None,
    ) -> None:
        """Record one vector step. ``autoreset`` marks envs whose step was a reset (not counted)."""
        ended = np.logical_or(terminated, truncated)
        raw = _info_array(infos, "raw_reward", np.asarray(rewards, dtype=np.float64))
        game_over = _info_array(infos, "game_over", ended.astype(bool))
        live = np.ones_like(ended, dtype=bool) if autoreset is None else ~np.asarray(autoreset)
        self.scores += np.where(live, raw, 0.0)
        self.lengths += live
        for i in np.flatnonzero(live & game_over):
            self._finished.append(Episode(float(self.scores[i]), int(self.lengths[i])))
            self.scores[i] = 0.0
            self.lengths[i] = 0

    def state_dict(self) -> dict[str, np.ndarray]:
        """Scores and lengths of the games in progress (finished ones are popped, not saved)."""
        return {"scores": self.scores.copy(), "lengths": self.lengths.copy()}

    def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        self.scores[:] = state["scores"]
        self.lengths[:] = state["lengths"]

    def pop(self) -> list[Episode]:
        """Games finished since the last call."""
        finished, self._finished = self._finished, []
        return finished

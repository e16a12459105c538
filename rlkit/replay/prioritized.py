"""Proportional prioritised replay (Schaul et al. 2016, "Prioritized Experience Replay").

Transition ``i`` is drawn with ``P(i) = p_i**alpha / sum_k p_k**alpha`` (Eq. 1) and corrected
with importance weights ``w_i = (N * P(i))**-beta / max_j w_j`` (Sec. 3.4). The sum tree holds
``p_i**alpha`` for exactly the transitions that can be sampled now and 0 for every other slot:
a transition gets mass when its n-step window completes (at the largest priority seen so far,
so every transition is replayed at least once with high probability, Sec. 3.3) and loses it
when its slot or one of its frames is overwritten.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from rlkit.replay.buffer import Batch, ReplayBuffer, _as_int
from rlkit.replay.sum_tree import SumTree

# Keeps p**alpha from underflowing to 0, which would make a live slot look unsampleable.
_MIN_MASS = np.finfo(np.float64).tiny


class PrioritizedReplayBuffer(ReplayBuffer):
    """``ReplayBuffer`` that samples by priority; same constructor plus ``alpha, beta, eps``.

    Args:
        alpha: prioritisation exponent (0 = uniform).
        beta: default importance-sampling exponent; pass ``beta`` to ``sample`` to anneal it.
        eps: added to ``|priority|`` so no transition gets probability 0.
    """

    def __init__(
        self,
        capacity: int,
        obs_shape: tuple[int, ...],
        *,
        alpha: float = 0.6,
        beta: float = 0.4,
        eps: float = 1e-6,
        **kwargs: Any,
    ) -> None:
        if not float(alpha) >= 0.0:
            raise ValueError(f"alpha must be >= 0, got {alpha}")
        if not float(beta) >= 0.0:
            raise ValueError(f"beta must be >= 0, got {beta}")
        if not float(eps) > 0.0:
            raise ValueError(f"eps must be > 0 so every priority stays positive, got {eps}")
        self.alpha = float(alpha)
        self.beta = float(beta)
        self.eps = float(eps)
        self._tree = SumTree(_as_int(capacity, "capacity", 1))
        self._max_priority = 1.0
        # p >= eps, so p**alpha can only reach 0 when eps**alpha underflows (a huge alpha).
        self._mass_can_underflow = not self.eps**self.alpha >= 4 * _MIN_MASS
        # The learner's usual call, update_priorities(batch.indices) right after sample() with
        # no add in between, needs neither the range check nor the liveness mask: every slot
        # sample() returns is in range and has mass, and only add() takes mass away.
        self._adds = 0
        self._last_drawn: tuple[np.ndarray | None, int] = (None, -1)
        super().__init__(capacity, obs_shape, **kwargs)

    def _extra_nbytes(self) -> int:
        return self._tree.nbytes

    def add(
        self,
        obs: np.ndarray,
        action: np.ndarray | int | float,
        reward: np.ndarray | float,
        next_obs: np.ndarray,
        terminated: np.ndarray | bool,
        truncated: np.ndarray | bool,
    ) -> None:
        """As ``ReplayBuffer.add``; transitions that become sampleable get the max priority."""
        self._adds += 1
        before = [self._env_range(e) for e in range(self.num_envs)]
        super().add(obs, action, reward, next_obs, terminated, truncated)
        gone: list[int] = []
        new: list[int] = []
        for e, (lo_before, hi_before) in enumerate(before):
            lo_after, hi_after = self._env_range(e)
            off, cap = self._off_py[e], self._cap_py[e]
            # Ranges only move forward: [lo, hi) loses a prefix and gains a suffix.
            gone.extend(off + j % cap for j in range(lo_before, min(hi_before, lo_after)))
            new.extend(off + j % cap for j in range(max(hi_before, lo_after), hi_after))
        if gone or new:
            # Zeros first, then new mass: a slot reused in this add ends with the new value.
            values = [0.0] * len(gone) + [max(self._max_priority**self.alpha, _MIN_MASS)] * len(new)
            self._tree.assign(np.array(gone + new, np.int64), np.array(values))

    def sample(self, batch_size: int, beta: float | None = None) -> Batch:
        """Stratified proportional sample: one uniform draw in each of ``batch_size`` segments
        of equal priority mass, then importance weights normalised by their batch maximum."""
        batch_size = _as_int(batch_size, "batch_size", 1)
        beta = self.beta if beta is None else float(beta)
        if not beta >= 0.0:
            raise ValueError(f"beta must be >= 0, got {beta}")
        drawn = self._tree.stratified(batch_size, self._rng)
        if drawn is None:
            raise ValueError(self._empty_message())
        slots, mass = drawn
        env, j = self._locate(slots)
        # (N P_i)**-beta / max_j (N P_j)**-beta == (m_i / min_j m_j)**-beta with m = p**alpha:
        # N and the total cancel, which saves work on the hot path.
        mass /= mass.min()
        batch = self._gather(env, j, (mass**-beta).astype(np.float32))
        batch.indices.flags.writeable = False  # so that the check in update_priorities holds
        self._last_drawn = (batch.indices, self._adds)
        return batch

    def update_priorities(self, indices: np.ndarray, priorities: np.ndarray) -> None:
        """Set ``p_i = |priority| + eps`` for the sampled ``indices`` (the last of duplicates
        wins). Slots that stopped being sampleable since they were drawn keep zero mass."""
        idx = np.asarray(indices, dtype=np.int64).ravel()
        pri = np.asarray(priorities, dtype=np.float64).ravel()
        if idx.shape != pri.shape:
            raise ValueError(
                f"update_priorities got {idx.size} indices but {pri.size} priorities; "
                "pass one priority per sampled index"
            )
        if idx.size == 0:
            return
        p = np.abs(pri)
        p += self.eps
        largest = float(p.max())  # NaN and inf propagate into the maximum
        if not math.isfinite(largest):
            raise ValueError("update_priorities got a non-finite priority (NaN or inf TD error)")
        just_drawn = indices is self._last_drawn[0] and self._adds == self._last_drawn[1]
        # Viewed as unsigned, a negative index is huge: one reduction checks both bounds.
        if not just_drawn and idx.view(np.uint64).max() >= self.capacity:
            raise ValueError(
                f"update_priorities index out of range [0, {self.capacity}): pass Batch.indices"
            )
        self._max_priority = max(self._max_priority, largest)
        mass = np.power(p, self.alpha, out=p)
        if self._mass_can_underflow:
            np.maximum(mass, _MIN_MASS, out=mass)
        if not just_drawn:
            # Invariant: a slot has mass exactly when it is sampleable, so a slot that was
            # overwritten or lost its frames since it was drawn is set to (stays at) zero.
            np.multiply(mass, self._tree.leaves.take(idx) > 0.0, out=mass)
        self._tree.assign(idx, mass)

    def _locate(self, slots: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Env and transition number ``j`` of the transition now stored in each slot."""
        if self.num_envs == 1:
            last = self._count[0] - 1
            return np.zeros(len(slots), np.int64), last - (last - slots) % self._cap_py[0]
        env = np.searchsorted(self._env_off, slots, side="right") - 1
        count = np.array(self._count, np.int64)[env]
        j = count - 1 - (count - 1 - (slots - self._env_off[env])) % self._env_cap[env]
        return env, j

    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        state["priorities"] = self._tree.tree
        state["max_priority"] = self._max_priority
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        saved = state.get("config")
        same_kind = isinstance(saved, dict) and (saved.get("kind"), saved.get("capacity")) == (
            type(self).__name__,
            self.capacity,
        )
        nodes = np.shape(state.get("priorities", ()))
        if same_kind and nodes != self._tree.tree.shape:  # before anything is restored
            raise ValueError(
                f"replay state_dict holds {np.prod(nodes):.0f} sum-tree nodes where this buffer's "
                f"tree has {self._tree.tree.size}: it was saved by an rlkit with another tree "
                "layout; start with an empty buffer instead of restoring this one"
            )
        super().load_state_dict(state)
        self._tree.tree[:] = state["priorities"]
        self._max_priority = float(state["max_priority"])
        self._last_drawn = (None, -1)

    def _config(self) -> dict[str, Any]:
        return {**super()._config(), "alpha": self.alpha}
